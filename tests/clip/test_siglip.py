"""SigLIP on the tiny random SigLIP (``tiny-siglip``): the towers against a plain forward
written here from open_clip's and timm's definitions, the logit, the prompt slots, the
descriptions of open_clip's SigLIP family and the refusal of the members that do not fit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import clip
from clip.model import speedups
from clip.siglip import SigLIP, siglip_keys
from clip.tiny_siglip import tiny_siglip, tiny_siglip_state_dict


@pytest.fixture(scope="module")
def model() -> SigLIP:
    return tiny_siglip(seed=2).requires_grad_(False)


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


TEXTS = ["a photo of a dog.", "a bad photo of an aircraft carrier", "itap of a zebra"]


# --------------------------------------------------------------------------- a plain forward


def _ln(x, sd, key, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], sd[f"{key}.weight"], sd[f"{key}.bias"], eps)


def _blocks(x, sd, prefix, layers, heads, act):
    for i in range(layers):
        p = f"{prefix}.resblocks.{i}"
        h = _ln(x, sd, f"{p}.ln_1").transpose(0, 1)  # sequence-first, as nn.MultiheadAttention
        a, _ = F.multi_head_attention_forward(
            h, h, h, x.shape[-1], heads, sd[f"{p}.attn.in_proj_weight"],
            sd[f"{p}.attn.in_proj_bias"], None, None, False, 0.0,
            sd[f"{p}.attn.out_proj.weight"], sd[f"{p}.attn.out_proj.bias"], need_weights=False)
        x = x + a.transpose(0, 1)
        h = F.linear(_ln(x, sd, f"{p}.ln_2"), sd[f"{p}.mlp.c_fc.weight"], sd[f"{p}.mlp.c_fc.bias"])
        x = x + F.linear(act(h), sd[f"{p}.mlp.c_proj.weight"], sd[f"{p}.mlp.c_proj.bias"])
    return x


def plain_text(model: SigLIP, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's TextTransformer with SigLIP's config: no mask, LayerNorm, the last token."""
    sd = model.state_dict()
    x = F.embedding(tokens[:, 1:], sd["token_embedding.weight"]) + sd["positional_embedding"]
    a = model.backbone.arch
    x = _blocks(x, sd, "transformer", a.text_layers, a.text_heads,
                lambda h: F.gelu(h, approximate="tanh"))
    x = _ln(x, sd, "ln_final")[:, -1]
    return F.linear(x, sd["text_projection.weight"], sd["text_projection.bias"])


def plain_image(model: SigLIP, image: torch.Tensor) -> torch.Tensor:
    """timm's SigLIP ViT: patches + positions, blocks, norm, attention pool (latent query)."""
    sd = model.state_dict()
    a = model.backbone.arch
    x = F.conv2d(image, sd["visual.conv1.weight"], sd["visual.conv1.bias"], stride=a.patch_size)
    x = x.flatten(2).transpose(1, 2) + sd["visual.positional_embedding"]
    x = _blocks(x, sd, "visual.transformer", a.vision_layers, a.vision_heads, F.gelu)
    x = _ln(x, sd, "visual.ln_post")
    p = "visual.attn_pool"
    q = F.linear(sd[f"{p}.latent"], sd[f"{p}.q.weight"], sd[f"{p}.q.bias"]).expand(len(x), -1, -1)
    k, v = F.linear(x, sd[f"{p}.kv.weight"], sd[f"{p}.kv.bias"]).chunk(2, dim=-1)
    heads, d = a.vision_heads, a.vision_width // a.vision_heads
    split = lambda t: t.unflatten(-1, (heads, d)).transpose(1, 2)  # noqa: E731
    attn = (split(q) @ split(k).transpose(-1, -2) / d ** 0.5).softmax(-1) @ split(v)
    out = F.linear(attn.transpose(1, 2).flatten(2), sd[f"{p}.proj.weight"], sd[f"{p}.proj.bias"])
    h = F.gelu(F.linear(_ln(out, sd, f"{p}.norm"), sd[f"{p}.mlp.fc1.weight"],
                        sd[f"{p}.mlp.fc1.bias"]))
    out = out + F.linear(h, sd[f"{p}.mlp.fc2.weight"], sd[f"{p}.mlp.fc2.bias"])
    return out[:, 0]


