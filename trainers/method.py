"""A method is data: a registered, frozen :class:`Method` declaration and one assembly.

A declaration names the method's parts (trainers/parts.py: a prompt learner, objective terms,
step hooks, epoch hooks, a head), its official trainer name, the config node holding PREC,
the checkpoint folder, the official key map of the tensors it saves beyond its learner's,
and which runs it needs (labelled images, unlabelled images, a frozen teacher)::

    KgCoOp = register_method(Method("KgCoOp", node="COOP", learner="CoOp",
                                    terms=("CE", "KgCoOp"), learner_init=kgcoop_words))

:func:`register_method` registers it and returns its trainer class (a :class:`PromptTrainer`
subclass named after the method, with the declaration as its ``declaration``, in
``TRAINER_REGISTRY``; ``trainer=`` names another base
where a method truly changes the loop, as MVLPT's multitask data does). :func:`assemble`
builds any declaration: the learner from its node, every part from one context, the
prompted model, what trains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from engine.errors import ConfigError
from engine.registry import Registry
from trainers.learners import AttributeMapping, NodeView, learner_entry
from trainers.parts import EPOCH_HOOK_REGISTRY, PartContext

__all__ = ["Method", "METHOD_REGISTRY", "register_method", "assemble", "method_parts",
           "learner_settings", "build_learner", "trainer_node", "NEEDS"]

logger = logging.getLogger(__name__)

METHOD_REGISTRY = Registry("method")
NEEDS = ("labelled", "unlabelled", "teacher")
StateMap = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Method:
    """One method, declared.

    ``name``: the official trainer name; ``node``: its ``TRAINER.<node>`` (holds PREC);
    ``model_name``: the registered model, which names the checkpoint folder; ``learner``:
    the registered prompt learner (``select_learner(cfg)`` may choose another from the
    config); ``learner_nodes``: learner name -> the node it is built from when not its own
    (``"PROMPTSRC"``, or ``("PROMPTSRC", {"N_CTX": "N_CTX_TEXT"})`` to read the method's key
    names); ``learner_init(ctx, settings)``: the method's own resolution of the learner's
    settings (KgCoOp's ``CTX_INIT: True``); ``terms``, ``step_hooks``, ``epoch_hooks``,
    ``head``: registered part names; ``official_keys``: applied to an official checkpoint
    before the learner's own key map (tensors the official method saves beyond its
    learner's); ``needs``: of "labelled", "unlabelled", "teacher"; ``teacher(cfg)`` builds
    the frozen teacher (default: the backbone ``TRAINER.TEACHER.BACKBONE``); ``check(cfg)``:
    the method's own config errors.
    """

    name: str
    node: str
    learner: str
    model_name: str = "prompt_learner"
    terms: tuple[str, ...] = ("CE",)
    step_hooks: tuple[str, ...] = ()
    epoch_hooks: tuple[str, ...] = ()
    head: str = ""
    learner_nodes: Mapping[str, Any] = field(default_factory=dict)
    learner_init: Callable[[PartContext, dict], dict] | None = None
    select_learner: Callable[[Any], str] | None = None
    official_keys: StateMap | None = None
    needs: tuple[str, ...] = ("labelled",)
    teacher: Callable[[Any], nn.Module] | None = None
    check: Callable[[Any], None] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.needs) - set(NEEDS)
        if unknown or not self.needs or not {"labelled", "unlabelled"} & set(self.needs):
            raise ValueError(f"method {self.name}: needs {self.needs}; use labelled and / or "
                             f"unlabelled, optionally teacher")


def register_method(method: Method, trainer: type | None = None,
                    module: str | None = None) -> type:
    """Register ``method`` and return its trainer class, registered in TRAINER_REGISTRY under
    ``method.name``: ``trainer`` (default :class:`~trainers.base.PromptTrainer`) with the
    declaration as its ``declaration``."""
    from engine import TRAINER_REGISTRY
    from trainers.base import PromptTrainer

    METHOD_REGISTRY.register(method, name=method.name)
    cls = type(method.name, (trainer or PromptTrainer,), {
        "declaration": method, "model_name": method.model_name, "config_node": method.node,
        "__doc__": method.doc or f"The {method.name} method.",
        "__module__": module or (trainer or PromptTrainer).__module__})
    return TRAINER_REGISTRY.register(cls)


# --------------------------------------------------------------------------- the parts


def trainer_node(cfg: Any, name: str) -> Any:
    """``cfg.TRAINER.<name>`` (``name`` may be dotted: ``MVLPT.COCOOP``)."""
    node = cfg.TRAINER
    for part in name.split("."):
        node = node[part]
    return node


@dataclass(frozen=True)
class PartNames:
    """The parts a run uses: its learner and the names in each part registry."""

    learner: str
    terms: tuple[str, ...]
    step_hooks: tuple[str, ...]
    epoch_hooks: tuple[str, ...]
    head: str


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def method_parts(method: Method, cfg: Any) -> PartNames:
    """The declaration's parts plus those ``TRAINER.PARTS`` adds."""
    parts = cfg.TRAINER.PARTS
    if method.head and parts.HEAD and parts.HEAD != method.head:
        raise ValueError(f"{method.name} runs the head '{method.head}'; TRAINER.PARTS.HEAD "
                         f"names '{parts.HEAD}': leave it empty")
    learner = parts.PROMPT_LEARNER or (
        method.select_learner(cfg) if method.select_learner else method.learner)
    return PartNames(learner, _unique(method.terms + tuple(parts.TERMS)),
                     _unique(method.step_hooks + tuple(parts.STEP_HOOKS)),
                     _unique(method.epoch_hooks + tuple(parts.EPOCH_HOOKS)),
                     method.head or parts.HEAD)


class RecordingNode(AttributeMapping):
    """A config node that records every key read through it (``{"TRAINER.COOP.N_CTX": 16}``
    in ``reads``): the keys a learner's settings function reads are what shaped its
    tensors, and checkpoints record them under their config names."""

    def __init__(self, node: Mapping, prefix: str, reads: dict[str, Any]) -> None:
        self._node, self._prefix, self._reads = node, prefix, reads

    def __getitem__(self, key: str) -> Any:
        value = self._node[key]
        name = f"{self._prefix}.{key}"
        if isinstance(value, Mapping):
            return RecordingNode(value, name, self._reads)
        self._reads[name] = list(value) if isinstance(value, (tuple, list)) else value
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._node

    def __iter__(self):
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)


