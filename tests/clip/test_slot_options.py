"""The vision slot after ``ln_pre`` and activation checkpointing of the transformer blocks."""

from __future__ import annotations

import pytest
import torch

import clip

N = 2  # prompt tokens


def _prompt(*shape: int, seed: int = 0, grad: bool = False) -> torch.Tensor:
    t = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return t.requires_grad_(grad)


def _by_hand_after_ln_pre(model: clip.CLIP, images: torch.Tensor,
                          prompts: list[torch.Tensor]) -> torch.Tensor:
    """The image tower written out: ln_pre on class and patch tokens only, then the prompts
    appended; before block i > 0 the last N tokens replaced by ``prompts[i]``."""
    visual = model.visual
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    x = torch.cat([x, prompts[0].expand(x.shape[0], -1, -1)], dim=1)
    for i, block in enumerate(visual.transformer.resblocks):
        if i > 0 and i < len(prompts):
            x = torch.cat([x[:, :-N], prompts[i].expand(x.shape[0], -1, -1)], dim=1)
        x = block(x)
    return visual.ln_post(x[:, 0]) @ visual.proj


def test_vision_prompts_after_ln_pre_equal_the_tower_written_out(tiny, images) -> None:
    prompts = [_prompt(N, 64, seed=3), _prompt(N, 64, seed=4)]
    seen: list[torch.Tensor] = []
    hook = tiny.visual.transformer.resblocks[0].register_forward_pre_hook(
        lambda m, a: seen.append(a[0]))
    try:
        with torch.no_grad():
            after = tiny.encode_image(images, prompts, prompt_after_ln_pre=True)
            before = tiny.encode_image(images, prompts)
            expected = _by_hand_after_ln_pre(tiny, images, prompts)
    finally:
        hook.remove()
    torch.testing.assert_close(after, expected, atol=1e-6, rtol=0)
    assert torch.equal(seen[0][:, -N:], prompts[0].expand(3, N, 64))  # not normalised
    assert not torch.allclose(seen[1][:, -N:], prompts[0].expand(3, N, 64))
    assert (after - before).abs().max() > 1e-3  # the option changes what is computed


def test_after_ln_pre_without_prompts_is_clip(tiny, images) -> None:
    with torch.no_grad():
        assert torch.equal(tiny.encode_image(images, None, prompt_after_ln_pre=True),
                           tiny.encode_image(images))


def test_segments_split_the_blocks_as_checkpoint_sequential() -> None:
    transformer = clip.model.Transformer(64, 12, 1)
    assert transformer.segments() == [(0, 12, False)]
    transformer.checkpoint_segments = 5
    assert transformer.segments() == [(0, 2, True), (2, 4, True), (4, 6, True), (6, 8, True),
                                      (8, 12, False)]
    transformer.checkpoint_segments = 40  # more segments than blocks: one block each
    assert transformer.segments()[:2] == [(0, 1, True), (1, 2, True)]
    with torch.no_grad():  # nothing to save for a backward pass: one plain run
        assert transformer.segments() == [(0, 12, False)]
    transformer.checkpoint_segments = 0
    with pytest.raises(ValueError, match="checkpoint_segments must be >= 1"):
        transformer.segments()


def _grads(model: clip.CLIP, tokens: torch.Tensor, images: torch.Tensor,
           segments: int) -> tuple[list[torch.Tensor], int]:
    """Gradients of a loss over both towers with deep prompts in both, and the bytes the
    forward pass saved for the backward pass."""
    model.transformer.checkpoint_segments = segments
    model.visual.transformer.checkpoint_segments = segments
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    text_p = [_prompt(N, 64, seed=i, grad=True) for i in range(3)]
    vision_p = [_prompt(N, 64, seed=10 + i, grad=True) for i in range(3)]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            emb = model.token_embedding(tokens)
            text = model.encode_text_embeddings(emb, tokens.argmax(-1), text_p)
            image = model.encode_image(images, vision_p, prompt_after_ln_pre=True)
            loss = (image @ text.t()).square().sum()
        loss.backward()
    finally:
        model.transformer.checkpoint_segments = 1
        model.visual.transformer.checkpoint_segments = 1
    return [p.grad for p in text_p + vision_p], sum(saved.values())


@pytest.mark.parametrize("segments", [2, 3])
def test_checkpointed_blocks_give_the_same_gradients(tiny, tokens, images, segments) -> None:
    plain, plain_bytes = _grads(tiny, tokens, images, 1)
    saved, saved_bytes = _grads(tiny, tokens, images, segments)
    assert saved_bytes < 0.8 * plain_bytes  # the checkpointed blocks kept only their input
    for a, b in zip(plain, saved, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=0, rtol=0)