def test_towers_equal_a_plain_forward(model):
    tokens = model.tokenizer(TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tokens), plain_text(model, tokens),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.encode_image(images()), plain_image(model, images()),
                                   rtol=1e-5, atol=1e-5)
        with speedups(attention="mha", text_chunk_size=2):  # the other paths agree
            torch.testing.assert_close(model.encode_text(tokens), plain_text(model, tokens),
                                       rtol=1e-5, atol=1e-5)


def test_text_is_pooled_at_the_last_position_and_sees_the_padding(model):
    """SigLIP reads every text at its last position, through the padding: what follows the
    end-of-text token changes the feature (it would not in a causal tower pooled there)."""
    tokens = model.tokenizer(TEXTS[:1])
    changed = tokens.clone()
    changed[0, -1] = 5
    with torch.no_grad():
        assert not torch.allclose(model.encode_text(tokens), model.encode_text(changed))
    assert model.transformer.causal is False


def test_logits_are_the_scaled_cosine_plus_the_learned_bias(model):
    with torch.no_grad():
        image = F.normalize(model.encode_image(images()), dim=-1)
        text = F.normalize(model.encode_text(model.tokenizer(TEXTS)), dim=-1)
        logits = model.logits(image, text)
    expected = 100.0 * image @ text.t() - 12.0
    torch.testing.assert_close(logits, expected)
    # per-image class features (CoCoOp's) take the same bias
    torch.testing.assert_close(model.logits(image, text.expand(3, -1, -1)), expected)
    assert (torch.sigmoid(logits) < 0.5).all()  # a random model says "no" to every pair


def test_tiny_siglip_loads_by_name_with_its_preprocessing():
    model, preprocess = clip.load("tiny-siglip")
    assert model.backbone.arch.family == "siglip"
    assert model.backbone.preprocess.resize_mode == "squash"
    resize = preprocess.transforms[0]
    assert resize.size == (32, 32)  # both sides: squashed, not cropped
    assert "tiny-siglip" in clip.available_models()
    assert clip.describe("tiny-siglip").arch.context_length == 32


