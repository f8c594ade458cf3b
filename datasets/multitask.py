"""Several registered datasets as one multitask dataset: one label space, one task per dataset.

MVLPT (and any trainer that wants it) trains on ``DATASET.DATASET "Caltech101,OxfordPets,..."``:
each dataset is built by its own reader with its own few-shot protocol, in the given order, so
that Python's ``random`` (seeded once by train.py) is consumed task after task exactly as by the
official code and the same seed selects the same images. :func:`compose_tasks` then offsets each
task's labels by the classes of the tasks before it, sets ``Datum.domain`` to the task index, and
concatenates the splits; the class names are the tasks' class names in task order.

:func:`compose_tasks` works on any list of already-built datasets; :func:`build_task_dataset`
reads the config. ``DATASET.COOP True`` (``--dataset-coop``) says that the tasks are datasets of
CoOp's layout (the readers of this package); a reader of another layout declares it with a class
attribute ``data_layout`` (e.g. ``"elevater"``). A list that mixes layouts is refused.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from typing import Any

from datasets.elevater_tasks import TASK_NAMES
from engine.config import CN, register_config
from engine.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from engine.errors import ConfigKeyError
from engine.evaluator import TaskRange

logger = logging.getLogger(__name__)

COOP_LAYOUT = "coop"


@register_config
def add_multitask_config(cfg: CN) -> None:
    cfg.DATASET.DATASET = ""  # comma-separated registered datasets, one task each (--dataset)
    cfg.DATASET.COOP = False  # the tasks are CoOp-layout datasets (--dataset-coop)
    cfg.DATASET.MULTITASK = False  # evaluate each task among its own classes (--multi-task)
    # zero the logits of the other tasks' classes in the training loss (--multi-task-label_pertask)
    cfg.DATASET.MULTITASK_LABEL_PERTASK = False
    cfg.DATASET.MULTITASK_EVALKEY = "average"  # selection value: 'average' or one task's name
    cfg.DATASET.NUM_SAMPLES_PER_CLASS = 20  # shots of ELEVATER-style readers (--shots sets it)
    cfg.DATASET.RANDOM_SEED_SAMPLING = 1  # sampling seed of ELEVATER-style readers (--seed)
    cfg.DATASET.TRAIN_SET = "train"  # split names of ELEVATER-style readers
    cfg.DATASET.VAL_SET = ""
    cfg.DATASET.TEST_SET = "val"
    cfg.DATASET.CENTER_CROP = False  # ELEVATER-style test transform (center crop)


def data_layout(dataset_cls: type) -> str:
    """The on-disk layout a registered dataset reads: ``"coop"`` unless the class says."""
    return getattr(dataset_cls, "data_layout", COOP_LAYOUT)


class MultiTaskDataset(DatasetBase):
    """The union of several datasets in one label space.

    ``task_ranges``: each task's name and label range, in order. ``tasks``: the same when the
    evaluation splits by task (``DATASET.MULTITASK``), else None (one pooled evaluation).
    """

    def __init__(self, parts: Sequence[tuple[str, DatasetBase]], per_task: bool = True) -> None:
        if not parts:
            raise ValueError("a multitask dataset needs at least one task")
        names = [name for name, _ in parts]
        if len(set(names)) != len(names):
            raise ValueError(f"a task is listed twice in {names}; list each dataset once")
        splits: dict[str, list[Datum]] = {"train_x": [], "train_u": [], "val": [], "test": []}
        ranges, classnames, offset = [], [], 0
        for index, (name, dataset) in enumerate(parts):
            for split, items in splits.items():
                items.extend(_relabel(getattr(dataset, split) or [], offset, index))
            ranges.append(TaskRange(name, offset, offset + dataset.num_classes))
            classnames.extend(_classnames(name, dataset))
            offset += dataset.num_classes
        super().__init__(train_x=splits["train_x"], train_u=splits["train_u"] or None,
                         val=splits["val"] or None, test=splits["test"] or None)
        self._num_classes = offset
        self._classnames = classnames
        self._lab2cname = dict(enumerate(classnames))
        self.name = ",".join(names)
        self.task_ranges = ranges
        self.tasks = ranges if per_task else None


def _relabel(items: Sequence[Datum], offset: int, domain: int) -> list[Datum]:
    return [Datum(impath=item.impath, label=item.label + offset, domain=domain,
                  classname=item.classname) for item in items]


def _classnames(name: str, dataset: DatasetBase) -> list[str]:
    names = list(dataset.classnames)
    if len(names) != dataset.num_classes:
        raise ValueError(f"task {name} has {dataset.num_classes} labels but {len(names)} class "
                         "names (a label without images in its training split?)")
    return names


def compose_tasks(parts: Sequence[tuple[str, DatasetBase]],
                  per_task: bool = True) -> MultiTaskDataset:
    """One dataset from ``(task name, built dataset)`` pairs: labels offset in that order,
    ``domain`` = task index, splits concatenated, class names concatenated."""
    return MultiTaskDataset(parts, per_task=per_task)


def task_names(cfg: Any) -> list[str]:
    """The task list: ``DATASET.DATASET`` split at commas, else ``DATASET.NAME`` alone."""
    names = [n.strip() for n in str(cfg.DATASET.DATASET).split(",") if n.strip()]
    if not names and cfg.DATASET.NAME:
        names = [cfg.DATASET.NAME]
    if not names:
        raise ValueError("No tasks: set DATASET.DATASET (--dataset), e.g. --dataset "
                         f"Caltech101,OxfordPets. Registered datasets: {_registered()}")
    return names


def _elevater_hint(name: str) -> str:
    """Without --dataset-coop a task may be one of ELEVATER's: say which names those are."""
    close = difflib.get_close_matches(name, TASK_NAMES, n=1, cutoff=0.6)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return f". Or an ELEVATER task{guess}: {', '.join(TASK_NAMES)}"


