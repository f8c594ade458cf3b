"""The reading protocol every benchmark shares, and the one reader of CoOp's split files.

:class:`ProtocolDataset` runs the steps of the official readers in their order: read the three
splits, check that the listed images exist, take the few-shot selection
(``DATASET.NUM_SHOTS``, cached per seed), then keep the base or new classes
(``DATASET.SUBSAMPLE_CLASSES``). Subclasses only say where the splits come from.
:class:`SplitFileDataset` reads ``split_zhou_<Name>.json``; a table row
(:class:`SplitFileBenchmark`) gives it its folder names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from datasets.sampling import load_few_shot, subsample_classes
from datasets.splits import check_images, docs_hint, read_split, require_path
from engine.data.datasets import DatasetBase, Datum


def dataset_root(cfg: Any) -> str:
    """``DATASET.ROOT`` as an absolute path (``~`` expanded), as the official readers take it."""
    return os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))


class ProtocolDataset(DatasetBase):
    """A benchmark read with the official protocol; subclasses implement :meth:`read_splits`."""

    dataset_dir = ""  # folder under DATASET.ROOT
    image_folder = ""  # image folder inside dataset_dir ("" for dataset_dir itself)
    docs_anchor = ""  # section of DATASETS.md that explains the installation
    few_shot_val = True  # False: only the training split is few-shot (ImageNet)

    def __init__(self, cfg: Any) -> None:
        self.dataset_dir = self.locate(cfg)
        self.image_dir = os.path.join(self.dataset_dir, self.image_folder)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        require_path(self.dataset_dir, f"{type(self).__name__} folder",
                     f"{self.folder_setting(cfg)} {self.fix_hint()}")
        train, val, test = self.read_splits()
        train, val_shots = load_few_shot(train, val if self.few_shot_val else None,
                                         cfg.DATASET.NUM_SHOTS, cfg.SEED,
                                         self.split_fewshot_dir, self.image_dir)
        if self.few_shot_val:
            val = val_shots
        train, val, test = subsample_classes(train, val, test,
                                             subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)

    @classmethod
    def check_folder(cls, cfg: Any) -> None:
        """The error of a missing dataset folder, before any work (train.py's check)."""
        reader = cls.__new__(cls)
        require_path(reader.locate(cfg), f"{cls.__name__} folder",
                     f"{reader.folder_setting(cfg)} {reader.fix_hint()}")

    def locate(self, cfg: Any) -> str:
        """The dataset folder: ``dataset_dir`` under ``DATASET.ROOT``."""
        return os.path.join(dataset_root(cfg), type(self).dataset_dir)

    def folder_setting(self, cfg: Any) -> str:
        """Which setting places the dataset folder, for the error when it is missing."""
        return (f"Set DATASET.ROOT (--root) to the folder holding the datasets "
                f"(now {cfg.DATASET.ROOT!r}).")

    def fix_hint(self) -> str:
        return docs_hint(self.docs_anchor or type(self).__name__)

    def read_splits(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        """Train, val and test items, with paths checked to exist."""
        raise NotImplementedError

    def check_image_dir(self) -> None:
        require_path(self.image_dir, f"{type(self).__name__} image folder", self.fix_hint())


@dataclass(frozen=True)
class SplitFileBenchmark:
    """One dataset read from CoOp's ``split_zhou_<name>.json``."""

    name: str  # registered name = DATASET.NAME = the <name> of split_zhou_<name>.json
    folder: str  # dataset folder under DATASET.ROOT
    image_folder: str  # folder the split file's paths are relative to ("" = the dataset folder)
    split_url: str  # where CoOp publishes the split file
    docs_anchor: str  # section of DATASETS.md

    @property
    def split_file(self) -> str:
        return f"split_zhou_{self.name}.json"


class SplitFileDataset(ProtocolDataset):
    """Reads ``split_zhou_<Name>.json`` from the dataset folder; the class names are the
    file's (they become the prompts)."""

    benchmark: SplitFileBenchmark

    @property
    def split_path(self) -> str:
        return os.path.join(self.dataset_dir, self.benchmark.split_file)

    def read_splits(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        require_path(self.split_path, "Split file",
                     f"Download {self.benchmark.split_file} from {self.benchmark.split_url} "
                     f"into {self.dataset_dir}. {self.fix_hint()}")
        self.check_image_dir()
        splits = read_split(self.split_path, self.image_dir)
        check_images((item for items in splits.values() for item in items), self.split_path,
                     f"Check that the images were extracted into {self.image_dir}. "
                     f"{self.fix_hint()}")
        return splits["train"], splits["val"], splits["test"]


def split_file_reader(benchmark: SplitFileBenchmark) -> type[SplitFileDataset]:
    """A :class:`SplitFileDataset` subclass named after the benchmark (its registry name)."""
    return type(benchmark.name, (SplitFileDataset,), {
        "__doc__": f"{benchmark.name}: {benchmark.split_file} under $DATA/{benchmark.folder}.",
        "__module__": __name__,
        "benchmark": benchmark,
        "dataset_dir": benchmark.folder,
        "image_folder": benchmark.image_folder,
        "docs_anchor": benchmark.docs_anchor,
    })
