"""ELEVATER's image-classification tasks, read from the files a user has, with MVLPT's protocol.

The files are those of ELEVATER's image-classification format (vision-datasets' "IRIS" text
format or its COCO JSON flavour) under ``DATASET.ROOT/<root folder>`` (see
:mod:`datasets.elevater_tasks` and DATASETS.md): an index file per split whose lines are
``<image> <label>[,<label>...]`` (or a COCO file with images, annotations and categories), a
label map, and the images, either in the archive the index names (``train.zip@dir/1.jpg``) or in
a folder of the archive's name without ``.zip`` (``train/dir/1.jpg``). We read the format
ourselves rather than through the ``vision-datasets`` package: MVLPT's sampler and splits are
those of vision-datasets 0.2 (1.x changed them, see :mod:`datasets.elevater_sampling`), and the
reading is a few lines.

MVLPT's protocol (``DATASET.COOP False``; :func:`build_elevater_dataset` picks it from the
config):

- one task (``DATASET.DATASET caltech-101``): K images per class (``NUM_SAMPLES_PER_CLASS``)
  drawn with ``RANDOM_SEED_SAMPLING`` from the training index, then split 80/20 per class into
  train and val (with K = 1 both are the K images); the test index is the test set;
- several tasks (``DATASET.MULTITASK True``, names separated by commas): the tasks in
  alphabetical order share one label space (offsets in that order; ``domain`` = task position),
  the K-shot draw runs over all their training images at once and vision-datasets' balanced
  80/20 split follows, as in MVLPT's joint run.

Items are :class:`ElevaterDatum`: they read their image as the toolkit does (EXIF orientation
applied, RGB) and give ``target_vector()``, the 0/1 vector of their labels, which the loader puts
in each batch as ``target`` (:func:`engine.losses.soft_targets` turns it into MVLPT's soft
target). ``label`` is the first (smallest) label, as the toolkit's argmax of that vector.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Normalize,
    Resize,
    ToTensor,
)

from datasets.elevater_sampling import (
    VAL_SPLIT,
    sample_few_shot,
    split_single_task,
    split_train_val,
)
from datasets.elevater_tasks import TASK_NAMES, TASKS_BY_NAME, ElevaterTask, get_task
from datasets.splits import MAX_LISTED, DatasetFilesError, docs_hint
from engine import distributed
from engine.data import DatasetWrapper, build_sampler
from engine.data.datasets import DatasetBase, Datum
from engine.data.read_image import decode_image
from engine.evaluator import EVALUATOR_REGISTRY, EvalTask, PerTaskMetrics

logger = logging.getLogger(__name__)

DOCS_ANCHOR = "ELEVATER"


# ---------------------------------------------------------------- items


_OPEN_ARCHIVES: dict[tuple[int, str], zipfile.ZipFile] = {}


def _archive(path: str) -> zipfile.ZipFile:
    """One open ZipFile per process and archive (loader workers each open their own)."""
    key = (os.getpid(), path)
    if key not in _OPEN_ARCHIVES:
        _OPEN_ARCHIVES[key] = zipfile.ZipFile(path)
    return _OPEN_ARCHIVES[key]


class ElevaterDatum(Datum):
    """An ELEVATER image: its labels (one, or several for multi-label tasks) in a label space of
    ``num_classes``, and where its bytes are (a file, or a member of a zip archive)."""

    __slots__ = ("_labels", "_num_classes", "_archive_path", "_member")

    def __init__(self, path: str, labels: Sequence[int], num_classes: int, domain: int = 0,
                 classname: str = "", archive: str = "") -> None:
        labels = tuple(sorted(set(labels)))
        impath = f"{archive}@{path}" if archive else path
        # a negative (no label: multi-label training indexes keep some) has label -1
        super().__init__(impath=impath, label=labels[0] if labels else -1, domain=domain,
                         classname=classname)
        self._labels = labels
        self._num_classes = num_classes
        self._archive_path = archive
        self._member = path

    @property
    def labels(self) -> tuple[int, ...]:
        return self._labels

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def relabel(self, offset: int, domain: int, num_classes: int,
                classname: str | None = None) -> ElevaterDatum:
        """The same image with its labels shifted by ``offset`` in a label space of
        ``num_classes`` (a joint multitask space), in task ``domain``."""
        return ElevaterDatum(self._member, [label + offset for label in self._labels],
                             num_classes, domain, self.classname if classname is None
                             else classname, self._archive_path)

    def target_vector(self) -> torch.Tensor:
        target = torch.zeros(self._num_classes)
        target[list(self._labels)] = 1.0
        return target

    def load_image(self) -> Image.Image:
        """RGB image with its EXIF orientation applied, as vision-datasets loads it, through
        the reader of every other dataset (16-bit images scaled, not clipped to white; an
        oversized image an error naming it)."""
        try:
            stream = _archive(self._archive_path).open(self._member) if self._archive_path \
                else open(self._member, "rb")
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise OSError(f"Cannot read image {self.impath}: {exc}. The archive or file may be "
                          f"truncated; download it again ({docs_hint(DOCS_ANCHOR)})") from exc
        with stream:
            return decode_image(stream, self.impath, exif_transpose=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ElevaterDatum):
            return NotImplemented
        return super().__eq__(other) and (self._labels, self._num_classes) == (
            other._labels, other._num_classes)

    def __hash__(self) -> int:
        return hash((self.impath, self._labels, self.domain))

    def __repr__(self) -> str:
        return (f"ElevaterDatum(impath={self.impath!r}, labels={self._labels}, "
                f"domain={self.domain}, classname={self.classname!r})")


# ---------------------------------------------------------------- reading one task's files


@dataclass
class TaskSplit:
    """The images of one index file: their locations and their labels as listed (a label may
    repeat: the few-shot draw counts it twice, as vision-datasets does)."""

    entries: list[str]  # as written in the index file, e.g. "train.zip@images/1.jpg"
    labels: list[tuple[int, ...]]
    classes: list[str]  # names in the label map or the COCO categories


def _missing_files_error(task: ElevaterTask, folder: str, missing: Sequence[str]) -> None:
    listed = "\n  ".join(os.path.join(folder, name) for name in missing)
    expected = [task.train_index, task.test_index, *([task.labelmap] if task.labelmap else []),
                *sorted(set(task.train_archives + task.test_archives))]
    raise DatasetFilesError(
        f"ELEVATER task {task.name}: missing file(s):\n  {listed}\nThe task needs, in "
        f"{folder}: {', '.join(expected)} (each archive may instead be a folder of the same name "
        f"without '.zip'). Get them with {task.download_help()}. {docs_hint(DOCS_ANCHOR)}")


def task_folder(root: str, task: ElevaterTask) -> str:
    return os.path.join(os.path.abspath(os.path.expanduser(root)), task.folder)


def _check_files(root: str, task: ElevaterTask) -> str:
    folder = task_folder(root, task)
    if not os.path.isdir(folder):
        raise DatasetFilesError(
            f"ELEVATER task {task.name}: folder not found: {folder}\nSet DATASET.ROOT (--root) "
            f"to the folder that holds ELEVATER's 'classification/' folder. Get the task with "
            f"{task.download_help()}. {docs_hint(DOCS_ANCHOR)}")
    needed = [task.train_index, task.test_index] + ([task.labelmap] if task.labelmap else [])
    missing = [name for name in needed if not os.path.isfile(os.path.join(folder, name))]
    for archive in sorted(set(task.train_archives + task.test_archives)):
        if not (os.path.isfile(os.path.join(folder, archive))
                or os.path.isdir(os.path.join(folder, _folder_of(archive)))):
            missing.append(archive)
    if missing:
        _missing_files_error(task, folder, missing)
    return folder


def _folder_of(archive: str) -> str:
    return archive[:-4] if archive.endswith(".zip") else archive


def read_labelmap(path: str) -> list[str]:
    """One class name per non-empty line."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_iris_index(path: str, classes: Sequence[str]) -> TaskSplit:
    """``<image> <label>[,<label>...]`` per line (the image path may hold spaces)."""
    entries, labels = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(" ", 1)
            try:
                image_labels = tuple(int(x) for x in parts[1].split(",")) if len(parts) == 2 \
                    else ()
            except ValueError:
                raise ValueError(f"{path}, line {number}: expected '<image> <label>[,<label>]', "
                                 f"got {line!r}") from None
            bad = [label for label in image_labels if not 0 <= label < len(classes)]
            if bad:
                raise ValueError(f"{path}, line {number}: label {bad[0]} is outside the label "
                                 f"map's {len(classes)} classes")
            entries.append(parts[0])
            labels.append(image_labels)
    return TaskSplit(entries, labels, list(classes))


