"""Data loaders for a registered dataset, with Dassl's ``DataManager`` behaviour.

Beyond Dassl: the files of every split are checked to exist before anything runs (so a run
does not fail at its final test, hours in); ``DATALOADER.NUM_WORKERS`` is capped at the CPUs
this process may use (one log line instead of torch's warning per loader); and under torchrun
each process draws its own random augmentations (:mod:`engine.data.seeding`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from engine import distributed
from engine.data.datasets import Datum, build_dataset
from engine.data.read_image import read_image
from engine.data.samplers import build_sampler
from engine.data.seeding import RankSeededLoader, derive_seed, seeded_generators
from engine.data.transforms import build_transform

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader", "check_files_exist",
           "worker_count"]

logger = logging.getLogger(__name__)

MAX_LISTED = 5  # missing files quoted in an error
_capped_logged: set[tuple[int, int]] = set()  # (asked, allowed) already logged


class DatasetWrapper(Dataset):
    """Items as dicts: ``img`` (transformed), ``label``, ``domain``, ``impath``, ``index``.

    An item may read its own image (a method ``load_image()``, e.g. from inside an archive) and
    carry a 0/1 target vector over the label space (a method ``target_vector()``, for
    multi-label data); the dict then also holds ``target``.
    """

    def __init__(self, cfg: Any, data_source: Sequence[Datum], transform: Callable | None = None,
                 is_train: bool = False) -> None:
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        # Dassl's K_TRANSFORMS: training items hold that many independent augmentations of
        # the image, as a list (batches: a list of K image tensors), when it is above 1
        self.k_transforms = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        if self.k_transforms < 1:
            raise ValueError(f"DATALOADER.K_TRANSFORMS is {self.k_transforms}; it must be >= 1")
        self.to_tensor = build_transform(cfg, is_train=False) if self.return_img0 else None
        self.item_seeds: tuple[int, ...] | None = None  # set by RankSeededLoader

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict:
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath,
                  "index": idx}
        img0 = item.load_image() if hasattr(item, "load_image") else read_image(item.impath)
        if hasattr(item, "target_vector"):
            output["target"] = item.target_vector()
        with self.random_state(idx):
            output["img"] = self.transformed(img0)
        if self.to_tensor is not None:
            output["img0"] = self.to_tensor(img0)
        return output

    def transformed(self, img0: Any) -> Any:
        """The transformed image, or a list of ``K_TRANSFORMS`` independent transforms."""
        if self.transform is None:
            return img0
        if self.k_transforms == 1:
            return self.transform(img0)
        return [self.transform(img0) for _ in range(self.k_transforms)]

    def random_state(self, idx: int) -> contextlib.AbstractContextManager:
        """The generators the transform draws from: the process's own (Dassl's behaviour), or
        under :class:`RankSeededLoader` generators seeded for this item, this process and this
        epoch alone (the process's own generators are left as they were)."""
        if self.item_seeds is None:
            return contextlib.nullcontext()
        return seeded_generators(derive_seed(*self.item_seeds, idx))


def worker_count(requested: int) -> int:
    """``requested`` DataLoader workers, at most the CPUs this process may use (logged once)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    if requested <= available:
        return requested
    if (requested, available) not in _capped_logged:
        _capped_logged.add((requested, available))
        logger.info("DATALOADER.NUM_WORKERS is %d but this process may use %d CPUs: loading "
                    "with %d workers", requested, available, available)
    return available


def check_files_exist(splits: dict[str, Sequence[Datum] | None], owner: str) -> None:
    """Raise ``FileNotFoundError`` listing, per split, how many image files are missing and
    the first of them."""
    problems = []
    for name, items in splits.items():
        missing = [item.impath for item in items or [] if not os.path.exists(item.impath)]
        if missing:
            listed = "\n    ".join(missing[:MAX_LISTED])
            more = f"\n    ... and {len(missing) - MAX_LISTED} more" \
                if len(missing) > MAX_LISTED else ""
            problems.append(f"  {name}: {len(missing)} of {len(items)} images missing, e.g.\n"
                            f"    {listed}{more}")
    if problems:
        raise FileNotFoundError(f"Images of {owner} are missing (checked before training, so "
                                f"that the run does not stop at its test):\n"
                                + "\n".join(problems)
                                + "\nRestore them, or fix the dataset's split files "
                                  "(python -m datasets.check DATA NAME reports them).")


def build_data_loader(cfg: Any, sampler_type: str = "SequentialSampler",
                      data_source: Sequence[Datum] | None = None, batch_size: int = 64,
                      tfm: Callable | None = None, is_train: bool = True,
                      dataset_wrapper: type | None = None, **unused: Any) -> DataLoader:
    """One loader; training drops the last incomplete batch when there is a full one."""
    if not data_source:
        raise ValueError("Cannot build a data loader on an empty data source")
    sampler = build_sampler(sampler_type, data_source, shard=is_train, seed=cfg.SEED)
    if is_train:  # under torchrun, BATCH_SIZE is the global batch (engine.distributed)
        batch_size = distributed.per_process_batch(batch_size)
    wrapper = (dataset_wrapper or DatasetWrapper)(cfg, data_source, transform=tfm,
                                                  is_train=is_train)
    options = {"batch_size": batch_size, "sampler": sampler,
               "num_workers": worker_count(cfg.DATALOADER.NUM_WORKERS),
               "drop_last": is_train and len(sampler) >= batch_size,
               "pin_memory": torch.cuda.is_available() and cfg.USE_CUDA}
    if is_train and distributed.world_size() > 1:
        seed = cfg.SEED if cfg.SEED >= 0 else random.SystemRandom().randrange(2**63)
        return RankSeededLoader(wrapper, seed=seed, **options)
    return DataLoader(wrapper, **options)


class DataManager:
    """Builds the dataset of ``cfg.DATASET.NAME`` (or takes ``dataset``, one built otherwise,
    e.g. several datasets in one label space) and its train_x / val / test loaders."""

    def __init__(self, cfg: Any, custom_tfm_train: Callable | None = None,
                 custom_tfm_test: Callable | None = None,
                 dataset_wrapper: type | None = None, dataset: Any = None,
                 loaders: tuple[DataLoader, DataLoader | None, DataLoader] | None = None) -> None:
        """``dataset``: one already built (default: ``DATASET.NAME``'s); ``loaders``: its
        (train_x, val, test) loaders when its protocol builds them itself (ELEVATER's; its
        reader has checked every image, some inside archives)."""
        dataset = build_dataset(cfg) if dataset is None else dataset
        tfm_train = custom_tfm_train or build_transform(cfg, is_train=True)
        tfm_test = custom_tfm_test or build_transform(cfg, is_train=False)
        if not dataset.train_x and not dataset.test:
            raise ValueError(f"Dataset {cfg.DATASET.NAME} has neither training nor test items")
        if loaders is None:
            check_files_exist({"train_x": dataset.train_x, "train_u": dataset.train_u,
                               "val": dataset.val, "test": dataset.test}, cfg.DATASET.NAME)
        test_cfg = cfg.DATALOADER.TEST

        def loader(source: Sequence[Datum] | None, train: bool) -> DataLoader | None:
            if not source:
                return None
            node = cfg.DATALOADER.TRAIN_X if train else test_cfg
            return build_data_loader(cfg, sampler_type=node.SAMPLER, data_source=source,
                                     batch_size=node.BATCH_SIZE,
                                     tfm=tfm_train if train else tfm_test, is_train=train,
                                     dataset_wrapper=dataset_wrapper)

        self.dataset = dataset
        if loaders is None:
            self.train_loader_x = loader(dataset.train_x, True)
            self.train_loader_u = loader(dataset.train_u, True)
            self.val_loader = loader(dataset.val, False)
            self.test_loader = loader(dataset.test, False)
        else:
            self.train_loader_x, self.val_loader, self.test_loader = loaders
            self.train_loader_u = None
        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self.dataset.classnames

    @property
    def tasks(self) -> list | None:
        """The tasks of a multitask label space (``engine.evaluator.TaskRange``), else None."""
        return getattr(self.dataset, "tasks", None)

    def show_dataset_summary(self, cfg: Any) -> None:
        rows = [["Dataset", getattr(self.dataset, "name", "") or cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", str(list(cfg.DATASET.SOURCE_DOMAINS))])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", str(list(cfg.DATASET.TARGET_DOMAINS))])
        rows.append(["# classes", f"{self.num_classes:,}"])
        for name in ("train_x", "train_u", "val", "test"):
            items = getattr(self.dataset, name)
            if items:
                rows.append([f"# {name}", f"{len(items):,}"])
        width = max(len(r[0]) for r in rows)
        logger.info("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
