"""Few-shot selection, its JSON cache, and the base/new class split of the base-to-new protocol.

:func:`select_few_shot` draws exactly as the official readers do: Dassl's
``generate_fewshot_dataset`` on the training list with K shots, then on the validation list with
``min(K, 4)`` shots, both from Python's global ``random`` that train.py seeds from ``SEED``.
So the same seed picks the same images as the official code.

The official readers cache the selection as ``split_fewshot/shot_{K}-seed_{S}.pkl``; ours is
``shot_{K}-seed_{S}.json`` in the same folder (same rows as a split file, never a pickle), so
both can sit side by side. As in the official code, a cache hit draws nothing from ``random``.
Where only the official pickle exists, its selection is used (read safely, see
:mod:`datasets.official_cache`) and saved as our JSON, so runs continue on the very images of
the user's official runs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

from datasets.official_cache import OfficialCacheError, read_official_cache, relocate_by_suffix
from datasets.splits import read_split, write_split
from engine.data.datasets import Datum, sample_few_shot, split_by_label
from engine.data.datasets.base import warn_fewer_shots

logger = logging.getLogger(__name__)

SUBSAMPLE_CHOICES = ("all", "base", "new")
MAX_VAL_SHOTS = 4  # the official readers keep min(K, 4) validation images per class


def subsample_classes(*splits: Sequence[Datum], subsample: str = "all") -> list[list[Datum]]:
    """Keep the base or the new half of the classes in every split, relabelled from 0.

    The labels of all the splits together, sorted, are cut at ``ceil(n / 2)``: the first part
    is ``base``, the rest ``new``; ``all`` returns the splits unchanged. (The official code
    takes the labels of the first split, the training one; the two agree whenever every class
    has training images, which :class:`engine.data.datasets.DatasetBase` then requires.)
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, "
                         f"got {subsample!r}")
    if subsample == "all":
        return [list(split) for split in splits]
    labels = sorted({item.label for split in splits for item in split})
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
    train = sample_few_shot(train, num_shots, what="training images")
    if val is not None:
        val = sample_few_shot(val, min(num_shots, MAX_VAL_SHOTS), what="validation images")
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
        _warn_if_short(cached["train"], num_shots)
        return cached["train"], cached.get("val")
    official = official_few_shot(train, val, num_shots, seed, split_fewshot_dir, image_dir)
    if official:
        _warn_if_short(official[0], num_shots)
    train, val = official if official else select_few_shot(train, val, num_shots)
    chosen = {"train": train} if val is None else {"train": train, "val": val}
    try:
        write_split(chosen, path, image_dir)
    except OSError as exc:
        logger.warning("Could not save the few-shot selection to %s (%s); it will be drawn "
                       "again next time", path, exc)
    return train, val


def _warn_if_short(train: Sequence[Datum], num_shots: int) -> None:
    """A selection read back (ours or the official one) warns as a drawn one does when a class
    has fewer than K images, so each run's log.txt says so."""
    short = [f"{group[0].classname!r} has {len({d.impath for d in group})}"
             for group in split_by_label(train).values()
             if len({d.impath for d in group}) < num_shots]
    warn_fewer_shots(short, num_shots, "training images", repeat=False)


def official_few_shot(train: Sequence[Datum], val: Sequence[Datum] | None, num_shots: int,
                      seed: int, split_fewshot_dir: str, image_dir: str
                      ) -> tuple[list[Datum], list[Datum] | None] | None:
    """The selection of the official ``shot_{K}-seed_{S}.pkl``, matched to ``train`` and
    ``val``; None (with a warning saying why) when there is none or it does not fit them."""
    path = os.path.join(split_fewshot_dir, f"shot_{num_shots}-seed_{seed}.pkl")
    if not os.path.exists(path):
        return None
    try:
        cached = read_official_cache(path)
    except OfficialCacheError as exc:
        logger.warning("Not using the official few-shot selection: %s", exc)
        return None
    chosen: dict[str, list[Datum]] = {}
    for name, items in (("train", train), ("val", val)):
        if items is None:
            continue
        rows = cached.get(name)
        if rows is None:
            logger.warning("Not using %s: it has no '%s' list; drawing the selection", path, name)
            return None
        known = {os.path.relpath(item.impath, image_dir).replace(os.sep, "/"): item
                 for item in items}
        matched, unmatched = relocate_by_suffix(rows, known)
        if not unmatched:
            unmatched = [row[0] for row, item in zip(rows, matched, strict=True)
                         if row[1] != item.label]
        if unmatched:
            logger.warning("Not using %s: %d of its %d '%s' images are not in this split with "
                           "the same label (e.g. %s); drawing the selection", path,
                           len(unmatched), len(rows), name, unmatched[0])
            return None
        chosen[name] = matched
    logger.info("Using the official few-shot selection of %s", path)
    return chosen["train"], chosen.get("val")
