"""ELEVATER's 20 image-classification tasks ("Image Classification in the Wild") as a table.

Each row says where the task's files sit under ``DATASET.ROOT`` (ELEVATER's ``root_folder``),
which index files list the training and test images, the archives those images live in, the
label map, the number of classes and images ELEVATER publishes, and the metric ELEVATER reports
for the task (as MVLPT's last commit uses it: hateful-memes by accuracy). The facts come from
ELEVATER's ``vision_datasets.json`` (the same in MVLPT's copy of the toolkit and in ELEVATER's
DataDownload repository).

The class names are MVLPT's (the toolkit's ``class_map``), stored in ``elevater_classnames.json``
next to this file; where ELEVATER gives several names for a class (fer-2013: ``["happy",
"smiling"]``) the prompt uses the first, as MVLPT does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache

from engine.errors import ConfigKeyError

DOWNLOAD_HELP = (
    "ELEVATER's instructions: https://github.com/Computer-Vision-in-the-Wild/DataDownload "
    "(classification/download_datasets.py --ds {task}, with vision-datasets==0.2.17 and the "
    "read token given in its README), which writes DATASET.ROOT/{folder}/. The benchmark: "
    "https://computer-vision-in-the-wild.github.io/ELEVATER/"
)
METRICS = ("accuracy", "mean-per-class", "11point_mAP")


@dataclass(frozen=True)
class ElevaterTask:
    """One ELEVATER task. Paths are relative to ``DATASET.ROOT/<folder>``."""

    name: str  # ELEVATER's name: DATASET.DATASET
    folder: str  # ELEVATER's root_folder under DATASET.ROOT
    train_index: str  # index file of the training images
    train_archives: tuple[str, ...]  # archives holding them (each may also be a folder)
    test_index: str  # index file of the test images
    test_archives: tuple[str, ...]
    labelmap: str  # label map of the text (IRIS) format; "" for COCO index files
    num_classes: int
    num_train: int  # images ELEVATER lists (for the data check's report)
    num_test: int
    metric: str  # accuracy, mean-per-class or 11point_mAP
    multilabel: bool = False

    @property
    def coco(self) -> bool:
        """True when the index files are COCO JSON (class names inside), else IRIS text."""
        return self.train_index.endswith(".json")

    @property
    def classnames(self) -> list[str]:
        """The names the prompts use: MVLPT's, the first synonym where there are several."""
        return [name[0] if isinstance(name, list) else name for name in _class_lists()[self.name]]

    @property
    def synonyms(self) -> list[list[str]]:
        """Every name ELEVATER gives each class."""
        return [name if isinstance(name, list) else [name] for name in _class_lists()[self.name]]

    def download_help(self) -> str:
        return DOWNLOAD_HELP.format(task=self.name, folder=self.folder)


@lru_cache(maxsize=1)
def _class_lists() -> dict[str, list]:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "elevater_classnames.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _iris(name: str, folder: str, train: tuple[str, str], test: tuple[str, str],
          labelmap: str, counts: tuple[int, int, int], metric: str = "accuracy",
          multilabel: bool = False) -> ElevaterTask:
    return ElevaterTask(name, f"classification/{folder}", train[0], (train[1],), test[0],
                        (test[1],), labelmap, counts[0], counts[1], counts[2], metric, multilabel)


def _coco(name: str, folder: str, train: tuple[str, str], test: tuple[str, str],
          counts: tuple[int, int, int]) -> ElevaterTask:
    return ElevaterTask(name, f"classification/{folder}", train[0], (train[1],), test[0],
                        (test[1],), "", counts[0], counts[1], counts[2], "accuracy")


