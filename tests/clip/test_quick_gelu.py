"""The fused QuickGELU against its plain expression, alone and inside CLIP's towers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import clip
from clip.model import ACTIVATION_LAYERS, QuickGELU, ResidualAttentionBlock, quick_gelu

# the gradient's rounding differs from autograd's of the plain expression (other order of
# products); the forward values are the same bits
GRAD_TOLERANCE = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def plain(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_values_and_gradients_equal_the_plain_expression(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    x = (4 * torch.randn(3, 1000, generator=generator)).to(dtype)
    x[0, :4] = torch.tensor([0.0, -30.0, 30.0, -0.5])  # saturated sigmoid, zero
    upstream = torch.randn(3, 1000, generator=generator).to(dtype)
    ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = quick_gelu(ours_in), plain(ref_in)
    assert ours.dtype == dtype and torch.equal(ours, ref)
    ours.backward(upstream)
    ref.backward(upstream)
    scale = ref_in.grad.float().abs().max().item()
    torch.testing.assert_close(ours_in.grad.float(), ref_in.grad.float(), rtol=0,
                               atol=GRAD_TOLERANCE[dtype] * scale)
    with torch.no_grad():
        assert torch.equal(quick_gelu(x), ref)  # the path without autograd
    assert torch.equal(x, ours_in.detach())  # the input is never written


def test_second_order_gradients_are_refused_clearly() -> None:
    x = torch.randn(5, requires_grad=True)
    (grad,) = torch.autograd.grad(quick_gelu(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        grad.sum().backward()


def test_the_towers_mlps_use_it_and_equal_the_plain_activation(monkeypatch) -> None:
    model = clip.tiny_clip(seed=3, text_layers=2, vision_layers=2)
    blocks = [*model.transformer.resblocks, *model.visual.transformer.resblocks]
    assert all(isinstance(b.mlp.gelu, QuickGELU) for b in blocks)
    tokens = clip.tokenize(["a photo of a dog.", "a tiny red fox"])
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        text = model.encode_text(tokens)
        image = model.encode_image(images)
        (text.square().sum() + image.square().sum()).backward()
        return torch.cat([text, image]), [p.grad.clone() for p in model.parameters()
                                          if p.grad is not None]

    fused, fused_grads = run()
    monkeypatch.setattr(QuickGELU, "forward", lambda self, x: plain(x))
    ref, ref_grads = run()
    torch.testing.assert_close(fused, ref, rtol=1e-6, atol=1e-6)
    assert len(fused_grads) == len(ref_grads) > 0
    for a, b in zip(fused_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * b.abs().max().item())


def test_other_activations_are_untouched() -> None:
    assert ACTIVATION_LAYERS["gelu"] is nn.GELU
    block = ResidualAttentionBlock(32, 2, activation="gelu")
    assert type(block.mlp.gelu) is nn.GELU
    tanh = ResidualAttentionBlock(32, 2, activation="gelu_tanh")
    assert tanh.mlp.gelu.approximate == "tanh"


def test_the_speedup_switch_keeps_values_and_changes_what_is_saved() -> None:
    """``speedups(fused_quick_gelu=False)`` (part of SPEEDUPS_OFF) runs the written-out
    expression: the same values, and autograd keeps its sigmoid as well."""
    from clip.model import SPEEDUPS_OFF, speedups

    assert SPEEDUPS_OFF["fused_quick_gelu"] is False
    x = torch.randn(4, 8, requires_grad=True)

    def saved_bytes() -> tuple[torch.Tensor, int]:
        sizes: list[int] = []

        def pack(t: torch.Tensor) -> torch.Tensor:
            sizes.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = quick_gelu(x)
        return y, sum(sizes)

    fused, fused_bytes = saved_bytes()
    with speedups(fused_quick_gelu=False):
        written_out, written_bytes = saved_bytes()
    assert torch.equal(fused, written_out)
    assert fused_bytes == x.numel() * 4 and written_bytes > fused_bytes
