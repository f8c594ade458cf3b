"""The towers against a plain OpenAI-style forward, state-dict round trips, precision."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import clip
from clip.model import AttentionPool2d, LayerNorm, MultiheadAttention
from tests.clip.reference import RefCLIP


def test_no_prompts_equal_the_reference_forward(tiny, tokens, images) -> None:
    ref = RefCLIP(tiny).eval()
    with torch.no_grad():
        torch.testing.assert_close(tiny.encode_image(images), ref.encode_image(images),
                                   atol=1e-5, rtol=1e-5)
        # ours runs on max(eot) + 1 tokens, the reference on all 77
        torch.testing.assert_close(tiny.encode_text(tokens), ref.encode_text(tokens),
                                   atol=1e-5, rtol=1e-5)


def test_empty_prompt_lists_change_nothing(tiny, tokens, images) -> None:
    with torch.no_grad():
        plain = tiny.encode_image(images)
        assert torch.equal(tiny.encode_image(images, []), plain)
        assert torch.equal(tiny.encode_image(images, [None, None, None]), plain)
        text = tiny.encode_text(tokens)
        emb = tiny.token_embedding(tokens)
        eot = tokens.argmax(-1)
        assert torch.equal(tiny.encode_text_embeddings(emb, eot), text)
        assert torch.equal(tiny.encode_text_embeddings(emb, eot, [None, None, None]), text)


def test_text_runs_on_sequences_cut_after_the_last_eot(tiny, tokens) -> None:
    emb = tiny.token_embedding(tokens)
    eot = tokens.argmax(-1)
    cut = int(eot.max()) + 1
    noisy = emb.clone()
    noisy[:, cut:] = torch.randn_like(noisy[:, cut:])  # never read
    for row, e in enumerate(eot.tolist()):  # after a row's EOT: masked by causality
        noisy[row, e + 1:] = torch.randn_like(noisy[row, e + 1:])
    with torch.no_grad():
        full = tiny.encode_text_embeddings(emb, eot)
        assert torch.equal(tiny.encode_text_embeddings(emb[:, :cut], eot), full)
        torch.testing.assert_close(tiny.encode_text_embeddings(noisy, eot), full,
                                   atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_attention_equals_nn_multihead_attention(causal: bool) -> None:
    torch.manual_seed(0)
    ours = MultiheadAttention(128, 2)
    nn.init.normal_(ours.in_proj_weight, std=0.1)
    nn.init.normal_(ours.in_proj_bias, std=0.1)
    ref = nn.MultiheadAttention(128, 2, batch_first=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(3, 9, 128)
    mask = torch.full((9, 9), float("-inf")).triu(1) if causal else None
    with torch.no_grad():
        expected = ref(x, x, x, need_weights=False, attn_mask=mask)[0]
        torch.testing.assert_close(ours(x, causal=causal), expected, atol=1e-6, rtol=1e-5)


def test_attention_pool_equals_openai_multi_head_attention_forward() -> None:
    torch.manual_seed(0)
    pool = AttentionPool2d(2, 128, 2, 64).eval()
    x = torch.randn(3, 128, 2, 2)
    seq = x.flatten(2).permute(2, 0, 1)  # OpenAI's pooling, sequence-first: [HW, B, C]
    seq = torch.cat([seq.mean(dim=0, keepdim=True), seq]) + pool.positional_embedding[:, None]
    expected = F.multi_head_attention_forward(
        seq[:1], seq, seq, 128, 2, q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight, in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True, training=False, need_weights=False)[0][0]
    with torch.no_grad():
        torch.testing.assert_close(pool(x), expected, atol=1e-6, rtol=1e-5)


def _small_clip(vision: str) -> clip.CLIP:
    torch.manual_seed(0)
    if vision == "vit":
        return clip.CLIP(64, 32, 2, 128, 16, 77, 49408, 64, 1, 2)
    return clip.CLIP(64, 64, (1, 2, 1, 1), 8, None, 77, 49408, 128, 2, 1)


@pytest.mark.parametrize("vision", ["vit", "resnet"])
def test_state_dict_round_trip_through_build_model(vision: str, tokens) -> None:
    model = _small_clip(vision).eval()
    for name, t in model.state_dict().items():  # non-trivial norms and statistics
        if "bn" in name and t.is_floating_point():
            t.copy_(torch.rand_like(t) + 0.5)
    rebuilt = clip.build_model(model.state_dict())
    assert not rebuilt.training
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert type(rebuilt.visual) is type(model.visual)
    for attr in ("embed_dim", "text_width", "vision_width", "context_length", "vocab_size"):
        assert getattr(rebuilt, attr) == getattr(model, attr)
    assert rebuilt.visual.input_resolution == model.visual.input_resolution
    assert rebuilt.visual.output_dim == model.visual.output_dim
    assert rebuilt.transformer.layers == model.transformer.layers
    images = torch.randn(2, 3, model.visual.input_resolution, model.visual.input_resolution)
    with torch.no_grad():
        assert torch.equal(rebuilt.encode_image(images), model.encode_image(images))
        assert torch.equal(rebuilt.encode_text(tokens), model.encode_text(tokens))


def test_build_model_reads_resnet_stage_depths() -> None:
    model = clip.build_model(_small_clip("resnet").state_dict())
    depths = [len(getattr(model.visual, f"layer{i}")) for i in (1, 2, 3, 4)]
    assert depths == [1, 2, 1, 1]
    assert model.visual.width == 8 * 32


def test_build_model_accepts_openai_extras_and_fp16_and_copies() -> None:
    state = {k: v.to(torch.float16) if v.is_floating_point() else v
             for k, v in clip.tiny_state_dict().items()}
    state.update(input_resolution=torch.tensor(32), context_length=torch.tensor(77),
                 vocab_size=torch.tensor(49408))
    model = clip.build_model(state)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model.ln_final.weight.data.zero_()
    assert state["ln_final.weight"].abs().sum() > 0


def test_build_model_is_strict() -> None:
    state = clip.tiny_state_dict()
    extra = dict(state, **{"visual.extra": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="visual.extra"):
        clip.build_model(extra)
    missing = {k: v for k, v in state.items() if k != "visual.ln_post.bias"}
    with pytest.raises(RuntimeError, match="visual.ln_post.bias"):
        clip.build_model(missing)
    with pytest.raises(ValueError, match="OpenAI's layout"):
        clip.build_model({"weight": torch.zeros(1)})


def test_tiny_clip_is_deterministic_and_uses_the_real_vocabulary(tokens) -> None:
    a, b = clip.tiny_clip(seed=3), clip.tiny_clip(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))
    assert not torch.equal(a.text_projection, clip.tiny_clip(seed=4).text_projection)
    assert a.vocab_size == 49408 and a.context_length == 77
    assert a.encode_text(tokens).shape == (3, 64)
    with pytest.raises(ValueError, match="multiples of 64"):
        clip.tiny_clip(text_width=48)


def test_tiny_resnet_runs(tokens) -> None:
    model = clip.tiny_clip(vision="resnet")
    assert isinstance(model.visual, clip.ModifiedResNet)
    with torch.no_grad():
        features = model.encode_image(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 64) and torch.isfinite(features).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_layer_norm_computes_in_fp32(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    norm = LayerNorm(64)
    norm.weight.data.normal_(1, 0.1)
    x = (torch.randn(4, 64) * 30 + 100).to(dtype)
    out = norm(x)
    assert out.dtype == dtype
    expected = F.layer_norm(x.float(), (64,), norm.weight, norm.bias).to(dtype)
    assert torch.equal(out, expected)


def test_convert_weights_keeps_norms_and_embeddings_in_fp32(tokens, images) -> None:
    model = clip.tiny_clip()
    with torch.no_grad():
        reference = model.encode_image(images), model.encode_text(tokens)
    clip.convert_weights(model, torch.bfloat16)
    assert model.dtype == torch.bfloat16
    low = {"visual.conv1.weight", "visual.proj", "text_projection",
           "transformer.resblocks.0.attn.in_proj_weight",
           "transformer.resblocks.0.attn.in_proj_bias",
           "transformer.resblocks.0.attn.out_proj.weight", "transformer.resblocks.1.mlp.c_fc.bias",
           "visual.transformer.resblocks.1.mlp.c_proj.weight"}
    fp32 = {"logit_scale", "token_embedding.weight", "positional_embedding", "ln_final.weight",
            "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.bias",
            "transformer.resblocks.0.ln_1.weight"}
    state = model.state_dict()
    assert all(state[k].dtype == torch.bfloat16 for k in low)
    assert all(state[k].dtype == torch.float32 for k in fp32)
    with torch.no_grad():
        image, text = model.encode_image(images), model.encode_text(tokens)
    assert image.dtype == text.dtype == torch.bfloat16
    torch.testing.assert_close(image.float(), reference[0], atol=0.1, rtol=0.05)
    torch.testing.assert_close(text.float(), reference[1], atol=0.1, rtol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("vision", ["vit", "resnet"])
def test_on_cuda_the_model_is_fp16_as_openais(vision: str, tokens) -> None:
    reference = clip.tiny_clip(vision=vision)
    if vision == "vit":
        model, _ = clip.load("tiny", device="cuda")
    else:
        place = importlib.import_module("clip.load")._place
        model = place(clip.tiny_clip(vision=vision), torch.device("cuda"))
    assert model.dtype == torch.float16 and model.ln_final.weight.dtype == torch.float32
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        image = model.encode_image(images.cuda()).float().cpu()
        text = model.encode_text(tokens.cuda()).float().cpu()
        torch.testing.assert_close(image, reference.encode_image(images), atol=0.02, rtol=0.02)
        torch.testing.assert_close(text, reference.encode_text(tokens), atol=0.02, rtol=0.02)
