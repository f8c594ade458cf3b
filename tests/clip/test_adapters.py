"""Adapter slots (clip/adapters.py): residual adapters after a block, additions to the
attention projections; active only inside ``adapted()``, never part of CLIP's state."""

from __future__ import annotations

import copy

import pytest
import torch

import clip
from clip.adapters import adapted
from clip.model import speedups


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Linear:
    """An attention adapter adding ``x D^T`` to q/k/v and ``h E^T`` to the output."""

    def __init__(self, d_in: torch.Tensor | None, d_out: torch.Tensor | None) -> None:
        self.d_in, self.d_out = d_in, d_out

    def in_proj(self, x):
        return None if self.d_in is None else x @ self.d_in.t()

    def out_proj(self, h):
        return None if self.d_out is None else h @ self.d_out.t()


@pytest.mark.parametrize("attention", ["sdpa", "mha"])
def test_attention_adapter_equals_changed_projection_weights(tiny, tokens, images, attention):
    width = tiny.text_width
    d_in, d_out = 0.05 * _randn(3 * width, width), 0.05 * _randn(width, width, seed=1)
    changed = copy.deepcopy(tiny)
    for model_tower in (changed.transformer, changed.visual.transformer):
        attn = model_tower.resblocks[1].attn
        attn.in_proj_weight.data += d_in
        attn.out_proj.weight.data += d_out
    with torch.no_grad(), speedups(attention=attention):
        with adapted(tiny.transformer, attention={1: Linear(d_in, d_out)}):
            text = tiny.encode_text(tokens)
        with adapted(tiny.visual.transformer, attention={1: Linear(d_in, d_out)}):
            image = tiny.encode_image(images)
        torch.testing.assert_close(text, changed.encode_text(tokens), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(image, changed.encode_image(images), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(text, tiny.encode_text(tokens), atol=1e-3)


def test_residual_adapter_adds_to_the_block_output(tiny, tokens):
    seen = []

    def adapter(x, block):
        seen.append((x.shape, block is tiny.transformer.resblocks[2]))
        return torch.ones_like(x)

    outputs = []
    handle = tiny.transformer.resblocks[2].register_forward_hook(
        lambda m, a, out: outputs.append(out))
    with torch.no_grad():
        plain = tiny.encode_text(tokens)
        with adapted(tiny.transformer, residual={2: adapter}):
            moved = tiny.encode_text(tokens)
            zero = adapted(tiny.transformer, residual={2: lambda x, b: torch.zeros_like(x)})
            with pytest.raises(RuntimeError, match="nested"), zero:
                pass
        final = tiny.ln_final(outputs[-1] + 1)
    handle.remove()
    eot = tokens.argmax(-1)
    expected = final[torch.arange(len(tokens)), eot[:, None].clamp(max=final.shape[1] - 1)[:, 0]]
    torch.testing.assert_close(moved, expected @ tiny.text_projection, atol=1e-5, rtol=1e-5)
    assert seen and all(same for _, same in seen)
    assert not torch.allclose(plain, moved)


def test_adapters_are_gone_after_the_block_and_never_in_the_state(tiny, tokens):
    module = torch.nn.Linear(64, 192)
    adapter = Linear(None, None)
    adapter.in_proj = module  # a module as adapter: not registered in CLIP
    keys = set(tiny.state_dict())
    with pytest.raises(ValueError, match="not blocks of a 3-layer"):
        with adapted(tiny.transformer, attention={3: adapter}):
            pass
    with pytest.raises(KeyError), adapted(tiny.transformer, residual={0: lambda x, b: x},
                                          attention={0: adapter}):
        assert set(tiny.state_dict()) == keys
        raise KeyError("inside")
    assert tiny.transformer.residual_adapters is None
    assert all(block.attn.adapter is None for block in tiny.transformer.resblocks)
    assert set(tiny.state_dict()) == keys and len(list(tiny.modules())) == len(
        list(clip.tiny_clip(seed=1, text_layers=3, vision_layers=3).modules()))


def test_gradients_reach_the_adapters_not_clip(tiny, tokens):
    weight = torch.nn.Parameter(torch.zeros(3 * 64, 64))
    with adapted(tiny.transformer, attention={0: Linear(weight, None)}):
        tiny.encode_text(tokens).sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.parameters())
