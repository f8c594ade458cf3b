"""Metrics with Dassl's names (``dassl.metrics``)."""

from __future__ import annotations

import torch

__all__ = ["compute_accuracy"]


def compute_accuracy(output: torch.Tensor, target: torch.Tensor,
                     topk: tuple[int, ...] = (1,)) -> list[torch.Tensor]:
    """Top-k accuracies in percent of ``output`` ``[B, C]`` (or a tuple whose first item is
    the logits) against ``target`` ``[B]``."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum() * (100.0 / batch_size) for k in topk]
