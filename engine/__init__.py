"""A small Dassl-compatible engine: config, registries, trainer loop, data, optim, evaluation.

``from engine import TRAINER_REGISTRY, TrainerX`` replaces ``from dassl.engine import ...``.
"""

from engine.registry import DATASET_REGISTRY, TRAINER_REGISTRY, Registry
from engine.trainer import SimpleTrainer, TrainerBase, TrainerX, build_trainer

__all__ = ["DATASET_REGISTRY", "TRAINER_REGISTRY", "Registry", "SimpleTrainer", "TrainerBase",
           "TrainerX", "build_trainer"]
