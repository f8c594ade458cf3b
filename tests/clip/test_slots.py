"""Prompt slots: where prompts go, at which layer, shared or per sample."""

from __future__ import annotations

import pytest
import torch

import clip

N = 2  # prompt tokens


def _record_block_io(transformer: clip.Transformer) -> tuple[list, list, list]:
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    handles = []
    for block in transformer.resblocks:
        handles.append(block.register_forward_pre_hook(lambda m, a: inputs.append(a[0])))
        handles.append(block.register_forward_hook(lambda m, a, out: outputs.append(out)))
    return inputs, outputs, handles


def _prompt(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_text_layer0_prompt_replaces_positions_after_sos(tiny, tokens) -> None:
    emb, eot = tiny.token_embedding(tokens), tokens.argmax(-1)
    p = _prompt(N, 64)
    written = emb.clone()
    written[:, 1:1 + N] = p
    with torch.no_grad():
        assert torch.equal(tiny.encode_text_embeddings(emb, eot, [p]),
                           tiny.encode_text_embeddings(written, eot))
        assert not torch.allclose(tiny.encode_text_embeddings(emb, eot, [p]),
                                  tiny.encode_text_embeddings(emb, eot))


def test_text_deep_prompts_replace_the_slot_and_none_keeps_it(tiny, tokens) -> None:
    emb, eot = tiny.token_embedding(tokens), tokens.argmax(-1)
    p1 = _prompt(N, 64, seed=1)
    inputs, outputs, handles = _record_block_io(tiny.transformer)
    try:
        with torch.no_grad():
            tiny.encode_text_embeddings(emb, eot, [None, p1, None])
    finally:
        for h in handles:
            h.remove()
    assert torch.equal(inputs[1][:, 1:1 + N], p1.expand(3, N, 64))
    assert torch.equal(inputs[1][:, :1], outputs[0][:, :1])  # outside the slot: untouched
    assert torch.equal(inputs[1][:, 1 + N:], outputs[0][:, 1 + N:])
    assert torch.equal(inputs[2], outputs[1])  # None: the slot keeps block 1's output


def test_vision_layer0_prompt_is_appended_before_ln_pre(tiny, images) -> None:
    p0 = _prompt(N, 64)
    seen: list[torch.Tensor] = []
    handle = tiny.visual.ln_pre.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    try:
        with torch.no_grad():
            prompted = tiny.encode_image(images, [p0])
            plain = tiny.encode_image(images)
    finally:
        handle.remove()
    patches = (32 // 8) ** 2
    assert seen[0].shape == (3, 1 + patches + N, 64)
    assert torch.equal(seen[0][:, -N:], p0.expand(3, N, 64))
    assert torch.equal(seen[0][:, :-N], seen[1])
    assert not torch.allclose(prompted, plain)


def test_vision_deep_prompts_replace_the_last_tokens(tiny, images) -> None:
    p0, p2 = _prompt(N, 64), _prompt(N, 64, seed=2)
    inputs, outputs, handles = _record_block_io(tiny.visual.transformer)
    try:
        with torch.no_grad():
            tiny.encode_image(images, [p0, None, p2])
    finally:
        for h in handles:
            h.remove()
    assert torch.equal(inputs[1], outputs[0])
    assert torch.equal(inputs[2][:, -N:], p2.expand(3, N, 64))
    assert torch.equal(inputs[2][:, :-N], outputs[1][:, :-N])


def test_per_sample_prompts_equal_one_sample_at_a_time(tiny, tokens, images) -> None:
    vis = [_prompt(3, N, 64, seed=3), _prompt(3, N, 64, seed=4)]
    txt = [_prompt(3, N, 64, seed=5), None, _prompt(3, N, 64, seed=6)]
    emb, eot = tiny.token_embedding(tokens), tokens.argmax(-1)
    with torch.no_grad():
        batched_image = tiny.encode_image(images, vis)
        batched_text = tiny.encode_text_embeddings(emb, eot, txt)
        for i in range(3):
            one_image = tiny.encode_image(images[i:i + 1], [p[i] for p in vis])
            one_text = tiny.encode_text_embeddings(
                emb[i:i + 1], eot[i:i + 1], [None if p is None else p[i] for p in txt])
            torch.testing.assert_close(batched_image[i:i + 1], one_image, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(batched_text[i:i + 1], one_text, atol=1e-6, rtol=1e-5)


def test_shared_prompts_broadcast_over_the_batch(tiny, images) -> None:
    p = [_prompt(N, 64), _prompt(N, 64, seed=1)]
    with torch.no_grad():
        shared = tiny.encode_image(images, p)
        repeated = tiny.encode_image(images, [q.expand(3, N, 64) for q in p])
        one = tiny.encode_image(images, [q[None] for q in p])
    assert torch.equal(shared, repeated) and torch.equal(shared, one)


def test_prompts_receive_gradients_and_are_cast(tiny, tokens, images) -> None:
    p_img = _prompt(N, 64).double().requires_grad_()
    p_txt = _prompt(N, 64, seed=1).requires_grad_()
    emb, eot = tiny.token_embedding(tokens), tokens.argmax(-1)
    image = tiny.encode_image(images, [p_img])
    text = tiny.encode_text_embeddings(emb, eot, [None, p_txt])
    assert image.dtype == text.dtype == torch.float32
    (image.sum() + text.sum()).backward()
    assert p_img.grad is not None and p_img.grad.abs().sum() > 0
    assert p_txt.grad is not None and p_txt.grad.abs().sum() > 0


def test_bad_prompts_are_reported(tiny, tokens, images) -> None:
    emb, eot = tiny.token_embedding(tokens), tokens.argmax(-1)
    with pytest.raises(ValueError, match="layer-0"):
        tiny.encode_image(images, [None, _prompt(N, 64)])
    with pytest.raises(ValueError, match="as many tokens"):
        tiny.encode_image(images, [_prompt(N, 64), _prompt(N + 1, 64)])
    with pytest.raises(ValueError, match=r"\[n, d\] or \[3, n, d\]"):
        tiny.encode_image(images, [_prompt(2, N, 64)])
    with pytest.raises(ValueError, match="4 layers of prompts for a 3-layer"):
        tiny.encode_text_embeddings(emb, eot, [None, None, None, _prompt(N, 64)])
    with pytest.raises(ValueError, match="does not fit"):
        tiny.encode_text_embeddings(emb, eot, [None, _prompt(40, 64)])
    resnet = clip.tiny_clip(vision="resnet")
    with pytest.raises(ValueError, match="ViT"):
        resnet.encode_image(images, [_prompt(N, 64)])