def _registered() -> str:
    return ", ".join(sorted(DATASET_REGISTRY)) or "(none)"


def task_classes(names: Sequence[str], coop: bool) -> list[type]:
    """The registered dataset class of every task, after checking the layouts against
    ``DATASET.COOP``."""
    classes = []
    for name in names:
        try:
            classes.append(DATASET_REGISTRY.get(name))
        except KeyError as error:
            raise ConfigKeyError(f"DATASET.DATASET (--dataset) names {name!r}, which is not a "
                                 f"registered dataset. {error.args[0]}"
                                 f"{'' if coop else _elevater_hint(name)}") from None
    layouts = {name: data_layout(cls) for name, cls in zip(names, classes, strict=True)}
    coop_tasks = [n for n, layout in layouts.items() if layout == COOP_LAYOUT]
    other = [f"{n} ({layout})" for n, layout in layouts.items() if layout != COOP_LAYOUT]
    if coop_tasks and other:
        raise ValueError(f"The task list mixes CoOp-layout datasets ({', '.join(coop_tasks)}) "
                         f"with datasets of other layouts ({', '.join(other)}); one run takes "
                         "tasks of one layout: split the list")
    if coop and other:
        raise ValueError(f"DATASET.COOP is True (--dataset-coop) but {', '.join(other)} is not "
                         "a CoOp-layout dataset: drop --dataset-coop for these datasets")
    if not coop and coop_tasks:
        raise ValueError(f"{', '.join(coop_tasks)} read CoOp's layout: pass --dataset-coop "
                         "(DATASET.COOP True)")
    return classes


def build_task_dataset(cfg: Any) -> MultiTaskDataset:
    """The multitask dataset of ``cfg``: every task built in order (each with its own reader,
    few-shot selection and ``DATASET.NAME``), then composed."""
    names = task_names(cfg)
    classes = task_classes(names, bool(cfg.DATASET.COOP))
    parts = []
    for name, cls in zip(names, classes, strict=True):
        task_cfg = cfg.clone()
        task_cfg.defrost()
        task_cfg.DATASET.NAME = name
        task_cfg.freeze()
        dataset = cls(task_cfg)
        logger.info("Task %d: %s (%d classes, %d training images)", len(parts), name,
                    dataset.num_classes, len(dataset.train_x or []))
        parts.append((name, dataset))
    composed = compose_tasks(parts, per_task=bool(cfg.DATASET.MULTITASK))
    logger.info("%d tasks, %d classes in all: %s", len(parts), composed.num_classes,
                ", ".join(f"{t.name} {t.start}-{t.end - 1}" for t in composed.task_ranges))
    return composed
