"""Checks train.py makes before it prints the config: mistakes in the input stop the run with
their one-line error before the long dump of arguments and config, and a config file written
for another method is pointed out."""

from __future__ import annotations

from typing import Any

import yaml

from engine.registry import DATASET_REGISTRY, TRAINER_REGISTRY


def check_inputs(cfg: Any) -> None:
    """Raise the errors that need no work: an unknown trainer or dataset name, a missing
    dataset folder (readers with a ``check_folder`` class method)."""
    if cfg.TRAINER.NAME:
        TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    if cfg.DATASET.NAME:
        check = getattr(DATASET_REGISTRY.get(cfg.DATASET.NAME), "check_folder", None)
        if check is not None:
            check(cfg)


def foreign_trainer_nodes(cfg: Any, config_file: str) -> str | None:
    """A one-line warning when ``config_file`` sets the TRAINER node of other methods and not
    the node of the run's trainer (``--trainer CoOp --config-file configs/trainers/MaPLe/...``:
    the MaPLe settings would be ignored); None otherwise."""
    if not config_file or not cfg.TRAINER.NAME:
        return None
    trainer = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    own = getattr(trainer, "config_node", "")
    if not own:  # a trainer without a node of its own (zero-shot CLIP) reads others' settings
        return None
    with open(config_file, encoding="utf-8") as f:
        text = yaml.safe_load(f)
    trainer_section = text.get("TRAINER") if isinstance(text, dict) else None
    written = set(trainer_section) if isinstance(trainer_section, dict) else set()
    if own in written:
        return None
    method_nodes = {getattr(TRAINER_REGISTRY.get(name), "config_node", "")
                    for name in TRAINER_REGISTRY} - {""}
    foreign = sorted((written & method_nodes) - {own} - _learner_nodes(trainer, cfg))
    if not foreign:
        return None
    names = ", ".join(f"TRAINER.{node}" for node in foreign)
    return (f"{config_file} sets {names}, which {cfg.TRAINER.NAME} does not read (its settings "
            f"are TRAINER.{own}): is it another method's config file?")


def _learner_nodes(trainer: type, cfg: Any) -> set[str]:
    """The TRAINER node the trainer's prompt learner is built from, where it names one."""
    try:
        node = trainer.learner_node(cfg, trainer.part_names(cfg).learner)
    except Exception:  # a trainer without parts
        return set()
    return {key for key, value in cfg.TRAINER.items() if value is node}
