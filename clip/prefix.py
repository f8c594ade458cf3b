"""Shared causal prefixes: the tokens every class prompt begins with, computed once.

CLIP's text mask is causal, so a token's hidden state at every layer depends only on the tokens
before it. When the first ``P`` tokens of many sequences are the same (the start-of-text token
and the context before the class name, with the same deep prompts written over them), their
hidden states, keys and values are the same for every sequence. This module runs those ``P``
tokens once (per group of sequences that share them), records each layer's keys and values, and
runs only the per-sequence suffixes, whose attention takes the prefix's keys and values in front
of their own. The function computed is the same; only the rounding of fp sums may differ.

Where the prefix comes from:

* :class:`SharedPrefix` given by the caller (a prompt learner's layout says where the
  class-dependent part starts): the first ``length`` tokens are the same function of the inputs
  within each of ``groups`` consecutive, equal-size groups of sequences (prompts conditioned on
  each image: one group per image). The promise covers the token embeddings and the layer-0
  prompt; deeper prompts must be shared (``[n, d]``) or the prefix stops at the prompt slot.
* Otherwise it is read off the inputs where that is safe: token embeddings that carry no
  gradient are compared row by row, and a shared layer-0 prompt covers its slot.

A residual block whose output at a position depends on more than the tokens up to it (a
per-class adapter, say) sets ``prefix_shareable = False``; a transformer that is not causal
never shares. ``clip.model.SPEEDUPS.shared_prefix`` switches it all off.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .model import (
    SPEEDUPS,
    MultiheadAttention,
    Prompts,
    ResidualAttentionBlock,
    _batched,
    _select_prompts,
    text_groups,
)

KV = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class SharedPrefix:
    """The first ``length`` tokens are the same within each of ``groups`` consecutive groups of
    sequences (equal sizes)."""

    length: int
    groups: int = 1


def plan_prefix(model: nn.Module, embeddings: torch.Tensor, eot_indices: torch.Tensor,
                prompts: Prompts, declared: SharedPrefix | int | None) -> SharedPrefix | None:
    """The prefix worth sharing for this call, or ``None`` to run the sequences whole."""
    if not (SPEEDUPS.shared_prefix and SPEEDUPS.text_truncation
            and SPEEDUPS.attention == "sdpa") or not shareable(model.transformer):
        return None
    count = embeddings.shape[0]
    if isinstance(declared, int):
        declared = SharedPrefix(declared)
    if declared is not None and (declared.groups < 1 or count % declared.groups
                                 or declared.length < 0):
        raise ValueError(f"a shared prefix of {declared.length} tokens in {declared.groups} "
                         f"groups does not fit {count} sequences (the groups must be equal)")
    found = declared if declared is not None else detect(embeddings, prompts)
    if found is None:
        return None
    length = min(found.length, int(eot_indices.min()))  # every end-of-text token in a suffix
    for prompt in (prompts or [])[1:]:
        if prompt is not None and prompt.dim() == 3 and prompt.shape[0] > 1:
            length = min(length, 1)  # per-sequence deep prompts: only the slot's start is shared
    if length < 2 or count < 2 * found.groups:
        return None
    return SharedPrefix(length, found.groups)


def shareable(transformer: nn.Module) -> bool:
    if getattr(transformer, "residual_adapters", None) is not None:
        return False  # the prefix run calls the blocks alone, without the adapters between them
    return all(getattr(block, "causal", False) and getattr(block, "prefix_shareable", True)
               and hasattr(block.attn, "kv_hook") for block in transformer.resblocks)


def detect(embeddings: torch.Tensor, prompts: Prompts) -> SharedPrefix | None:
    """The prefix equal in every sequence, where equal values are the same computation: token
    embeddings without a gradient, and positions written by one shared layer-0 prompt."""
    if embeddings.requires_grad:
        return None  # equal values may come from different parameters
    first = prompts[0] if prompts else None
    covered = 0
    if first is not None:
        if first.dim() == 3 and first.shape[0] > 1:
            return None
        covered = first.shape[-2]
    length = 0
    while length < embeddings.shape[1] and (
            1 <= length <= covered or bool((embeddings[:, length] == embeddings[0, length]).all())):
        length += 1
    return SharedPrefix(length)


def encode_with_prefix(model: nn.Module, embeddings: torch.Tensor, eot_indices: torch.Tensor,
                       prompts: Prompts, shared: SharedPrefix) -> torch.Tensor:
    """``model.encode_text_embeddings`` with the prefix ``shared`` computed once per group."""
    count, context, _ = embeddings.shape
    per_group = count // shared.groups
    kv = prefix_keys_values(model, embeddings, prompts, shared, per_group)
    if packable(model, prompts, count, shared.length):
        return run_packed(model, embeddings, eot_indices, prompts, kv, shared.length)
    plan = text_groups(eot_indices - shared.length, context - shared.length, SPEEDUPS)
    if len(plan) == 1 and plan[0][0] is None:
        everything = torch.arange(count, device=embeddings.device)
        return run_suffix(model, embeddings, eot_indices, prompts, kv, shared.length,
                          everything // per_group, plan[0][1])
    plan = [(idx.to(embeddings.device), length) for idx, length in plan]
    features = [run_suffix(model, embeddings[idx], eot_indices[idx],
                           _select_prompts(prompts, idx, count), kv, shared.length,
                           idx // per_group, length) for idx, length in plan]
    order = torch.cat([idx for idx, _ in plan])
    return torch.cat(features)[torch.argsort(order)]


def prefix_keys_values(model: nn.Module, embeddings: torch.Tensor, prompts: Prompts,
                       shared: SharedPrefix, per_group: int) -> list[KV]:
    """Each layer's keys and values ``[groups, heads, P, d / heads]`` of the prefix, run on the
    first sequence of every group."""
    first = torch.arange(shared.groups, device=embeddings.device) * per_group
    length = shared.length
    x = embeddings[first, :length].to(model.dtype)
    count = embeddings.shape[0]
    prefix_prompts = [None if p is None else _rows(p, first, count)[..., :length - 1, :]
                      for p in (prompts or [])]
    x = _write(x, _at(prefix_prompts, 0), 1)
    x = x + model.positional_embedding[:length].to(x.dtype)
    recorded: list[KV] = []
    for i, block in enumerate(model.transformer.resblocks):
        if i:
            x = _write(x, _at(prefix_prompts, i), 1)
        with _hooked(block.attn, _Record(recorded)):
            x = block(x)
    return recorded


def run_suffix(model: nn.Module, embeddings: torch.Tensor, eot_indices: torch.Tensor,
               prompts: Prompts, kv: list[KV], start: int, group_of: torch.Tensor,
               length: int) -> torch.Tensor:
    """Features of the sequences' tokens ``start .. start + length`` attending to the prefix's
    keys and values (``group_of``: each sequence's group)."""
    suffix_prompts = [None if p is None or p.shape[-2] < start else p[..., start - 1:, :]
                      for p in (prompts or [])]
    x = embeddings[:, start:start + length].to(model.dtype)
    x = _write(x, _at(suffix_prompts, 0), 0)
    x = x + model.positional_embedding[start:start + length].to(x.dtype)
    single = bool((group_of == group_of[0]).all())
    mask = torch.ones(length, start + length, dtype=torch.bool, device=x.device).tril_(start)
    attend = [_Attend(k, v, group_of, single, mask) for k, v in kv]
    transformer = model.transformer
    for first, end, recompute in transformer.segments():
        run = functools.partial(_run_blocks, transformer.resblocks, first, end, suffix_prompts,
                                attend)
        x = checkpoint(run, x, use_reentrant=False) if recompute else run(x)
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot_indices - start]
    return x @ model.text_projection.to(x.dtype)


