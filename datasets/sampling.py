"""Few-shot selection, its JSON cache, and the base/new class split of the base-to-new protocol.

:func:`select_few_shot` draws exactly as the official readers do: Dassl's
``generate_fewshot_dataset`` on the training list with K shots, then on the validation list with
``min(K, 4)`` shots, both from Python's global ``random`` that train.py seeds from ``SEED``.
So the same seed picks the same images as the official code.

The official readers cache the selection as ``split_fewshot/shot_{K}-seed_{S}.pkl``; ours is
``shot_{K}-seed_{S}.json`` in the same folder (same rows as a split file, never a pickle), so
both can sit side by side. As in the official code, a cache hit draws nothing from ``random``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

from datasets.splits import read_split, write_split
from engine.data.datasets import Datum, sample_few_shot

logger = logging.getLogger(__name__)

SUBSAMPLE_CHOICES = ("all", "base", "new")
MAX_VAL_SHOTS = 4  # the official readers keep min(K, 4) validation images per class


def subsample_classes(*splits: Sequence[Datum], subsample: str = "all") -> list[list[Datum]]:
    """Keep the base or the new half of the classes in every split, relabelled from 0.

    The labels of the first split, sorted, are cut at ``ceil(n / 2)``: the first part is
    ``base``, the rest ``new``; ``all`` returns the splits unchanged.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, "
                         f"got {subsample!r}")
    if subsample == "all":
        return [list(split) for split in splits]
    labels = sorted({item.label for item in splits[0]})
    half = math.ceil(len(labels) / 2)
    selected = labels[:half] if subsample == "base" else labels[half:]
    relabel = {label: new for new, label in enumerate(selected)}
    logger.info("Subsampling the %s classes (%d of %d)", subsample, len(selected), len(labels))
    return [[Datum(impath=item.impath, label=relabel[item.label], domain=item.domain,
                   classname=item.classname)
             for item in split if item.label in relabel]
            for split in splits]


def select_few_shot(train: Sequence[Datum], val: Sequence[Datum] | None,
                    num_shots: int) -> tuple[list[Datum], list[Datum] | None]:
    """K training and ``min(K, 4)`` validation items per class, drawn in that order.

    ``val=None`` (ImageNet) draws only the training items. ``num_shots < 1`` keeps everything.
    """
    if num_shots < 1:
        return list(train), None if val is None else list(val)
    train = sample_few_shot(train, num_shots)
    if val is not None:
        val = sample_few_shot(val, min(num_shots, MAX_VAL_SHOTS))
    return train, val


def few_shot_cache_path(split_fewshot_dir: str, num_shots: int, seed: int) -> str:
    return os.path.join(split_fewshot_dir, f"shot_{num_shots}-seed_{seed}.json")


def load_few_shot(train: Sequence[Datum], val: Sequence[Datum] | None, num_shots: int,
                  seed: int, split_fewshot_dir: str,
                  image_dir: str) -> tuple[list[Datum], list[Datum] | None]:
    """:func:`select_few_shot` through the JSON cache of ``(num_shots, seed)``.

    A cached selection is read back as it was saved; otherwise one is drawn and saved. A cache
    that cannot be written (read-only data folder) is only a warning.
    """
    if num_shots < 1:
        return select_few_shot(train, val, num_shots)
    names = ("train",) if val is None else ("train", "val")
    path = few_shot_cache_path(split_fewshot_dir, num_shots, seed)
    if os.path.exists(path):
        logger.info("Loading the few-shot selection from %s", path)
        cached = read_split(path, image_dir, names)
        return cached["train"], cached.get("val")
    train, val = select_few_shot(train, val, num_shots)
    chosen = {"train": train} if val is None else {"train": train, "val": val}
    try:
        write_split(chosen, path, image_dir)
    except OSError as exc:
        logger.warning("Could not save the few-shot selection to %s (%s); it will be drawn "
                       "again next time", path, exc)
    return train, val
