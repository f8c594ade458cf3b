"""ImageNet and its four test-only variants, read from their folders and ``classnames.txt``.

``classnames.txt`` (from CoOp, CLIP's class names) has one line per class: the WordNet id, a
space, the class name. ImageNet's labels are the positions of the sorted class folders of
``images/train`` (and, for the test set, of ``images/val``). Images inside a class folder keep
the order of ``os.listdir``, as Dassl's ``listdir_nohidden`` does, so the few-shot selection of a
seed is the official one; the listing is saved once as ``imagenet/preprocessed.json`` (the
official reader's ``preprocessed.pkl``, as JSON) and reused, which freezes that order. Where the
official ``preprocessed.pkl`` is present it gives the listing (read safely; paths relocated), so
the order is that of the user's official runs.
The official ImageNet reader uses the validation set as test set and as ``val``, draws few-shot
images only for training, and subsamples base/new classes; so does this one.

The variants are test sets (``train_x`` and ``test`` are the same list; few-shot and subsampling
do not apply, as in the official readers): ImageNetV2's folders are the label indices 0..999 in
the order of ``classnames.txt``; ImageNet-Sketch, -A and -R have one folder per WordNet id,
labelled in sorted order (200 classes for -A and -R) with ImageNet's class names.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from datasets.official_cache import OfficialCacheError, read_official_cache, relocate_last_parts
from datasets.reader import ProtocolDataset, dataset_root
from datasets.splits import (
    DatasetFilesError,
    check_images,
    docs_hint,
    read_split,
    require_path,
    write_split,
)
from engine.data.datasets import DatasetBase, Datum
from engine.registry import DATASET_REGISTRY

logger = logging.getLogger(__name__)

CLASSNAMES_FILE = "classnames.txt"
CLASSNAMES_URL = "https://drive.google.com/file/d/1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF/view?usp=sharing"
LISTING_FILE = "preprocessed.json"
OFFICIAL_LISTING_FILE = "preprocessed.pkl"  # written by the official reader


def listdir_nohidden(path: str) -> list[str]:
    """Entries of ``path`` not starting with a dot, in ``os.listdir`` order (Dassl's default)."""
    return [name for name in os.listdir(path) if not name.startswith(".")]


def class_folders(path: str) -> list[str]:
    """Sorted sub-folders of ``path`` (hidden ones and files such as README.txt left out)."""
    return sorted(entry.name for entry in os.scandir(path)
                  if entry.is_dir() and not entry.name.startswith("."))


def read_classnames(path: str, fix: str) -> dict[str, str]:
    """``classnames.txt`` as an ordered ``{WordNet id: class name}``."""
    require_path(path, "Class-name file", fix)
    classnames: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split(" ")
            if parts[0]:
                classnames[parts[0]] = " ".join(parts[1:])
    return classnames


def read_class_folders(image_dir: str, folders: list[str], classnames: dict[str, str],
                       source: str) -> list[Datum]:
    """Items of ``image_dir/<folder>/*`` labelled by the position of the folder in ``folders``."""
    unknown = [folder for folder in folders if folder not in classnames]
    if unknown:
        raise DatasetFilesError(f"{len(unknown)} folders of {image_dir} are not in {source}, "
                                f"e.g. {unknown[:5]}; use CoOp's classnames.txt "
                                f"({CLASSNAMES_URL})")
    items = []
    for label, folder in enumerate(folders):
        class_dir = os.path.join(image_dir, folder)
        items.extend(Datum(impath=os.path.join(class_dir, name), label=label,
                           classname=classnames[folder])
                     for name in listdir_nohidden(class_dir))
    return items


@DATASET_REGISTRY.register()
class ImageNet(ProtocolDataset):
    """ImageNet: ``images/train`` and ``images/val`` (the test set), ``classnames.txt``."""

    dataset_dir = "imagenet"
    image_folder = "images"
    docs_anchor = "ImageNet"
    few_shot_val = False

    def read_splits(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        listing = os.path.join(self.dataset_dir, LISTING_FILE)
        if os.path.exists(listing):
            splits = read_split(listing, self.image_dir, ("train", "test"))
            check_images((item for items in splits.values() for item in items), listing,
                         f"Delete {listing} to list the image folders again.")
            train, test = splits["train"], splits["test"]
        else:
            train, test = self.official_listing() or self.list_images()
            try:
                write_split({"train": train, "test": test}, listing, self.image_dir)
            except OSError as exc:
                logger.warning("Could not save the ImageNet listing to %s (%s)", listing, exc)
        return train, test, test

    def official_listing(self) -> tuple[list[Datum], list[Datum]] | None:
        """The listing of the official ``preprocessed.pkl``, if there is one: the image order of
        the user's official runs, so that a seed draws the same few-shot images."""
        path = os.path.join(self.dataset_dir, OFFICIAL_LISTING_FILE)
        if not os.path.exists(path):
            return None
        cached = read_official_cache(path)
        if not {"train", "test"} <= set(cached):
            raise OfficialCacheError(f"{path} has no train and test lists (it has "
                                     f"{', '.join(cached)}); move it away to list the folders")
        # the official paths are <image dir>/{train,val}/<wnid>/<file> on the machine that wrote
        # them: keep the last three parts
        train, test = (relocate_last_parts(cached[name], self.image_dir, 3)
                       for name in ("train", "test"))
        check_images(train + test, path, f"Move {path} away to list the image folders instead.")
        logger.info("Using the official ImageNet listing of %s", path)
        return train, test

    def list_images(self) -> tuple[list[Datum], list[Datum]]:
        classnames = read_classnames(os.path.join(self.dataset_dir, CLASSNAMES_FILE),
                                     f"Download it from {CLASSNAMES_URL} into "
                                     f"{self.dataset_dir}. {self.fix_hint()}")
        parts = []
        for part in ("train", "val"):
            folder = os.path.join(self.image_dir, part)
            require_path(folder, "ImageNet image folder", self.fix_hint())
            parts.append(read_class_folders(folder, class_folders(folder), classnames,
                                            CLASSNAMES_FILE))
        return parts[0], parts[1]


class ImageNetVariant(DatasetBase):
    """A test-only ImageNet variant: its image folder and a copy of ImageNet's classnames.txt."""

    dataset_dir = ""
    image_folder = ""
    docs_anchor = ""

    def __init__(self, cfg: Any) -> None:
        self.dataset_dir = os.path.join(dataset_root(cfg), type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_folder)
        hint = docs_hint(self.docs_anchor)
        require_path(self.dataset_dir, f"{type(self).__name__} folder",
                     f"Set DATASET.ROOT (--root) to the folder holding the datasets "
                     f"(now {cfg.DATASET.ROOT!r}). {hint}")
        require_path(self.image_dir, f"{type(self).__name__} image folder", hint)
        classnames = read_classnames(os.path.join(self.dataset_dir, CLASSNAMES_FILE),
                                     f"Copy $DATA/imagenet/{CLASSNAMES_FILE} into "
                                     f"{self.dataset_dir}. {hint}")
        if cfg.DATASET.SUBSAMPLE_CLASSES != "all":
            logger.warning("%s is a test set: DATASET.SUBSAMPLE_CLASSES=%s is ignored, as in the "
                           "official code", type(self).__name__, cfg.DATASET.SUBSAMPLE_CLASSES)
        data = self.read_data(classnames)
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames: dict[str, str]) -> list[Datum]:
        return read_class_folders(self.image_dir, class_folders(self.image_dir), classnames,
                                  CLASSNAMES_FILE)


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    """ImageNetV2 matched-frequency: folders ``0``..``999`` named by label."""

    dataset_dir = "imagenetv2"
    image_folder = "imagenetv2-matched-frequency-format-val"
    docs_anchor = "ImageNetV2"

    def read_data(self, classnames: dict[str, str]) -> list[Datum]:
        missing = [str(label) for label in range(len(classnames))
                   if not os.path.isdir(os.path.join(self.image_dir, str(label)))]
        if missing:
            raise DatasetFilesError(f"{len(missing)} of the {len(classnames)} label folders of "
                                    f"{self.image_dir} are missing, e.g. {missing[:5]}. "
                                    f"{docs_hint(self.docs_anchor)}")
        by_index = {str(label): classnames[wnid] for label, wnid in enumerate(classnames)}
        return read_class_folders(self.image_dir, list(by_index), by_index, CLASSNAMES_FILE)


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    """ImageNet-Sketch: ``images/<wnid>/...`` (1,000 classes)."""

    dataset_dir = "imagenet-sketch"
    image_folder = "images"
    docs_anchor = "ImageNet-Sketch"


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetVariant):
    """ImageNet-A(dversarial): ``imagenet-a/<wnid>/...`` (200 classes)."""

    dataset_dir = "imagenet-adversarial"
    image_folder = "imagenet-a"
    docs_anchor = "ImageNet-A"


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):
    """ImageNet-R(endition): ``imagenet-r/<wnid>/...`` (200 classes)."""

    dataset_dir = "imagenet-rendition"
    image_folder = "imagenet-r"
    docs_anchor = "ImageNet-R"