def packable(model: nn.Module, prompts: Prompts, count: int, start: int) -> bool:
    """Whether the suffixes can run packed (:func:`run_packed`): plain blocks, no prompt
    deeper than layer 0 reaching past the prefix's ``start`` tokens (deep prompts inside the
    prefix are the prefix run's), and no cap on the sequences per pass."""
    if SPEEDUPS.text_chunk_size and count > SPEEDUPS.text_chunk_size:
        return False
    if any(p is not None and p.shape[-2] >= start for p in (prompts or [])[1:]):
        return False
    return all(type(block) is ResidualAttentionBlock and type(block.attn) is MultiheadAttention
               and block.attn.adapter is None for block in model.transformer.resblocks)


def run_packed(model: nn.Module, embeddings: torch.Tensor, eot_indices: torch.Tensor,
               prompts: Prompts, kv: list[KV], start: int) -> torch.Tensor:
    """:func:`run_suffix` over all sequences at once, their tokens packed without padding: the
    token-wise layers (projections, MLPs, LayerNorms) run on each suffix's tokens up to its
    end-of-text token only, attention on a padded layout that holds the prefix's keys and
    values in front of each suffix (the causal mask keeps the padding out of every real token),
    and the last block only at the end-of-text tokens."""
    count = embeddings.shape[0]
    device = embeddings.device
    lengths = (eot_indices - start + 1).to(device)
    length = int(lengths.max())
    cols = torch.arange(length, device=device).expand(count, -1)
    valid = cols < lengths[:, None]
    rows, cols = valid.nonzero(as_tuple=True)  # row-major: each sequence's tokens in order
    x = embeddings[:, start:start + length].to(model.dtype)
    first = prompts[0] if prompts else None
    if first is not None and first.shape[-2] >= start:
        x = _write(x, first[..., start - 1:, :], 0)
    x = (x + model.positional_embedding[start:start + length].to(x.dtype))[rows, cols]
    groups = kv[0][0].shape[0]  # of consecutive sequences (SharedPrefix's equal groups)
    span = start + length
    padding = (~valid).nonzero(as_tuple=True)
    layout = _Packed(
        count=count, groups=groups, start=start, length=length,
        slots=rows * span + start + cols, queries=rows * length + cols,
        padding=padding[0] * span + start + padding[1],
        ends=torch.cumsum(lengths, 0) - 1, eot=lengths - 1,
        mask=torch.ones(length, span, dtype=torch.bool, device=device).tril_(start))
    prefixes = [torch.cat([_tokens_first(k), _tokens_first(v)], dim=-1) for k, v in kv]
    transformer = model.transformer
    for first_block, end, recompute in transformer.segments():
        run = functools.partial(_run_packed, transformer.resblocks, first_block, end, prefixes,
                                layout)
        x = checkpoint(run, x, use_reentrant=False) if recompute else run(x)
    x = model.ln_final(x)  # [count, width]: the last block kept the end-of-text tokens
    return x @ model.text_projection.to(x.dtype)


