"""ELEVATER's few-shot selection and its train/val splits, as pure functions of label lists.

Every function takes ``labels``: one tuple of class indices per image, in the order of the
image list (a multi-class image has one index, a multi-label image several, a negative image
none), and returns positions in that list. The rules are those of the code MVLPT ran:

- :func:`sample_few_shot`: vision-datasets 0.2's ``DatasetManifest.sample_few_shot_subset``
  (unchanged from 0.2.0 to 0.2.29): shuffle the images with ``random.Random(seed)``, then keep an
  image while one of its classes has fewer than K kept images (for multi-label images only when
  its least-seen class has at most K/2 or its most-seen at most 1.5 K), up to K negatives, and
  stop once every class has K. vision-datasets 1.x changed this rule (it differs on multi-label
  data and fails where a class has fewer than K images), which is why we do not call it.
- :func:`split_single_task`: the per-class 80/20 split of MVLPT's single-task path (the
  toolkit's ``get_dataloader(val_split=0.2)``): the first ``ceil(n_c * 0.2)`` images of each
  class, in list order, go to validation; for multi-label data a greedy pass does the same per
  label. The training positions come in the order of CPython's set of integers, as upstream
  (the loader then shuffles them).
- :func:`split_train_val`: vision-datasets 0.2's ``DatasetManifest.train_val_split``, which the
  joint multitask path uses (``train_ratio=0.8``, ``random_seed`` = the sampling seed).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np

Labels = Sequence[Sequence[int]]
VAL_SPLIT = 0.2  # fraction of the few-shot images that MVLPT keeps for validation


def _counts_of(image_labels: Sequence[int], counts: list[int]) -> list[int]:
    return [counts[label] for label in image_labels]


def _add(image_labels: Sequence[int], counts: list[int]) -> None:
    for label in image_labels:
        counts[label] += 1


def sample_few_shot(labels: Labels, num_classes: int, shots: int, seed: int) -> list[int]:
    """Positions of the few-shot images, in the shuffled order in which they were kept."""
    if shots <= 0:
        raise ValueError(f"shots must be > 0 (got {shots}); a non-positive "
                         "DATASET.NUM_SAMPLES_PER_CLASS means 'all images' and skips sampling")
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)
    counts = [0] * num_classes
    kept: list[int] = []
    negatives = 0
    for position in order:
        image_labels = labels[position]
        if not image_labels:
            if negatives < shots:
                negatives += 1
                kept.append(position)
            continue
        seen = _counts_of(image_labels, counts)
        if min(seen) >= shots:
            continue
        if min(seen) <= shots / 2 or max(seen) <= 1.5 * shots:
            kept.append(position)
            _add(image_labels, counts)
        if min(counts) >= shots:
            break
    return kept


def split_single_task(labels: Labels, num_classes: int, multilabel: bool,
                      val_split: float = VAL_SPLIT) -> tuple[list[int], list[int]]:
    """(train, val) positions of MVLPT's single-task split of the (few-shot) training images."""
    if multilabel:
        val = _greedy_multilabel_val(labels, num_classes, val_split)
    else:
        unlabelled = [i for i, image_labels in enumerate(labels) if not image_labels]
        if unlabelled:
            raise ValueError(f"{len(unlabelled)} images of a multi-class task have no label "
                             f"(e.g. position {unlabelled[0]}); every image needs one")
        first = [image_labels[0] for image_labels in labels]
        chosen: list[int] = []
        for label, count in Counter(first).items():  # classes in order of first appearance
            n_val = math.ceil(count * val_split)
            chosen += [i for i, value in enumerate(first) if value == label][:n_val]
        val = list(set(chosen))
    train = list(set(range(len(labels))) - set(val))
    return train, val


def _greedy_multilabel_val(labels: Labels, num_classes: int, val_split: float) -> list[int]:
    """Take, for the first label still short of ``ceil(n_label * val_split)`` validation
    images, its first image not taken yet; repeat until no label is short."""
    vectors = np.zeros((len(labels), num_classes))
    for i, image_labels in enumerate(labels):
        vectors[i, list(image_labels)] = 1
    wanted = np.ceil(vectors.sum(axis=0) * val_split)
    val: list[int] = []
    short = np.flatnonzero(wanted > 0)
    while short.size:
        pick = int(np.flatnonzero(vectors[:, short[0]] > 0)[0])
        val.append(pick)
        wanted -= vectors[pick]
        vectors[pick] = 0
        short = np.flatnonzero(wanted > 0)
    return val


def split_train_val(labels: Labels, num_classes: int, train_ratio: float,
                    seed: int) -> tuple[list[int], list[int]]:
    """(train, val) positions of vision-datasets 0.2's balanced split, in their kept order.

    The images are shuffled with ``random.Random(seed)``; each goes to validation when its
    labels are, relative to the ratio, rarer there than in training (ties broken by the label
    totals), else to training; negatives keep the ratio among themselves.
    """
    n = len(labels)
    if int(n * train_ratio) == 0:
        return [], list(range(n))
    if int(n * train_ratio) == n:
        return list(range(n)), []
    order = list(range(n))
    random.Random(seed).shuffle(order)
    in_train, in_val = [0] * num_classes, [0] * num_classes
    ratio = (1 - train_ratio) / train_ratio
    train: list[int] = []
    val: list[int] = []
    negatives = [0, 0]  # train, val
    for position in order:
        image_labels = labels[position]
        if not image_labels:
            to_train = negatives[0] == 0 or negatives[1] / negatives[0] >= ratio
            negatives[0 if to_train else 1] += 1
            (train if to_train else val).append(position)
            continue
        train_seen = _counts_of(image_labels, in_train)
        val_seen = _counts_of(image_labels, in_val)
        train_sum, train_min = sum(train_seen) * ratio, min(train_seen) * ratio
        val_sum, val_min = sum(val_seen), min(val_seen)
        if val_min < train_min or (val_min == train_min and val_sum < train_sum):
            val.append(position)
            _add(image_labels, in_val)
        else:
            train.append(position)
            _add(image_labels, in_train)
    return train, val