def learner_node_name(method: Method, cfg: Any, name: str) -> tuple[str, Mapping[str, str]]:
    """(the node the learner ``name`` is built from, its key renames): the method's choice
    (a learner named by TRAINER.PARTS.PROMPT_LEARNER: always its own node)."""
    choice = None if cfg.TRAINER.PARTS.PROMPT_LEARNER else method.learner_nodes.get(name)
    return ((learner_entry(name).node, {}) if choice is None else
            (choice, {}) if isinstance(choice, str) else choice)


def learner_node(method: Method, cfg: Any, name: str,
                 reads: dict[str, Any] | None = None) -> Any:
    """The node the learner ``name`` is built from (:func:`learner_node_name`); with
    ``reads``, recording the keys read."""
    node_name, renames = learner_node_name(method, cfg, name)
    node = trainer_node(cfg, node_name)
    if reads is not None:
        node = RecordingNode(node, f"TRAINER.{node_name}", reads)
    return NodeView(node, renames) if renames else node


def learner_settings(method: Method, ctx: PartContext,
                     name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the resolved keyword arguments of the learner ``name``, the config keys its settings
    read with their values): what shapes its tensors."""
    reads: dict[str, Any] = {}
    own = PartContext(ctx.cfg, ctx.clip_model, ctx.classnames, ctx.tasks,
                      learner_node(method, ctx.cfg, name, reads), ctx.teacher, ctx.unlabelled)
    settings = learner_entry(name).resolve(own.node, own)
    if method.learner_init:
        settings = method.learner_init(own, settings)
    return settings, reads


def build_learner(method: Method, ctx: PartContext,
                  name: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(the learner, its resolved settings) for ``ctx``'s classes."""
    name = name or method_parts(method, ctx.cfg).learner
    settings = learner_settings(method, ctx, name)[0]
    return learner_entry(name).cls(ctx.clip_model, list(ctx.classnames), **settings), settings


