"""The embedded demo dataset: small synthetic images generated on first use, no download.

Eight classes, one per colour ("red", "green", ...): a noisy field of the class colour with a
lighter or darker disc at a random place and size. The images and a split file in CoOp's format
(``split_zhou_Demo.json``: train/val/test lists of [relative path, label, class name]) are
written under ``DATASET.ROOT/demo`` once and reused; generation uses its own seeded generator,
so it never moves Python's global random state (which few-shot sampling reads).
``python -m datasets.elevater_demo DIR`` writes synthetic ELEVATER tasks drawn the same way.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.reader import ProtocolDataset, dataset_root
from datasets.splits import Datum, read_split
from engine.data.datasets import DATASET_REGISTRY

logger = logging.getLogger(__name__)

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220),
           "yellow": (230, 210, 40), "orange": (240, 140, 30), "purple": (150, 60, 200),
           "gray": (120, 120, 120), "cyan": (30, 200, 200)}
CLASSNAMES = list(COLOURS)
SPLIT_SIZES = {"train": 24, "val": 4, "test": 12}
IMAGE_SIZE = 32
SPLIT_FILE = "split_zhou_Demo.json"


def draw(rng: np.random.Generator, colour: tuple[int, int, int], size: int = IMAGE_SIZE,
         disc_colour: tuple[int, int, int] | None = None) -> Image.Image:
    """A noisy field of ``colour`` with a lighter or darker disc (of ``disc_colour`` if given)
    at a random place and size."""
    pixels = np.array(colour, dtype=np.float64) + rng.normal(0, 30, (size, size, 3))
    radius = rng.integers(size // 6, size // 3)
    cy, cx = rng.integers(radius, size - radius, 2)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    if disc_colour is not None:
        pixels[disc] += np.array(disc_colour, dtype=np.float64) - colour
    pixels[disc] *= rng.uniform(0.6, 1.4)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def generate(root: str | os.PathLike, seed: int = 0) -> Path:
    """Write the demo images and split file under ``root/demo`` unless they exist; return
    that folder."""
    folder = Path(root) / "demo"
    split_path = folder / SPLIT_FILE
    if split_path.exists():
        return folder
    logger.info("Generating the demo dataset in %s", folder)
    rng = np.random.default_rng(seed)
    split: dict[str, list[list]] = {name: [] for name in SPLIT_SIZES}
    for label, classname in enumerate(CLASSNAMES):
        (folder / "images" / classname).mkdir(parents=True, exist_ok=True)
        for part, count in SPLIT_SIZES.items():
            for i in range(count):
                relative = f"{classname}/{part}_{i:03d}.png"
                draw(rng, COLOURS[classname]).save(folder / "images" / relative)
                split[part].append([relative, label, classname])
    temporary = split_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(split))
    os.replace(temporary, split_path)  # the split file last: its presence means complete
    return folder


@DATASET_REGISTRY.register()
class Demo(ProtocolDataset):
    """The embedded demo, generated on first use under DATASET.ROOT/demo and then read like
    any split-file benchmark (few-shot selection and base/new classes included)."""

    dataset_dir = "demo"
    image_folder = "images"

    @classmethod
    def check_folder(cls, cfg) -> None:
        """Nothing to check: the folder is generated when missing."""

    def locate(self, cfg) -> str:
        return str(generate(dataset_root(cfg)))

    def read_splits(self):
        splits = read_split(os.path.join(self.dataset_dir, SPLIT_FILE), self.image_dir)
        return splits["train"], splits["val"], splits["test"]


class _DemoPart(Demo):
    """Some colours of the Demo dataset as a dataset of their own (labels from 0), to try
    several datasets at once (MVLPT's multitask source) without a download."""

    colours: tuple[str, ...] = ()

    def read_splits(self):
        # its own few-shot selections (the images folder is the Demo dataset's)
        self.split_fewshot_dir = os.path.join(self.dataset_dir,
                                              f"split_fewshot_{type(self).__name__}")
        keep = {name: label for label, name in enumerate(self.colours)}
        return tuple([Datum(impath=item.impath, label=keep[item.classname],
                            classname=item.classname)
                      for item in items if item.classname in keep]
                     for items in super().read_splits())


@DATASET_REGISTRY.register()
class DemoWarm(_DemoPart):
    """The warm colours of the Demo dataset: red, orange, yellow, purple."""

    colours = ("red", "orange", "yellow", "purple")


@DATASET_REGISTRY.register()
class DemoCool(_DemoPart):
    """The cool colours of the Demo dataset: green, blue, cyan, gray."""

    colours = ("green", "blue", "cyan", "gray")
