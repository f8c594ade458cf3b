"""The packed suffixes' attention layout (clip/prefix.py) against plain indexing and
concatenation, in values and gradients."""

from __future__ import annotations

import pytest
import torch

from clip.prefix import _Packed, _PaddedHeads, _Rows

HEADS, HEAD_DIM = 2, 4
WIDTH = HEADS * HEAD_DIM


def layout(lengths: list[int], start: int, groups: int) -> _Packed:
    lengths_t = torch.tensor(lengths)
    count, length = len(lengths), max(lengths)
    span = start + length
    valid = torch.arange(length).expand(count, -1) < lengths_t[:, None]
    rows, cols = valid.nonzero(as_tuple=True)
    pad_rows, pad_cols = (~valid).nonzero(as_tuple=True)
    return _Packed(count=count, groups=groups, start=start, length=length,
                   slots=rows * span + start + cols, queries=rows * length + cols,
                   padding=pad_rows * span + start + pad_cols,
                   ends=torch.cumsum(lengths_t, 0) - 1, eot=lengths_t - 1,
                   mask=torch.ones(length, span, dtype=torch.bool).tril_(start))


def plain(qkv: torch.Tensor, prefix: torch.Tensor, lay: _Packed):
    """The same layout by autograd's indexing: pad each suffix, put the prefix in front."""
    valid = lay.mask.new_zeros(lay.count, lay.length)
    rows = torch.repeat_interleave(torch.arange(lay.count), lay.eot + 1)
    cols = torch.cat([torch.arange(int(e) + 1) for e in lay.eot])
    valid[rows, cols] = True
    padded = qkv.new_zeros(lay.count, lay.length, 3 * WIDTH).index_put((rows, cols), qkv)
    front = prefix.repeat_interleave(lay.count // lay.groups, dim=0)  # [count, P, 2 width]
    front = torch.cat([front.new_zeros(lay.count, lay.start, WIDTH), front], dim=-1)
    full = torch.cat([front, padded], dim=1).view(lay.count, lay.span, 3, HEADS, HEAD_DIM)
    q, k, v = full.permute(2, 0, 3, 1, 4)
    return q[:, :, lay.start:], k, v


@pytest.mark.parametrize("groups", [1, 3])
def test_padded_heads_equal_plain_indexing(groups: int) -> None:
    lay = layout([3, 1, 4, 2, 4, 3], start=2, groups=groups)
    generator = torch.Generator().manual_seed(0)
    qkv = torch.randn(int((lay.eot + 1).sum()), 3 * WIDTH, generator=generator)
    prefix = torch.randn(groups, lay.start, 2 * WIDTH, generator=generator)
    upstream = [torch.randn(lay.count, HEADS, n, HEAD_DIM, generator=generator)
                for n in (lay.length, lay.span, lay.span)]
    grads = []
    for build in (lambda a, b: _PaddedHeads.apply(a, b, lay, HEADS),
                  lambda a, b: plain(a, b, lay)):
        a, b = qkv.clone().requires_grad_(), prefix.clone().requires_grad_()
        outs = build(a, b)
        # the padding must hold zeros (finite: attention reads it); compare what is defined
        q, k, v = outs
        grads.append((q.detach(), k.detach(), v.detach(),
                      *torch.autograd.grad(outs, (a, b), upstream)))
    ours, ref = grads
    for x, y in zip(ours, ref, strict=True):
        assert torch.equal(x, y)


def test_rows_gradient_is_a_copy_into_zeros() -> None:
    source = torch.randn(7, 3, requires_grad=True)
    index = torch.tensor([5, 0, 2])
    upstream = torch.randn(3, 3)
    (ours,) = torch.autograd.grad(_Rows.apply(source, index), source, upstream)
    (ref,) = torch.autograd.grad(source.index_select(0, index), source, upstream)
    assert torch.equal(_Rows.apply(source, index), source.index_select(0, index))
    assert torch.equal(ours, ref)
