"""A small Dassl-compatible engine: config, registries, trainer loop, data, optim, evaluation.

``from engine import TRAINER_REGISTRY, TrainerX`` replaces ``from dassl.engine import ...``.
The names are imported on first use, so a tool that reads only ``engine.errors`` or
``engine.config`` (the sweep, the results tables) starts without torch and torchvision.
"""

from __future__ import annotations

import importlib

_HOMES = {"DATASET_REGISTRY": "engine.registry", "TRAINER_REGISTRY": "engine.registry",
          "Registry": "engine.registry", "SimpleTrainer": "engine.trainer",
          "TrainerBase": "engine.trainer", "TrainerX": "engine.trainer",
          "build_trainer": "engine.trainer"}

__all__ = list(_HOMES)


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
