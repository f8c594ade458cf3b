"""A dataset of your own: one folder per class, or a CSV of ``path,label`` rows.

The first load splits every class into train/val/test (``DATASET.CUSTOM.SPLIT`` fractions,
shuffled by ``DATASET.CUSTOM.SPLIT_SEED`` with a generator of its own, so Python's global random
state is untouched) and saves the split in CoOp's format (``DATASET.CUSTOM.SPLIT_FILE``); later
loads read that file, so the split never changes. Delete it to split again (e.g. after adding
images). Then the benchmarks' protocol applies: few-shot selection per seed, base/new classes.

Labels are the positions of the sorted class names (numerically sorted when every class name
is an integer). Class names are the folder names or the CSV labels, as written: they become the
prompts, so name classes the way you would say them.
"""

from __future__ import annotations

import csv
import logging
import os
import random
from collections.abc import Sequence
from typing import Any

from datasets.reader import ProtocolDataset, dataset_root
from datasets.splits import check_images, read_split, require_path, write_split
from engine.config import CN, register_config
from engine.data.datasets import Datum
from engine.registry import DATASET_REGISTRY

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@register_config
def add_custom_dataset_config(cfg: Any) -> None:
    """``DATASET.CUSTOM``: where the custom dataset is and how it is split."""
    cfg.DATASET.CUSTOM = CN()
    cfg.DATASET.CUSTOM.DIR = "custom"  # dataset folder: relative to DATASET.ROOT, or absolute
    cfg.DATASET.CUSTOM.IMAGE_DIR = "images"  # class folders / base of the CSV paths, in DIR
    cfg.DATASET.CUSTOM.CSV = ""  # CSV of path,label rows (in DIR or absolute); "": class folders
    cfg.DATASET.CUSTOM.SPLIT = (0.5, 0.2, 0.3)  # train, val, test fractions of every class
    cfg.DATASET.CUSTOM.SPLIT_SEED = 1  # seed of the one-time split (independent of SEED)
    cfg.DATASET.CUSTOM.SPLIT_FILE = "split_custom.json"  # the kept split, in DIR


def class_order(names: Sequence[str]) -> list[str]:
    """Sorted class names; numerically when all are integers."""
    unique = set(names)
    if all(name.lstrip("-").isdigit() for name in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def scan_class_folders(image_dir: str) -> list[tuple[str, str]]:
    """``(path relative to image_dir, class name)`` for the images of each class folder."""
    rows = []
    for classname in sorted(os.listdir(image_dir)):
        class_dir = os.path.join(image_dir, classname)
        if classname.startswith(".") or not os.path.isdir(class_dir):
            continue
        rows.extend((os.path.join(classname, name), classname)
                    for name in sorted(os.listdir(class_dir))
                    if name.lower().endswith(IMAGE_EXTENSIONS))
    return rows


def read_csv_rows(path: str) -> list[tuple[str, str]]:
    """``(path, class name)`` rows of a ``path,label`` CSV; a ``path,label`` header is skipped."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise ValueError(f"{path}, line {number}: expected 2 columns 'path,label', got "
                                 f"{len(row)}: {row}")
            image, label = row[0].strip(), row[1].strip()
            if number == 1 and (image.lower(), label.lower()) == ("path", "label"):
                continue
            rows.append((image, label))
    return rows


def split_counts(total: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Train, val and test sizes of a class of ``total`` images (CoOp's rounding)."""
    n_train = round(total * fractions[0])
    n_val = round(total * fractions[1])
    return n_train, n_val, total - n_train - n_val


def make_split(rows: Sequence[tuple[str, str]], fractions: Sequence[float], seed: int,
               image_dir: str) -> dict[str, list[Datum]]:
    """Shuffle each class with ``random.Random(seed)`` and cut it by ``fractions``."""
    check_fractions(fractions)
    order = class_order([classname for _, classname in rows])
    by_class: dict[str, list[str]] = {name: [] for name in order}
    for path, classname in rows:
        by_class[classname].append(path)
    rng = random.Random(seed)
    splits: dict[str, list[Datum]] = {"train": [], "val": [], "test": []}
    too_small = []
    for label, classname in enumerate(order):
        paths = list(by_class[classname])
        rng.shuffle(paths)
        counts = split_counts(len(paths), fractions)
        if any(count < 1 for count, share in zip(counts, fractions, strict=True) if share > 0):
            too_small.append(f"{classname} ({len(paths)})")
        start = 0
        for part, count in zip(splits, counts, strict=True):
            splits[part].extend(Datum(impath=os.path.join(image_dir, path), label=label,
                                      classname=classname) for path in paths[start:start + count])
            start += count
    if too_small:
        raise ValueError(f"Classes with too few images for the split {tuple(fractions)}: "
                         f"{', '.join(too_small[:10])}. Add images or change "
                         f"DATASET.CUSTOM.SPLIT.")
    return splits


def check_fractions(fractions: Sequence[float]) -> None:
    if (len(fractions) != 3 or any(share < 0 for share in fractions)
            or abs(sum(fractions) - 1) > 1e-6 or fractions[0] <= 0 or fractions[2] <= 0):
        raise ValueError(f"DATASET.CUSTOM.SPLIT must be three fractions (train, val, test) "
                         f"summing to 1 with train and test > 0, got {tuple(fractions)}")


@DATASET_REGISTRY.register()
class Custom(ProtocolDataset):
    """Your own images: ``DATASET.NAME Custom`` and the ``DATASET.CUSTOM`` keys."""

    docs_anchor = "Custom datasets"

    def __init__(self, cfg: Any) -> None:
        self.options = cfg.DATASET.CUSTOM
        self.image_folder = self.options.IMAGE_DIR
        super().__init__(cfg)

    def locate(self, cfg: Any) -> str:
        return os.path.join(dataset_root(cfg), cfg.DATASET.CUSTOM.DIR)

    def folder_setting(self, cfg: Any) -> str:
        return (f"DATASET.CUSTOM.DIR ({cfg.DATASET.CUSTOM.DIR!r}) is the dataset folder, "
                f"relative to DATASET.ROOT ({cfg.DATASET.ROOT!r}) unless absolute.")

    def read_splits(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        split_path = os.path.join(self.dataset_dir, self.options.SPLIT_FILE)
        if os.path.exists(split_path):
            splits = read_split(split_path, self.image_dir)
            check_images((item for items in splits.values() for item in items), split_path,
                         f"Restore the images, or delete {split_path} to split the data again.")
        else:
            splits = make_split(self.gather(), self.options.SPLIT, self.options.SPLIT_SEED,
                                self.image_dir)
            check_images((item for items in splits.values() for item in items),
                         self.source_name(), self.fix_hint())
            write_split(splits, split_path, self.image_dir)
        return splits["train"], splits["val"], splits["test"]

    def source_name(self) -> str:
        if self.options.CSV:
            return os.path.join(self.dataset_dir, self.options.CSV)
        return self.image_dir

    def gather(self) -> list[tuple[str, str]]:
        """``(relative path, class name)`` of every image, from the CSV or the class folders."""
        source = self.source_name()
        require_path(source, "Custom dataset CSV" if self.options.CSV else
                     "Custom dataset image folder", self.fix_hint())
        rows = read_csv_rows(source) if self.options.CSV else scan_class_folders(source)
        if not rows:
            raise ValueError(f"No images found in {source}. {self.fix_hint()}")
        logger.info("Splitting %d images of %s (seed %d)", len(rows), source,
                    self.options.SPLIT_SEED)
        return rows