def _tokens_first(t: torch.Tensor) -> torch.Tensor:
    """``[groups, heads, P, d / heads]`` -> ``[groups, P, d]``."""
    return t.transpose(1, 2).flatten(2)


@dataclass(frozen=True)
class _Packed:
    count: int
    groups: int  # of consecutive sequences sharing a prefix
    start: int  # the prefix's length
    length: int  # the longest suffix
    slots: torch.Tensor  # each packed token's row in the padded [count * (start + length)]
    queries: torch.Tensor  # and in the padded suffixes [count * length]
    padding: torch.Tensor  # the rows of the padded layout past each suffix's end
    ends: torch.Tensor  # each sequence's end-of-text token among the packed ones
    eot: torch.Tensor  # and its place in the suffix
    mask: torch.Tensor  # [length, start + length]: which keys a suffix's token sees

    @property
    def span(self) -> int:
        return self.start + self.length


def _run_packed(blocks: nn.Sequential, first: int, end: int, prefixes: list[torch.Tensor],
                layout: _Packed, x: torch.Tensor) -> torch.Tensor:
    for i in range(first, end):
        x = _packed_block(blocks[i], x, prefixes[i], layout, last=i == len(blocks) - 1)
    return x


def _packed_block(block: ResidualAttentionBlock, x: torch.Tensor, prefix: torch.Tensor,
                  layout: _Packed, last: bool) -> torch.Tensor:
    """``block`` on packed tokens ``[T, width]`` (``last``: returns the end-of-text tokens'
    outputs only, ``[count, width]``); ``prefix``: the prefix's keys and values
    ``[groups, P, 2 width]``."""
    attn = block.attn
    width, heads = x.shape[-1], attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = _PaddedHeads.apply(qkv, prefix.to(qkv.dtype), layout, heads)
    if last:  # [count, heads, 1, d / heads]: the end-of-text tokens' queries only
        q = qkv[layout.ends, :width].view(layout.count, 1, heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v,
                                             attn_mask=layout.mask[layout.eot][:, None, None])
        x = x[layout.ends] + attn.out_proj(out.reshape(layout.count, width))
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.mask)
        out = out.transpose(1, 2).reshape(layout.count * layout.length, width)
        x = x + attn.out_proj(_Rows.apply(out, layout.queries))
    return x + block.mlp(block.ln_2(x))


