"""Loaders: image files checked before training, the worker count capped, and under torchrun
each process drawing its own reproducible augmentations."""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler

import datasets  # noqa: F401  (registers Demo)
from engine import distributed
from engine.config import get_cfg_default
from engine.data import DataManager, DatasetWrapper, build_data_loader, build_transform
from engine.data import data_manager as dm_module
from engine.data.datasets import Datum
from engine.utils import set_random_seed


def demo_cfg(root, **options):
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/datasets/demo.yaml")
    cfg.merge_from_list(["DATASET.ROOT", str(root), "INPUT.SIZE", "(16, 16)", "SEED", "1",
                         "DATALOADER.NUM_WORKERS", "0", "VERBOSE", "False", "USE_CUDA", "False"])
    cfg.merge_from_list([x for pair in options.items() for x in pair])
    return cfg


def test_missing_test_images_stop_the_run_before_training(tmp_path, demo_root):
    import shutil

    shutil.copytree(demo_root, tmp_path / "data")
    for name in ("test_003.png", "test_007.png"):
        os.remove(tmp_path / "data" / "demo" / "images" / "cyan" / name)
    # the Demo reader lists its split without checking it: today the run would stop at its
    # final test; the data manager checks every split when it is built
    with pytest.raises(FileNotFoundError, match=r"Images of Demo are missing(.|\n)*"
                                                r"test: 2 of 96 images missing(.|\n)*"
                                                r"cyan/test_003.png(.|\n)*datasets.check"):
        DataManager(demo_cfg(tmp_path / "data"))


def test_worker_count_is_capped_with_one_log_line(demo_root, caplog, monkeypatch):
    monkeypatch.setattr(dm_module, "_capped_logged", set())
    cpus = len(os.sched_getaffinity(0))
    cfg = demo_cfg(demo_root, **{"DATALOADER.NUM_WORKERS": str(cpus + 6)})
    with caplog.at_level(logging.INFO, logger="engine.data.data_manager"):
        manager = DataManager(cfg)
        DataManager(cfg)
    loaders = [manager.train_loader_x, manager.val_loader, manager.test_loader]
    assert [loader.num_workers for loader in loaders] == [cpus] * 3
    lines = [r.getMessage() for r in caplog.records if "NUM_WORKERS" in r.getMessage()]
    assert lines == [f"DATALOADER.NUM_WORKERS is {cpus + 6} but this process may use {cpus} "
                     f"CPUs: loading with {cpus} workers"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "will create N worker processes" warning
        for loader in loaders:
            loader.check_worker_number_rationality()


# ----------------------------------------------------------------------- per-rank seeding


def gradient_items(tmp_path, workers: int = 0):
    """A config with random crops and flips, and 16 items that are one picture."""
    path = tmp_path / "gradient.png"
    if not path.exists():
        pixels = np.add.outer(np.arange(24) * 10, np.arange(24) * 3).astype(np.uint8)
        Image.fromarray(pixels).convert("RGB").save(path)
    cfg = get_cfg_default()
    cfg.merge_from_list(["INPUT.SIZE", "(8, 8)", "SEED", "1", "USE_CUDA", "False",
                         "DATALOADER.NUM_WORKERS", str(workers), "INPUT.TRANSFORMS",
                         "['random_resized_crop', 'random_flip']"])
    return cfg, [Datum(impath=str(path), label=i % 2, classname=f"c{i % 2}") for i in range(16)]


def augmented(tmp_path, epochs: list[int], workers: int = 0) -> list[np.ndarray]:
    """The images of each epoch, in loading order; the process seeded as train.py does."""
    cfg, items = gradient_items(tmp_path, workers)
    set_random_seed(cfg.SEED)
    loader = build_data_loader(cfg, "RandomSampler", items, batch_size=4,
                               tfm=build_transform(cfg, is_train=True), is_train=True)
    out = []
    for epoch in epochs:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)  # as the trainer does
        out.append(torch.cat([batch["img"] for batch in loader]).numpy())
    return out


@pytest.fixture
def two_processes(monkeypatch):
    """Process ``rank`` of 2, as torchrun starts them (the sampler and the seeds read these)."""
    monkeypatch.setattr(distributed, "world_size", lambda: 2)

    def as_rank(rank: int) -> None:
        monkeypatch.setattr(distributed, "rank", lambda: rank)

    return as_rank


def test_processes_draw_different_augmentations_reproducibly(tmp_path, two_processes):
    two_processes(0)
    first, second = augmented(tmp_path, [0, 1])
    two_processes(1)
    (other,) = augmented(tmp_path, [0])
    # today both processes draw the same crops and flips for their k-th image
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, second)  # and every epoch draws anew
    two_processes(0)
    (again,) = augmented(tmp_path, [0])
    assert np.array_equal(first, again)  # the same seed, the same run
    (resumed,) = augmented(tmp_path, [1])
    assert np.array_equal(second, resumed)  # epoch 1 without epoch 0 first: a resumed run


def test_augmentations_do_not_depend_on_the_workers(tmp_path, two_processes):
    two_processes(1)
    (in_process,) = augmented(tmp_path, [2])
    (in_a_worker,) = augmented(tmp_path, [2], workers=1)
    assert np.array_equal(in_process, in_a_worker)


def test_one_process_draws_as_a_plain_torch_loader(tmp_path):
    # without torchrun nothing changes: Dassl's loader, drawing from the global generators
    (ours,) = augmented(tmp_path, [0])
    cfg, items = gradient_items(tmp_path)
    set_random_seed(cfg.SEED)
    wrapper = DatasetWrapper(cfg, items, transform=build_transform(cfg, is_train=True))
    plain = DataLoader(wrapper, batch_size=4, sampler=RandomSampler(items), drop_last=True)
    assert np.array_equal(ours, torch.cat([batch["img"] for batch in plain]).numpy())
