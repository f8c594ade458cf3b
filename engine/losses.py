"""Losses on soft targets: one-hot, or a multi-label target spread evenly over its labels.

MVLPT trains on ELEVATER's multi-label task (VOC 2007) with the cross-entropy against the
multi-hot vector divided by its sum; a one-hot target gives the usual cross-entropy.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["soft_cross_entropy", "soft_targets"]


def soft_targets(target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Rows that sum to 1: labels ``[B]`` become one-hot ``[B, num_classes]``; a 0/1 (multi-hot)
    ``[B, C]`` matrix is divided by its row sums. A row of zeros (a negative image, which a
    multi-label ELEVATER training set keeps as vision-datasets does) stays zeros: it adds
    nothing to the cross-entropy."""
    if target.dim() == 1:
        if num_classes is None:
            raise ValueError("soft_targets of class indices needs num_classes")
        return F.one_hot(target.long(), num_classes).float()
    target = target.float()
    sums = target.sum(dim=-1, keepdim=True)
    if bool((sums < 0).any()):
        raise ValueError("target rows must be 0/1 vectors (a row sums to a negative number)")
    return target / sums.clamp_min(1e-12)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c target_c * log_softmax(logits)_c``; ``target`` is labels
    ``[B]`` or a 0/1 matrix ``[B, C]`` (made into :func:`soft_targets` first)."""
    return F.cross_entropy(logits, soft_targets(target, logits.shape[-1]).to(logits.dtype))