def read_coco_index(path: str) -> TaskSplit:
    """A COCO file: images (``file_name``, optional ``zip_file``), annotations (``image_id``,
    ``category_id``) and categories; images in id order, classes in category-id order."""
    with open(path, encoding="utf-8") as f:
        try:
            coco = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"{path} is not valid JSON ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); download it again") from None
    try:
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        position = {c["id"]: i for i, c in enumerate(categories)}
        images = {image["id"]: image for image in coco["images"]}
        labels: dict[Any, list[int]] = {image_id: [] for image_id in images}
        for annotation in coco["annotations"]:
            labels[annotation["image_id"]].append(position[annotation["category_id"]])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not an ELEVATER COCO index: missing or unknown {exc} "
                         "(needs images, annotations and categories)") from exc
    order = sorted(images)
    entries = [(f"{images[i]['zip_file']}@" if images[i].get("zip_file") else "")
               + images[i]["file_name"] for i in order]
    return TaskSplit(entries, [tuple(labels[i]) for i in order],
                     [c["name"] for c in categories])


def read_split(root: str, task: ElevaterTask, split: str) -> TaskSplit:
    """The ``train`` or ``test`` index of ``task`` (its files checked first)."""
    folder = _check_files(root, task)
    index = os.path.join(folder, task.train_index if split == "train" else task.test_index)
    if task.coco:
        data = read_coco_index(index)
    else:
        data = read_iris_index(index, read_labelmap(os.path.join(folder, task.labelmap)))
    if len(data.classes) != task.num_classes:
        raise ValueError(f"ELEVATER task {task.name}: {index} (or its label map) has "
                         f"{len(data.classes)} classes, ELEVATER's task has {task.num_classes}; "
                         f"the files belong to another task or version. {docs_hint(DOCS_ANCHOR)}")
    return data


