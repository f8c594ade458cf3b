"""Metrics with Dassl's names (``dassl.metrics``), and ELEVATER's per-task metrics."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ELEVATER_METRICS", "compute_accuracy", "eleven_point_map", "elevater_metric",
           "mean_per_class_accuracy", "top1_accuracy"]


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


# ELEVATER's metrics (``accuracy``, ``mean-per-class``, ``11point_mAP``), as its toolkit computes
# them from scores ``[N, C]`` (logits or probabilities) and the truth: class indices ``[N]`` or a
# 0/1 matrix ``[N, C]`` (one-hot or multi-hot). Values are fractions in [0, 1].
ELEVATER_METRICS = ("accuracy", "mean-per-class", "11point_mAP")


def _as_matrix(y_true: np.ndarray, num_classes: int) -> np.ndarray:
    """The truth as a 0/1 matrix ``[N, C]``."""
    y_true = np.asarray(y_true)
    if y_true.ndim == 2:
        if y_true.shape[1] != num_classes:
            raise ValueError(f"truth has {y_true.shape[1]} columns, scores {num_classes}")
        return (y_true > 0).astype(np.int64)
    matrix = np.zeros((len(y_true), num_classes), dtype=np.int64)
    matrix[np.arange(len(y_true)), y_true.astype(np.int64)] = 1
    return matrix


def _check_scores(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(y_true) or len(scores) == 0:
        raise ValueError(f"scores must be [N, C] with N = {len(y_true)} > 0 rows of truth; got "
                         f"shape {scores.shape}")
    return scores


def top1_accuracy(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Fraction of rows whose highest score (the first one on ties) is a true class."""
    scores = _check_scores(y_true, scores)
    truth = _as_matrix(y_true, scores.shape[1])
    pred = scores.argmax(axis=1)
    return float(truth[np.arange(len(pred)), pred].mean())


def mean_per_class_accuracy(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Recall averaged over the classes present in the truth (scikit-learn's balanced accuracy).

    As ELEVATER's toolkit, classes absent from the truth are dropped from the scores before
    the argmax, and the true class of a row is its first positive column.
    """
    from sklearn.metrics import balanced_accuracy_score

    scores = _check_scores(y_true, scores)
    truth = _as_matrix(y_true, scores.shape[1])
    present = np.flatnonzero(truth.any(axis=0))
    return float(balanced_accuracy_score(truth[:, present].argmax(axis=1),
                                         scores[:, present].argmax(axis=1)))


def eleven_point_map(y_true: np.ndarray, scores: np.ndarray) -> float:
    """11-point interpolated average precision (PASCAL VOC 2007), averaged over the classes
    present in the truth.

    Per class: the precision/recall curve of its scores (scikit-learn), the interpolated
    precision at recall r = max precision at recall >= r, averaged over r = 0, 0.1, ..., 1.
    """
    from sklearn.metrics import precision_recall_curve

    scores = _check_scores(y_true, scores)
    truth = _as_matrix(y_true, scores.shape[1])
    levels = np.linspace(1, 0, 11)
    per_class = []
    for c in np.flatnonzero(truth.any(axis=0)):
        precision, recall, _ = precision_recall_curve(truth[:, c], scores[:, c])
        per_class.append(np.mean([precision[recall >= r].max() for r in levels]))
    return float(np.mean(per_class))


def elevater_metric(name: str, y_true: np.ndarray, scores: np.ndarray) -> float:
    """The ELEVATER metric ``name`` (one of :data:`ELEVATER_METRICS`), a fraction."""
    functions = {"accuracy": top1_accuracy, "mean-per-class": mean_per_class_accuracy,
                 "11point_mAP": eleven_point_map}
    if name not in functions:
        raise ValueError(f"Unknown ELEVATER metric {name!r}; known: {', '.join(functions)}")
    return functions[name](y_true, scores)
