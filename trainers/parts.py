"""The one contract of every part of a method: learners, terms, step hooks, epoch hooks, heads.

Every part is registered by name in the registry of its kind, with the config node it reads
(``TRAINER.<node>``; "" for none), and built from one :class:`PartContext`: the frozen
backbone (and a frozen teacher where the method asks for one), the class names, the dataset's
name (its templates come from :meth:`PartContext.template`), the unlabelled loader where the
method asks for one, the run's config, and its own node as ``ctx.node``. A part reads its own
keys from ``ctx.node`` only; an official key of another node reaches it as an alias applied
when configs merge (``engine.config.register_alias``).

``python -m trainers --list`` prints every registered part with its node and keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from engine.registry import Registry

__all__ = ["PartContext", "PartRegistry", "EpochHook", "EPOCH_HOOK_REGISTRY", "part_registries"]


@dataclass(frozen=True)
class PartContext:
    """What every part is built from.

    ``cfg``: the run's config; ``clip_model``: the frozen backbone (fp32, on the training
    device, before the precision policy casts it); ``classnames`` in label order; ``tasks``:
    a multitask label space's tasks (each with ``name``, ``start``, ``end``), else None;
    ``node``: the part's own config node (None for a part without one); ``teacher``: a second
    frozen backbone (methods whose declaration needs ``"teacher"``), else None;
    ``unlabelled``: the loader of unlabelled training images (methods that need
    ``"unlabelled"``), else None.
    """

    cfg: Any
    clip_model: nn.Module
    classnames: list[str] = field(default_factory=list)
    tasks: list | None = None
    node: Any = None
    teacher: nn.Module | None = None
    unlabelled: Any = None

    @property
    def backbone(self) -> nn.Module:
        return self.clip_model

    @property
    def dataset_name(self) -> str:
        return self.cfg.DATASET.NAME

    def template(self, table: Mapping[str, str] | None = None) -> str:
        """The dataset's hand-crafted template from ``table`` (CoOp's by default)."""
        from trainers.templates import dataset_template

        return dataset_template(self.dataset_name, *([] if table is None else [table]))

    def for_node(self, node_name: str) -> PartContext:
        """This context with ``node`` set to ``TRAINER.<node_name>`` ("": none)."""
        return dataclasses.replace(self, node=self.cfg.TRAINER[node_name] if node_name else None)


class PartRegistry(Registry):
    """A registry of one kind of part: name -> factory, plus the config node each reads.

    ``register(obj, name=..., node=...)`` keeps :class:`engine.registry.Registry`'s decorator
    form; :meth:`build` calls the factory with the context of the part's own node.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.nodes: dict[str, str] = {}
        self.keys: dict[str, tuple[str, ...]] = {}

    def register(self, obj: Any = None, name: str | None = None, node: str = "",
                 keys: tuple[str, ...] = ()) -> Any:
        """``keys``: the keys of ``node`` the part reads, where it shares the node with
        another part (PromptSRC's terms and its learner's settings); default: all."""

        def add(item: Any) -> Any:
            key = name or item.__name__
            Registry.register(self, item, name=key)
            self.nodes[key] = node or self.nodes.get(key, "")
            self.keys[key] = tuple(keys)
            return item

        return add if obj is None else add(obj)

    def node_of(self, name: str) -> str:
        self.get(name)
        return self.nodes.get(name, "")

    def build(self, name: str, ctx: PartContext) -> Any:
        factory = self.get(name)
        ctx = ctx.for_node(self.nodes.get(name, ""))
        if isinstance(factory, type) and hasattr(factory, "from_context"):
            return factory.from_context(ctx)
        return factory(ctx)


# --------------------------------------------------------------------------- epoch hooks


class EpochHook:
    """A rule run after every training epoch on what trains (PromptSRC's aggregation).

    :meth:`after_epoch` gets the 1-based epoch, the number of epochs and the trained module;
    its state goes into every checkpoint (:meth:`state_dict`, plain data and tensors) and is
    restored on resume (:meth:`load_state_dict`), so a resumed run ends where an
    uninterrupted one does.
    """

    name = ""

    def after_epoch(self, epoch: int, max_epoch: int, trained: nn.Module) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore what :meth:`state_dict` returned."""


EPOCH_HOOK_REGISTRY = PartRegistry("epoch hook")


def part_registries() -> dict[str, PartRegistry]:
    """Every kind of part and its registry (the learners' included)."""
    from trainers.learners import PROMPT_LEARNER_REGISTRY
    from trainers.objective import HEAD_REGISTRY, STEP_HOOK_REGISTRY, TERM_REGISTRY

    return {"learner": PROMPT_LEARNER_REGISTRY, "term": TERM_REGISTRY,
            "step hook": STEP_HOOK_REGISTRY, "epoch hook": EPOCH_HOOK_REGISTRY,
            "head": HEAD_REGISTRY}


def part_keys(cfg: Any, kind: str, name: str) -> dict[str, Any]:
    """The keys the part reads with their defaults: a learner's, those its settings function
    reads from its node; another part's, those registered with it, or its whole node."""
    from engine.checkpoint_checks import flat_config
    from trainers.learners import learner_entry
    from trainers.method import RecordingNode

    registry = part_registries()[kind]
    node = registry.node_of(name)
    if not node:
        return {}
    if kind == "learner":
        reads: dict[str, Any] = {}
        learner_entry(name).resolve(RecordingNode(cfg.TRAINER[node], "", reads),
                                    PartContext(cfg, None, []))
        return {k.lstrip("."): v for k, v in reads.items()}
    every = {k.lstrip("."): v for k, v in flat_config(cfg.TRAINER[node], "").items()}
    wanted = registry.keys.get(name) or tuple(every)
    return {k: every[k] for k in wanted}


def listing(cfg: Any) -> Iterable[str]:
    """One line per registered part: kind, name, node and its keys with their defaults."""
    for kind, registry in part_registries().items():
        for name in registry:
            node = registry.node_of(name)
            keys = " ".join(f"{k}={v!r}" for k, v in part_keys(cfg, kind, name).items())
            where = f"TRAINER.{node}" if node else "(no node)"
            yield f"{kind:<10} {name:<24} {where:<22} {keys}"


def detached(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in tensors.items()}