class _Locator:
    """Where each index entry's bytes are: a member of an archive or a file; lists what is
    missing."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._members: dict[str, set[str]] = {}

    def locate(self, entry: str) -> tuple[str, str] | None:
        """(file path or member name, archive path or "") of ``entry``; None when absent."""
        if "@" in entry:
            archive, member = entry.split("@", 1)
            archive_path = os.path.join(self.folder, archive)
            if os.path.isfile(archive_path):
                if archive_path not in self._members:
                    try:
                        with zipfile.ZipFile(archive_path) as z:
                            self._members[archive_path] = set(z.namelist())
                    except zipfile.BadZipFile as exc:
                        raise DatasetFilesError(
                            f"{archive_path} is not a readable zip archive ({exc}); download "
                            f"it again. {docs_hint(DOCS_ANCHOR)}") from exc
                found = member in self._members[archive_path]
                return (member, archive_path) if found else None
            entry = os.path.join(_folder_of(archive), member)
        path = os.path.join(self.folder, entry)
        return (path, "") if os.path.isfile(path) else None


def read_items(root: str, task: ElevaterTask, split: str,
               data: TaskSplit | None = None) -> list[ElevaterDatum]:
    """The images of one split as items (labels of the task alone), checked to exist."""
    data = data or read_split(root, task, split)
    folder = task_folder(root, task)
    locator = _Locator(folder)
    names = task.classnames
    items, missing = [], []
    for entry, labels in zip(data.entries, data.labels, strict=True):
        where = locator.locate(entry)
        if where is None:
            missing.append(entry)
            continue
        if not labels and not (task.multilabel and split == "train"):
            raise ValueError(f"ELEVATER task {task.name}: image {entry} of the {split} index "
                             "has no label (only a multi-label training index may list "
                             "negatives)")
        items.append(ElevaterDatum(where[0], labels, task.num_classes, 0,
                                   names[min(labels)] if labels else "", where[1]))
    if missing:
        listed = "\n  ".join(missing[:MAX_LISTED])
        more = f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise DatasetFilesError(
            f"ELEVATER task {task.name}: {len(missing)} of {len(data.entries)} images of the "
            f"{split} index are in neither its archive nor the archive's folder under "
            f"{folder}, e.g.:\n  {listed}{more}\nThe files are incomplete: get them again with "
            f"{task.download_help()}")
    return items


# ---------------------------------------------------------------- the protocol


class ElevaterDataset(DatasetBase):
    """train_x / val / test of one or several ELEVATER tasks; ``tasks`` are their class ranges
    for evaluation, ``classnames`` all their classes (the label space).

    The label space is the label map's, whatever the few-shot draw kept: a multi-label draw
    (vision-datasets') can leave a class without a training image, and it stays in the space.
    """

    allow_untrained_classes = True

    def __init__(self, train_x: list[ElevaterDatum], val: list[ElevaterDatum],
                 test: list[ElevaterDatum], classnames: list[str], tasks: list[EvalTask]) -> None:
        self._given_classnames = list(classnames)
        super().__init__(train_x=train_x, val=val, test=test)
        self.tasks = tasks

    def label_space(self, splits: dict[str, Sequence[Datum] | None]
                    ) -> tuple[dict[int, str], list[str]]:
        """The label map's classes; every label of every image (not only its first: a
        multi-label class may never be an image's smallest label) must be one of them."""
        n = len(self._given_classnames)
        for split, items in splits.items():
            for item in items or []:
                wrong = [label for label in self.item_labels(item) if not 0 <= label < n]
                if wrong:
                    raise ValueError(f"ELEVATER: image {item.impath} of {split} has label "
                                     f"{wrong[0]}, outside the {n} classes of the label map")
        return dict(enumerate(self._given_classnames)), list(self._given_classnames)


def build_task_dataset(root: str, name: str, shots: int, seed: int) -> ElevaterDataset:
    """One task with MVLPT's single-task protocol (``shots <= 0``: every training image)."""
    task = get_task(name)
    data = read_split(root, task, "train")
    if shots > 0:
        chosen = sample_few_shot(data.labels, task.num_classes, shots, seed)
        data = TaskSplit([data.entries[i] for i in chosen], [data.labels[i] for i in chosen],
                         data.classes)
    items = read_items(root, task, "train", data)
    if shots == 1:
        train, val = list(items), list(items)
    else:
        train_at, val_at = split_single_task(data.labels, task.num_classes, task.multilabel)
        train, val = [items[i] for i in train_at], [items[i] for i in val_at]
    test = read_items(root, task, "test")
    logger.info("ELEVATER %s: %d train, %d val, %d test images (%s shots, seed %d)", name,
                len(train), len(val), len(test), shots if shots > 0 else "all", seed)
    return ElevaterDataset(train, val, test, task.classnames,
                           [EvalTask(name, task.metric, 0, task.num_classes)])


def build_multitask_dataset(root: str, names: Sequence[str], shots: int,
                            seed: int) -> ElevaterDataset:
    """Several tasks jointly, as MVLPT's multitask run: alphabetical label space, one K-shot
    draw over all training images, vision-datasets' balanced 80/20 split."""
    tasks = [get_task(name) for name in sorted(set(names))]
    total = sum(task.num_classes for task in tasks)
    labels: list[tuple[int, ...]] = []
    train_items: list[ElevaterDatum] = []
    test_items: list[ElevaterDatum] = []
    eval_tasks, classnames, offset = [], [], 0
    for domain, task in enumerate(tasks):
        data = read_split(root, task, "train")
        labels += [tuple(label + offset for label in image) for image in data.labels]
        train_items += [item.relabel(offset, domain, total)
                        for item in read_items(root, task, "train", data)]
        test_items += [item.relabel(offset, domain, total)
                       for item in read_items(root, task, "test")]
        eval_tasks.append(EvalTask(task.name, task.metric, offset, offset + task.num_classes))
        classnames += task.classnames
        offset += task.num_classes
    chosen = sample_few_shot(labels, total, shots, seed) if shots > 0 else range(len(labels))
    chosen = list(chosen)
    train_at, val_at = split_train_val([labels[i] for i in chosen], total, 1 - VAL_SPLIT, seed)
    train = [train_items[chosen[i]] for i in train_at]
    val = [train_items[chosen[i]] for i in val_at]
    logger.info("ELEVATER multitask (%d tasks, %d classes): %d train, %d val, %d test images",
                len(tasks), total, len(train), len(val), len(test_items))
    return ElevaterDataset(train, val, test_items, classnames, eval_tasks)


# ---------------------------------------------------------------- selection from the config


def _option(cfg: Any, key: str, default: Any) -> Any:
    node = cfg
    for part in key.split("."):
        if not hasattr(node, part):
            return default
        node = getattr(node, part)
    return node


def elevater_task_names(cfg: Any) -> list[str] | None:
    """The ELEVATER tasks the config selects (``DATASET.COOP`` False and ``DATASET.DATASET``
    naming ELEVATER tasks, comma-separated), or None when it selects no ELEVATER task."""
    if _option(cfg, "DATASET.COOP", True):
        return None
    names = [n.strip() for n in str(_option(cfg, "DATASET.DATASET", "")).split(",") if n.strip()]
    known = [name for name in names if name in TASKS_BY_NAME]
    if not known:
        return None
    if len(known) < len(names):
        unknown = [name for name in names if name not in TASKS_BY_NAME]
        raise ValueError(f"DATASET.DATASET mixes ELEVATER tasks with unknown names {unknown}; "
                         f"ELEVATER's 20 tasks: {', '.join(TASK_NAMES)}")
    return names


def build_elevater_dataset(cfg: Any) -> ElevaterDataset:
    """The ELEVATER data the config selects: ``DATASET.DATASET`` (tasks), ``DATASET.ROOT``,
    ``DATASET.NUM_SAMPLES_PER_CLASS`` (shots; --shots), ``DATASET.RANDOM_SEED_SAMPLING``
    (--seed) and ``DATASET.MULTITASK`` (--multi-task)."""
    names = elevater_task_names(cfg)
    if names is None:
        raise ValueError(f"The config selects no ELEVATER task: DATASET.COOP must be False and "
                         f"DATASET.DATASET (--dataset) name one or more of {', '.join(TASK_NAMES)}")
    shots = int(_option(cfg, "DATASET.NUM_SAMPLES_PER_CLASS", 20))
    seed = int(_option(cfg, "DATASET.RANDOM_SEED_SAMPLING", 1))
    if _option(cfg, "DATASET.MULTITASK", False):
        return build_multitask_dataset(cfg.DATASET.ROOT, names, shots, seed)
    if len(names) > 1:
        raise ValueError(f"DATASET.DATASET names {len(names)} tasks; joint training on several "
                         "tasks needs DATASET.MULTITASK True (--multi-task)")
    return build_task_dataset(cfg.DATASET.ROOT, names[0], shots, seed)


def build_elevater_transform(cfg: Any) -> Compose:
    """The toolkit's transform, for training and test alike: a bicubic resize to
    ``INPUT.SIZE`` (with ``DATASET.CENTER_CROP``: of the shorter side, then a center crop),
    to-tensor, normalisation with ``INPUT.PIXEL_MEAN`` / ``PIXEL_STD``. No augmentation."""
    size = tuple(cfg.INPUT.SIZE)
    if _option(cfg, "DATASET.CENTER_CROP", False):
        resize = [Resize(size[0], interpolation=InterpolationMode.BICUBIC), CenterCrop(size)]
    else:
        resize = [Resize(size, interpolation=InterpolationMode.BICUBIC)]
    return Compose([*resize, ToTensor(),
                    Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)])