def open_clip_layout(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of ours in open_clip's layout (timm's names under visual.trunk., the text
    tower under text.)."""
    timm_names = {"conv1.": "patch_embed.proj.", "ln_post.": "norm."}
    theirs = {}
    for key, value in ours.items():
        if key.startswith("visual."):
            rest = key[len("visual."):]
            for a, b in timm_names.items():
                rest = b + rest[len(a):] if rest.startswith(a) else rest
            rest = (rest.replace("transformer.resblocks.", "blocks.").replace("ln_1", "norm1")
                    .replace("ln_2", "norm2").replace("attn.in_proj_weight", "attn.qkv.weight")
                    .replace("attn.in_proj_bias", "attn.qkv.bias")
                    .replace("attn.out_proj", "attn.proj").replace("mlp.c_fc", "mlp.fc1")
                    .replace("mlp.c_proj", "mlp.fc2"))
            if rest == "positional_embedding":
                rest, value = "pos_embed", value[None]
            theirs[f"visual.trunk.{rest}"] = value
        elif key.startswith("logit_"):
            theirs[key] = value
        else:
            theirs[f"text.{key}"] = value
    return theirs


def test_open_clip_keys_map_to_ours():
    ours = tiny_siglip_state_dict()
    mapped = siglip_keys(open_clip_layout(ours))
    assert mapped.keys() == ours.keys()
    assert all(torch.equal(mapped[k], ours[k]) for k in ours)


def test_a_weight_file_in_open_clips_layout_loads_with_its_arch(model, tmp_path):
    path = tmp_path / "siglip.bin"
    torch.save(open_clip_layout(tiny_siglip_state_dict(seed=2)), path)
    loaded, _ = clip.load(str(path), arch="tiny-siglip")
    assert isinstance(loaded, SigLIP) and loaded.backbone.name == f"{path} as tiny-siglip"
    assert loaded.identity()["fingerprint"] == model.identity()["fingerprint"]
    tokens = model.tokenizer(TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(tokens), model.encode_text(tokens))


# --------------------------------------------------------------------------- prompt slots


def test_a_layer_0_text_prompt_is_written_after_the_placeholder(model):
    tokens = model.tokenizer(["x x x x dog"])
    embeddings = model.token_embedding(tokens)
    eot = model.tokenizer.eot_positions(tokens)
    prompt = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    written = embeddings.clone()
    written[:, 1:5] = prompt
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text_embeddings(embeddings, eot, [prompt]),
                                   model.encode_text_embeddings(written, eot))
        deep = model.encode_text_embeddings(embeddings, eot, [prompt, prompt * 2])
    assert not torch.allclose(deep, model.encode_text_embeddings(written, eot))


def test_vision_prompts_act_through_the_blocks(model):
    prompt = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model.encode_image(images())
        prompted = model.encode_image(images(), [prompt])
        deep = model.encode_image(images(), [prompt, prompt * 3])
        after = model.encode_image(images(), [prompt], prompt_after_ln_pre=True)
    assert prompted.shape == plain.shape
    assert not torch.allclose(prompted, plain) and not torch.allclose(deep, prompted)
    torch.testing.assert_close(after, prompted)  # SigLIP has no ln_pre


# --------------------------------------------------------------------------- descriptions


@pytest.mark.parametrize("name, vocabulary, context, text_activation", [
    ("ViT-B-16-SigLIP/webli", "hf-hub:timm/ViT-B-16-SigLIP", 64, "gelu"),
    ("ViT-B-16-SigLIP2/webli", "hf-hub:timm/ViT-B-16-SigLIP2", 64, "gelu_tanh"),
    ("ViT-SO400M-14-SigLIP/webli", "hf-hub:timm/ViT-B-16-SigLIP", 16, "gelu"),
])
def test_open_clip_siglip_descriptions(name, vocabulary, context, text_activation):
    backbone = clip.describe(f"open_clip:{name}")
    a = backbone.arch
    assert (a.family, a.context_length, a.text_activation, a.norm_eps) == (
        "siglip", context, text_activation, 1e-6)
    assert backbone.vocabulary == vocabulary
    p = backbone.preprocess
    assert (p.mean, p.std, p.resize_mode) == ((0.5,) * 3, (0.5,) * 3, "squash")
    assert "SigLIP" in backbone.describe()


def test_so400m_and_large_shapes():
    so = clip.describe("open_clip:ViT-SO400M-14-SigLIP/webli").arch
    assert (so.vision_width, so.vision_layers, so.vision_heads, so.patch_size) == (1152, 27, 16,
                                                                                   14)
    assert int(so.vision_width * so.vision_mlp_ratio) == 4304
    large = clip.describe("open_clip:ViT-L-16-SigLIP-256/webli").arch
    assert (large.image_size, large.vision_width, large.vision_layers) == (256, 1024, 24)


@pytest.mark.parametrize("name, phrase", [
    ("ViT-SO400M-16-SigLIP-i18n-256", "proj_type"),
    ("nllb-clip-base-siglip", "hf_model_name"),
    ("coca_ViT-B-32", "multimodal text decoder"),
])
def test_families_that_do_not_fit_are_refused(name, phrase):
    with pytest.raises(ValueError, match=phrase) as err:
        clip.backbones.open_clip_backbone(name, require_tag=False)
    assert "Supported:" in str(err.value) and "ViT-B-16-SigLIP" in str(err.value)
