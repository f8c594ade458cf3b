"""Adapter slots of CLIP's transformers, beside the prompt slots of clip/model.py.

Two kinds, for either tower, each indexed by block (``0 .. layers - 1``):

* **Residual adapters.** ``residual[i]`` is a callable ``(x, block) -> y``: ``x`` is block
  ``i``'s input ``[B, L, width]``, ``block`` the block itself (its ``ln_1``, ``ln_2`` ...), and
  ``y`` is added to the block's output: ``block(x) + y``.
* **Attention adapters.** ``attention[i]`` changes block ``i``'s attention projections: an
  object with ``in_proj(x)`` (``x`` the attention's input; returns an addition ``[..., 3 *
  width]`` to the query/key/value projections, or ``None``) and ``out_proj(h)`` (``h`` the
  heads' concatenated output before ``out_proj``; returns an addition ``[..., width]``, or
  ``None``). Low-rank updates of the projection matrices (LoRA) are such additions.

The adapters are active only inside :func:`adapted` (a context manager over a transformer), so
the same frozen CLIP also computes, outside it, the plain features a method compares against.
With no adapters the towers compute exactly CLIP. An adapted attention runs the batch-first
SDPA path whatever ``SPEEDUPS.attention`` says.

The adapter modules belong to whoever trains them (a prompt learner): CLIP's parameters and
state dict never change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch
from torch import nn

__all__ = ["ResidualAdapter", "AttentionAdapter", "adapted", "check_layers"]

ResidualAdapter = Callable[[torch.Tensor, nn.Module], torch.Tensor]


class AttentionAdapter(Protocol):
    def in_proj(self, x: torch.Tensor) -> torch.Tensor | None: ...

    def out_proj(self, h: torch.Tensor) -> torch.Tensor | None: ...


def check_layers(layers: Sequence[int], count: int, what: str) -> list[int]:
    """``layers`` as a sorted list after checking each is a block of a ``count``-layer
    transformer (a one-line error naming ``what`` otherwise)."""
    bad = [i for i in layers if not 0 <= int(i) < count]
    if bad:
        raise ValueError(f"{what}: layers {bad} are not blocks of a {count}-layer transformer "
                         f"(0 .. {count - 1})")
    return sorted(int(i) for i in set(layers))


def _per_layer(adapters: dict[int, object] | Sequence | None, count: int,
               what: str) -> list | None:
    if adapters is None:
        return None
    items = adapters.items() if isinstance(adapters, dict) else enumerate(adapters)
    table: list = [None] * count
    for i, adapter in items:
        check_layers([i], count, what)
        table[i] = adapter
    return table if any(a is not None for a in table) else None


@contextlib.contextmanager
def adapted(transformer: nn.Module, residual: dict[int, ResidualAdapter] | None = None,
            attention: dict[int, AttentionAdapter] | None = None) -> Iterator[nn.Module]:
    """Run ``transformer`` (a clip/model.py ``Transformer``) with these adapters for the block
    (``{layer: adapter}``); nested use on the same transformer is an error."""
    if transformer.residual_adapters is not None or any(
            block.attn.adapter is not None for block in transformer.resblocks):
        raise RuntimeError("this transformer runs with adapters already (nested adapted())")
    count = transformer.layers
    residual_table = _per_layer(residual, count, "residual adapters")
    attention_table = _per_layer(attention, count, "attention adapters") or [None] * count
    # plain attributes (object.__setattr__): adapter modules never join CLIP's modules
    object.__setattr__(transformer, "residual_adapters", residual_table)
    for block, adapter in zip(transformer.resblocks, attention_table, strict=True):
        object.__setattr__(block.attn, "adapter", adapter)
    try:
        yield transformer
    finally:
        object.__setattr__(transformer, "residual_adapters", None)
        for block in transformer.resblocks:
            object.__setattr__(block.attn, "adapter", None)
