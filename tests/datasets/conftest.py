"""Fixtures of the dataset tests: a config builder and a fresh data root per test."""

from __future__ import annotations

import pytest

import datasets  # noqa: F401  (registers the readers and DATASET.CUSTOM)
from engine.config import get_cfg_default


def make_cfg(root, name: str, num_shots: int = -1, seed: int = 1, subsample: str = "all",
             **custom):
    """A default config naming dataset ``name`` under ``root``; ``custom`` sets DATASET.CUSTOM."""
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    for key, value in custom.items():
        cfg.DATASET.CUSTOM[key.upper()] = value
    return cfg


@pytest.fixture
def root(tmp_path):
    return tmp_path / "data"
