"""Checks train.py makes before it prints the config: mistakes in the input stop the run with
their one-line error before the long dump of arguments and config, and a config file written
for another method is pointed out."""

from __future__ import annotations

from typing import Any

import yaml

from engine.config import aliases
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
    """A one-line warning when ``config_file`` sets a TRAINER node of a method or part that
    the run does not read (``--trainer CoOp --config-file configs/trainers/MaPLe/...``: the
    MaPLe settings would be ignored), whether or not the file also sets the run's own node;
    None otherwise. A run reads its method's node, its learner's, those of its terms, hooks
    and head (TRAINER.PARTS included); an official key that is an alias of a key it reads
    counts as read."""
    if not config_file or not cfg.TRAINER.NAME:
        return None
    trainer = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    own = getattr(trainer, "config_node", "")
    if not own:  # a trainer without a node of its own (zero-shot CLIP) reads others' settings
        return None
    read = _read_nodes(trainer, cfg)
    if read is None:  # an unknown part name: its own error comes when the trainer is built
        return None
    known = _known_nodes()
    foreign = sorted(node for node, sets in _written_nodes(config_file).items()
                     if sets & known and not sets & read)
    if not foreign:
        return None
    names = ", ".join(f"TRAINER.{node}" for node in foreign)
    reads = ", ".join(f"TRAINER.{node}" for node in sorted(read & known))
    return (f"{config_file} sets {names}, which {cfg.TRAINER.NAME} does not read (it reads "
            f"{reads}): those settings are ignored; is it another method's config file?")


def _written_nodes(config_file: str) -> dict[str, set[str]]:
    """Each TRAINER node ``config_file`` sets -> the nodes its keys set: its own, or where
    an official key is an alias, the node of the key it sets (``TRAINER.COOP.W`` sets
    ``TRAINER.KGCOOP.W``)."""
    with open(config_file, encoding="utf-8") as f:
        text = yaml.safe_load(f)
    section = text.get("TRAINER") if isinstance(text, dict) else None
    if not isinstance(section, dict):
        return {}
    table = aliases()
    return {node: {table.get(f"TRAINER.{node}.{key}", f"TRAINER.{node}").split(".")[1]
                   for key in keys} or {node}
            for node, keys in section.items() if isinstance(keys, dict)}


def _known_nodes() -> set[str]:
    """Every TRAINER node a method or a part is registered with."""
    from trainers.parts import part_registries

    nodes = {getattr(TRAINER_REGISTRY.get(name), "config_node", "") for name in TRAINER_REGISTRY}
    for registry in part_registries().values():
        nodes |= {registry.node_of(name) for name in registry}
    return {node.split(".")[0] for node in nodes if node}


def _read_nodes(trainer: type, cfg: Any) -> set[str] | None:
    """The TRAINER nodes a run of ``trainer`` reads (top level): its method's, its learner's
    (and those its learner's settings read), its terms', hooks' and head's; None where a
    part it names is not registered."""
    from trainers.method import learner_node_name, method_parts
    from trainers.parts import part_registries

    nodes = {trainer.config_node}
    method = getattr(trainer, "declaration", None)
    if method is None:
        return nodes
    registries = part_registries()
    try:
        parts = method_parts(method, cfg)
        nodes.add(learner_node_name(method, cfg, parts.learner)[0])
        for kind, names in (("term", parts.terms), ("step hook", parts.step_hooks),
                            ("epoch hook", parts.epoch_hooks),
                            ("head", [parts.head] if parts.head else [])):
            nodes |= {registries[kind].node_of(name) for name in names}
    except (KeyError, ValueError):
        return None
    nodes |= _learner_reads(method, cfg, parts.learner)
    return {node.split(".")[0] for node in nodes if node}


class _RecordedTrainer:
    """A config whose TRAINER node records the keys read through it."""

    def __init__(self, cfg: Any, reads: dict[str, Any]) -> None:
        self._cfg, self._reads = cfg, reads

    def __getattr__(self, key: str) -> Any:
        from trainers.method import RecordingNode

        value = getattr(self._cfg, key)
        return RecordingNode(value, "TRAINER", self._reads) if key == "TRAINER" else value


def _learner_reads(method: Any, cfg: Any, name: str) -> set[str]:
    """The TRAINER nodes the settings of the learner ``name`` read (TCP's read TRAINER.TCP
    beside its node TRAINER.COOP)."""
    from trainers.method import learner_settings
    from trainers.parts import PartContext

    reads: dict[str, Any] = {}
    try:
        learner_settings(method, PartContext(_RecordedTrainer(cfg, reads), None, []), name)
    except Exception:  # a bad value: the trainer's own check reports it when it is built
        return set()
    return {key.split(".")[1] for key in reads}