_TRAIN, _TEST = ("train.txt", "train.zip"), ("test.txt", "test.zip")
ELEVATER_TASKS: tuple[ElevaterTask, ...] = (
    # name, root_folder, (train index, archive), (test index, archive), label map,
    # (classes, train images, test images), metric
    _iris("caltech-101", "caltech_101_20211007", _TRAIN, _TEST, "labels.txt",
          (102, 3060, 6084), "mean-per-class"),
    _iris("cifar-10", "cifar_10_20211007", _TRAIN, ("test.txt", "val.zip"), "labels.txt",
          (10, 50000, 10000)),
    _iris("cifar-100", "cifar100_20200721", ("train_images.txt", "train_images.zip"),
          ("test_images.txt", "test_images.zip"), "labels.txt", (100, 50000, 10000)),
    _iris("country211", "country211_20210924", _TRAIN, _TEST, "labels.txt", (211, 31650, 21100)),
    _iris("dtd", "dtd_20211007", _TRAIN, _TEST, "labels.txt", (47, 1880, 1880)),
    _iris("eurosat_clip", "eurosat_clip_20210930", ("train.txt", "2750.zip"),
          ("test.txt", "2750.zip"), "labels.txt", (10, 5000, 5000)),
    _iris("fer-2013", "fer_2013_20211008", _TRAIN, _TEST, "labels.txt", (7, 28709, 3589)),
    _iris("fgvc-aircraft-2013b-variants102", "fgvc_aircraft_2013b_variants102_20211007", _TRAIN,
          _TEST, "labels.txt", (100, 3334, 3333), "mean-per-class"),
    _iris("food-101", "food_101_20211007", _TRAIN, ("test.txt", "val.zip"), "labels.txt",
          (101, 75750, 25250)),
    _iris("gtsrb", "gtsrb_20210923", _TRAIN, ("test.txt", "final_test.zip"), "labelmap.txt",
          (43, 26640, 12630)),
    _coco("hateful-memes", "hateful_memes_20211014", ("train_meta.json", "img.zip"),
          ("test_meta.json", "img.zip"), (2, 8500, 500)),
    _coco("kitti-distance", "kitti_distance_20210923", ("train_meta.json", "train_images.zip"),
          ("test_meta.json", "test_images.zip"), (4, 6347, 711)),
    _iris("mnist", "mnist_20211008", _TRAIN, ("test.txt", "val.zip"), "labels.txt",
          (10, 60000, 10000)),
    _iris("oxford-flower-102", "oxford_flower_102_20211007", _TRAIN, _TEST, "labels.txt",
          (102, 1020, 6149), "mean-per-class"),
    _iris("oxford-iiit-pets", "oxford_iiit_pets_20211007", _TRAIN, ("test.txt", "val.zip"),
          "labels.txt", (37, 3680, 3669), "mean-per-class"),
    _iris("patch-camelyon", "patch_camelyon_20211007", _TRAIN, _TEST, "labels.txt",
          (2, 262144, 32768)),
    _iris("rendered-sst2", "rendered_sst2_20210924", _TRAIN, _TEST, "labels.txt",
          (2, 6920, 1821)),
    _coco("resisc45_clip", "resisc45_clip_20210924", ("train.json", "images.zip"),
          ("test.json", "images.zip"), (45, 3150, 25200)),
    _iris("stanford-cars", "stanford_cars_20211007", _TRAIN, ("test.txt", "val.zip"),
          "labels.txt", (196, 8144, 8041)),
    _iris("voc-2007-classification", "voc2007_20211007", ("train_ic.txt", "train.zip"),
          ("test_ic.txt", "test.zip"), "labels.txt", (20, 2501, 4952), "11point_mAP",
          multilabel=True),
)
TASKS_BY_NAME: dict[str, ElevaterTask] = {task.name: task for task in ELEVATER_TASKS}
TASK_NAMES: tuple[str, ...] = tuple(TASKS_BY_NAME)


def get_task(name: str) -> ElevaterTask:
    """The row of ``name``; an unknown name is an error listing the 20 names."""
    if name not in TASKS_BY_NAME:
        raise ConfigKeyError(f"Unknown ELEVATER task {name!r}. ELEVATER's 20 tasks: "
                       f"{', '.join(TASK_NAMES)}")
    return TASKS_BY_NAME[name]