def build_elevater_loaders(cfg: Any, dataset: ElevaterDataset, transform: Any = None
                           ) -> tuple[DataLoader, DataLoader | None, DataLoader]:
    """(train, val, test) loaders as the toolkit builds them: no incomplete batch dropped;
    training batches of ``DATALOADER.TRAIN_X.BATCH_SIZE``, shuffled when
    ``DATALOADER.TRAIN_X.SAMPLER`` is RandomSampler by a generator seeded 0 at the loader's
    creation (the toolkit's); val and test batches of ``DATALOADER.TEST.BATCH_SIZE``, in order.
    No val loader (None) when the split left no validation image (joint run with K = 1).

    MVLPT's values (set by scripts/mvlpt/*_elevater_cut.sh): one task, K > 1: the config's
    batch size, shuffled; K = 1: SequentialSampler; several tasks: batch 64, SequentialSampler;
    test batch 64 (it does not change the results).
    """
    transform = transform or build_elevater_transform(cfg)
    pin = torch.cuda.is_available() and cfg.USE_CUDA
    workers = cfg.DATALOADER.NUM_WORKERS

    def loader(items: list[ElevaterDatum], batch: int, train: bool) -> DataLoader:
        wrapper = DatasetWrapper(cfg, items, transform=transform, is_train=train)
        sampler_type = cfg.DATALOADER.TRAIN_X.SAMPLER if train else "SequentialSampler"
        if train and distributed.world_size() > 1:
            sampler = build_sampler(sampler_type, items, shard=True, seed=cfg.SEED)
            batch = distributed.per_process_batch(batch)
            return DataLoader(wrapper, batch_size=batch, sampler=sampler, num_workers=workers,
                              pin_memory=pin)
        build_sampler(sampler_type, items)  # checks the name
        shuffle = sampler_type == "RandomSampler"
        generator = torch.Generator().manual_seed(0) if shuffle else None
        return DataLoader(wrapper, batch_size=batch, shuffle=shuffle, generator=generator,
                          num_workers=workers, pin_memory=pin, drop_last=False)

    if not dataset.train_x or not dataset.test:
        raise ValueError("The ELEVATER data has no training or no test image")
    return (loader(dataset.train_x, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, True),
            loader(dataset.val, cfg.DATALOADER.TEST.BATCH_SIZE, False) if dataset.val else None,
            loader(dataset.test, cfg.DATALOADER.TEST.BATCH_SIZE, False))