class _PaddedHeads(torch.autograd.Function):
    """Packed ``qkv`` ``[T, 3 width]`` and the prefix's keys and values ``[groups, P, 2 width]``
    laid out for attention: the suffixes' queries ``[count, heads, L, d / heads]`` and keys
    and values ``[count, heads, P + L, d / heads]``, prefix first, padded with zeros, all views
    of one buffer. One scatter forward and one gather backward (autograd of indexing, slicing
    and concatenation would allocate and fill the padded size several times)."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, prefix: torch.Tensor, layout: _Packed, heads: int):
        width = qkv.shape[1] // 3
        count, span, start = layout.count, layout.span, layout.start
        padded = qkv.new_empty(count * span, 3 * width).index_copy_(0, layout.slots, qkv)
        padded.index_fill_(0, layout.padding, 0)  # finite: attention reads the padding too
        by_group = padded.view(layout.groups, count // layout.groups, span, 3 * width)
        by_group[:, :, :start, width:] = prefix[:, None]  # (the prefix's queries: never read)
        ctx.layout = layout
        q, k, v = padded.view(count, span, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        return q[:, :, start:], k, v

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dq: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor):
        layout = ctx.layout
        count, span, start = layout.count, layout.span, layout.start
        width = dk.shape[1] * dk.shape[3]
        # [count, heads, L, d / heads] -> [count * L, width] (a view where SDPA's gradients
        # are laid out token-first, as on a CPU)
        dq, dk, dv = (g.transpose(1, 2).reshape(-1, width) for g in (dq, dk, dv))
        dqkv = dk.new_empty(layout.slots.shape[0], 3 * width)
        for i, (g, rows) in enumerate(((dq, layout.queries), (dk, layout.slots),
                                       (dv, layout.slots))):
            torch.index_select(g, 0, rows, out=dqkv[:, i * width:(i + 1) * width])
        dprefix = torch.cat([g.view(layout.groups, count // layout.groups, span, width)
                             [:, :, :start].sum(1) for g in (dk, dv)], dim=-1)
        return dqkv, dprefix, None, None


class _Rows(torch.autograd.Function):
    """``source.index_select(0, index)`` for distinct indices, whose gradient is one copy into
    zeros (autograd's scatter-add is several times slower on a CPU)."""

    @staticmethod
    def forward(ctx, source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.rows = source.shape[0]
        return source.index_select(0, index)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.rows, *grad.shape[1:]).index_copy_(0, index, grad), None


def _run_blocks(blocks: nn.Sequential, first: int, end: int, prompts: list,
                attend: list[Callable], x: torch.Tensor) -> torch.Tensor:
    # the hooks are set inside the function, so a recomputation in the backward pass has them
    for i in range(first, end):
        if i:
            x = _write(x, _at(prompts, i), 0)
        with _hooked(blocks[i].attn, attend[i]):
            x = blocks[i](x)
    return x


class _Record:
    """Attention hook of the prefix run: keeps the keys and values, attends causally."""

    def __init__(self, into: list[KV]) -> None:
        self.into = into

    def __call__(self, k: torch.Tensor, v: torch.Tensor):
        self.into.append((k, v))
        return k, v, None


class _Attend:
    """Attention hook of a suffix run: the prefix's keys and values in front of the suffix's,
    with the causal mask shifted by the prefix's length."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, group_of: torch.Tensor, single: bool,
                 mask: torch.Tensor) -> None:
        self.k, self.v, self.group_of, self.single, self.mask = k, v, group_of, single, mask

    def __call__(self, k: torch.Tensor, v: torch.Tensor):
        count = k.shape[0]
        if self.single:
            pk = self.k[self.group_of[:1]].expand(count, -1, -1, -1)
            pv = self.v[self.group_of[:1]].expand(count, -1, -1, -1)
        else:
            pk, pv = self.k[self.group_of], self.v[self.group_of]
        return (torch.cat([pk.to(k.dtype), k], dim=2), torch.cat([pv.to(v.dtype), v], dim=2),
                self.mask)


@contextmanager
def _hooked(attn: nn.Module, hook: Callable) -> Iterator[None]:
    attn.kv_hook = hook
    try:
        yield
    finally:
        attn.kv_hook = None


def _at(prompts: list, i: int) -> torch.Tensor | None:
    return prompts[i] if i < len(prompts) else None


def _rows(prompt: torch.Tensor, rows: torch.Tensor, count: int) -> torch.Tensor:
    """A prompt for the given sequences: per-sequence prompts indexed, shared ones kept."""
    if prompt.dim() == 3 and prompt.shape[0] == count and count > 1:
        return prompt[rows.to(prompt.device)]
    return prompt


def _write(x: torch.Tensor, prompt: torch.Tensor | None, start: int) -> torch.Tensor:
    """``x`` with tokens ``start .. start + n`` replaced by ``prompt`` (nothing when ``None``
    or empty)."""
    if prompt is None or prompt.shape[-2] == 0:
        return x
    prompt = _batched(prompt, x.shape[0]).to(x.dtype)
    end = start + prompt.shape[1]
    if end > x.shape[1]:
        raise ValueError(f"prompt slot {start}..{end} does not fit in {x.shape[1]} tokens")
    return torch.cat([x[:, :start], prompt, x[:, end:]], dim=1)