def check_parts(method: Method, cfg: Any) -> None:
    """Every part a run names is registered (an unknown name lists the registered ones), and
    the method's own checks pass."""
    from trainers.parts import part_registries

    names = method_parts(method, cfg)
    registries = part_registries()
    for kind, listed in (("learner", [names.learner]), ("term", names.terms),
                         ("step hook", names.step_hooks), ("epoch hook", names.epoch_hooks),
                         ("head", [names.head] if names.head else [])):
        for name in listed:
            registries[kind].get(name)
    node_name, renames = learner_node_name(method, cfg, names.learner)
    node, n_ctx = trainer_node(cfg, node_name), renames.get("N_CTX", "N_CTX")
    if n_ctx in node and node[n_ctx] < 1 and not node.get("CTX_INIT"):
        raise ConfigError(f"TRAINER.{node_name}.{n_ctx} is {node[n_ctx]} and CTX_INIT is empty: "
                          f"the prompt would have no context to learn; set {n_ctx} >= 1 or "
                          "CTX_INIT words")
    if method.check:
        method.check(cfg)


def split_trained_parts(state_dict: dict[str, torch.Tensor], trained: nn.Module,
                        learner_map: StateMap) -> dict[str, torch.Tensor]:
    """The state dict of ``trained`` (a learner and a head) from a checkpoint of a method
    with a head (ours, or an official whole-model file): the learner's keys through
    ``learner_map`` under ``prompt_learner.``, the head's as they are (dropped when the head
    does not apply to these classes)."""
    head_keys = {k for k in state_dict if k.split(".", 1)[0] in trained.module_names}
    own = learner_map({k: v for k, v in state_dict.items() if k not in head_keys})
    mapped = {f"prompt_learner.{k}": v for k, v in own.items()}
    mapped.update({k: state_dict[k] for k in head_keys
                   if k.split(".", 1)[0] in trained.head_names})
    return mapped


def official_state_map(method: Method, learner: str) -> StateMap:
    """An official checkpoint's state dict -> the learner's: the method's map, then the
    learner's own."""
    own = learner_entry(learner).official_keys

    def mapped(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return own(method.official_keys(state_dict) if method.official_keys else state_dict)

    return mapped


def assemble(method: Method, cfg: Any, clip_model: nn.Module, classnames: Sequence[str],
             learner: nn.Module | None = None, param_dtype: torch.dtype | None = None,
             tasks: Sequence | None = None, teacher: nn.Module | None = None,
             unlabelled: Any = None):
    """Build ``method``: its learner (unless given), every part from one context, the
    prompted model and what trains. The parts read the frozen ``clip_model`` in fp32; it is
    cast to ``param_dtype`` after; its text tower runs in TRAINER.ACT_CKPT activation
    checkpointing segments (a run option of every method). Returns a
    :class:`~trainers.base.PromptMethod`."""
    from trainers.base import PromptMethod, TrainedParts, build_prompted_model
    from trainers.objective import HEAD_REGISTRY, build_head, build_objective, build_step_hooks

    names = method_parts(method, cfg)
    clip_model.transformer.checkpoint_segments = cfg.TRAINER.ACT_CKPT  # a run option
    ctx = PartContext(cfg, clip_model, list(classnames), list(tasks) if tasks else None,
                      teacher=teacher, unlabelled=unlabelled)
    settings, reads = learner_settings(method, ctx, names.learner)
    if learner is None:
        learner = learner_entry(names.learner).cls(clip_model, list(classnames), **settings)
    head = build_head(names.head, ctx)
    hooks = build_step_hooks(names.step_hooks, ctx)
    objective = build_objective(names.terms, ctx, hooks, head)
    epoch_hooks = tuple(EPOCH_HOOK_REGISTRY.build(name, ctx) for name in names.epoch_hooks)
    if param_dtype is not None:
        clip_model.to(dtype=param_dtype)
    model = build_prompted_model(clip_model, learner, head=head)
    trained = (TrainedParts(learner, head, HEAD_REGISTRY.get(names.head).module_names)
               if names.head else learner)
    return PromptMethod(model, trained, objective, tuple(hooks), epoch_hooks, names.learner,
                        settings, reads)