def evaluation_tasks(cfg: Any) -> list[EvalTask]:
    """The tasks the config selects with their metrics and class ranges (no file read)."""
    names = elevater_task_names(cfg)
    if names is None:
        raise ValueError("The config selects no ELEVATER task (DATASET.COOP False, "
                         "DATASET.DATASET = ELEVATER task names)")
    tasks, offset = [], 0
    for name in sorted(set(names)) if len(names) > 1 else names:
        task = get_task(name)
        tasks.append(EvalTask(name, task.metric, offset, offset + task.num_classes))
        offset += task.num_classes
    return tasks


@EVALUATOR_REGISTRY.register()
class ElevaterClassification(PerTaskMetrics):
    """:class:`PerTaskMetrics` on the ELEVATER tasks the config selects (their ELEVATER metrics;
    with several tasks, ``DATASET.MULTITASK_EVALKEY`` picks the value returned)."""

    def __init__(self, cfg: Any, lab2cname: dict[int, str] | None = None,
                 tasks: list[EvalTask] | None = None, **kwargs: Any) -> None:
        evalkey = str(_option(cfg, "DATASET.MULTITASK_EVALKEY", "average"))
        super().__init__(cfg, lab2cname, tasks=tasks or evaluation_tasks(cfg), evalkey=evalkey)


# ---------------------------------------------------------------- data check


def check_tasks(root: str, names: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """(task, status, detail) per task, for ``python -m datasets.check``: ``ok`` with the class
    and image counts, ``missing`` (no folder) or ``error`` (the reader's message)."""
    reports = []
    for name in names or TASK_NAMES:
        task = get_task(name)
        folder = task_folder(root, task)
        if not os.path.isdir(folder):
            reports.append((name, "missing", f"no folder {folder} (see DATASETS.md, "
                                             f"section '{DOCS_ANCHOR}')"))
            continue
        try:
            train = read_items(root, task, "train")
            test = read_items(root, task, "test")
        except (OSError, ValueError, KeyError) as exc:
            reports.append((name, "error", str(exc).strip()))
            continue
        note = "" if (len(train), len(test)) == (task.num_train, task.num_test) else \
            f" (ELEVATER lists {task.num_train:,} and {task.num_test:,})"
        reports.append((name, "ok", f"{task.num_classes} classes, train {len(train):,}, "
                                    f"test {len(test):,}{note}"))
    return reports
