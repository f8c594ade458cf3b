"""Prompt learners as a registry of their own, independent of the methods that use them.

A prompt learner is an ``nn.Module`` built as ``cls(clip_model, classnames, **settings)``
whose ``forward()`` returns a :class:`~trainers.base.PromptSchedule` (a conditional learner,
such as CoCoOp's, takes ``forward(image_features)`` and names the prompted model that drives
it in its class attribute ``prompted_model``). Register one next to its class::

    @register_learner("CoOp", node="COOP", settings=coop_settings, official_keys=...)
    class CoOpPromptLearner(nn.Module): ...

``node`` is the learner's own config node (``cfg.TRAINER.<node>``); ``settings`` turns that
node (and, when it takes a second argument, the :class:`~trainers.parts.PartContext`) into the
constructor's keyword arguments, reading the learner's own keys only. Those resolved
keyword arguments are what shaped the learned tensors: checkpoints record them, and a run that
loads one must resolve the same. ``official_keys`` maps an official checkpoint's state dict
(the official whole model, or its prompt learner) onto the learner's keys and drops what is
not the learner's (the frozen CLIP, class-name token buffers): the learner that defines the
tensors owns their official names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainers.parts import PartContext, PartRegistry

__all__ = ["PROMPT_LEARNER_REGISTRY", "LearnerEntry", "register_learner",
           "build_prompt_learner", "learner_entry", "first_key", "official_learner_keys",
           "resolve_settings", "NodeView"]

PROMPT_LEARNER_REGISTRY = PartRegistry("prompt learner")

Settings = Callable[..., dict[str, Any]]
StateMap = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
_MISSING = object()

# the frozen modules of the official CLIP-based models (Dassl's CustomCLIP), which official
# whole-model checkpoints hold next to the prompts
OFFICIAL_FROZEN_MODULES = ("image_encoder", "text_encoder", "token_embedding", "logit_scale",
                           "positional_embedding", "ln_final", "text_projection")


def official_learner_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The default official key map: the prompt learner's tensors without ``prompt_learner.``;
    dropped: the class-name token buffers (rebuilt from the current class names) and the
    official model's frozen CLIP modules."""
    learned = {}
    for key, value in state_dict.items():
        key = key.removeprefix("prompt_learner.")
        if key.endswith(("token_prefix", "token_suffix")):
            continue
        if key.split(".", 1)[0] in OFFICIAL_FROZEN_MODULES:
            continue
        learned[key] = value
    return learned


@dataclass(frozen=True)
class LearnerEntry:
    """A registered learner: its class, its config node, its settings function and its
    official key map."""

    name: str
    cls: type[nn.Module]
    node: str
    settings: Settings
    official_keys: StateMap = official_learner_keys

    def resolve(self, node: Any, ctx: PartContext | None = None) -> dict[str, Any]:
        """The constructor's keyword arguments from ``node`` (and ``ctx``)."""
        takes_context = len(inspect.signature(self.settings).parameters) > 1
        return dict(self.settings(node, ctx) if takes_context else self.settings(node))


def register_learner(name: str, node: str, settings: Settings,
                     official_keys: StateMap = official_learner_keys) -> Callable[[type], type]:
    """Class decorator: register a prompt learner under ``name`` (see the module docstring)."""

    def add(cls: type) -> type:
        PROMPT_LEARNER_REGISTRY.register(LearnerEntry(name, cls, node, settings, official_keys),
                                         name=name, node=node)
        return cls

    return add


def learner_entry(name: str) -> LearnerEntry:
    """The registered learner ``name`` (a ``KeyError`` listing the registered ones if none)."""
    return PROMPT_LEARNER_REGISTRY.get(name)


def build_prompt_learner(name: str, clip_model: nn.Module, classnames: Sequence[str],
                         node: Any = None, **settings: Any) -> nn.Module:
    """The learner ``name`` for ``classnames``: its settings from ``node`` (a config node,
    through the learner's settings function) updated by ``settings`` (keywords)."""
    entry = learner_entry(name)
    kwargs = entry.resolve(node) if node is not None else {}
    kwargs.update(settings)
    return entry.cls(clip_model, list(classnames), **kwargs)


def resolve_settings(name: str, ctx: PartContext) -> dict[str, Any]:
    """The keyword arguments of the learner ``name`` from ``ctx.node`` and ``ctx``."""
    return learner_entry(name).resolve(ctx.node, ctx)


class AttributeMapping(Mapping):
    """A read-only mapping whose keys also read as attributes (as a config node's do)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(key) from exc


class NodeView(AttributeMapping):
    """A config node read under other key names: ``NodeView(node, {"N_CTX": "N_CTX_TEXT"})``
    gives ``node.N_CTX_TEXT`` as ``N_CTX`` (how a method builds a learner from its own node,
    e.g. PromptSRC's MaPLe prompts from TRAINER.PROMPTSRC); only the renamed keys are seen
    under their new names, the others as they are."""

    def __init__(self, node: Mapping, renames: Mapping[str, str]) -> None:
        self._node, self._renames = node, dict(renames)
        self._hidden = set(self._renames.values()) - set(self._renames)

    def __getitem__(self, key: str) -> Any:
        if key in self._hidden:
            raise KeyError(key)
        return self._node[self._renames.get(key, key)]

    def __contains__(self, key: object) -> bool:
        return key not in self._hidden and self._renames.get(key, key) in self._node

    def __iter__(self):
        seen = [k for k in self._renames if self._renames[k] in self._node]
        return iter(seen + [k for k in self._node if k not in self._hidden and k not in seen])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def first_key(node: Any, *keys: str, default: Any = _MISSING) -> Any:
    """The value of the first of ``keys`` that ``node`` has; ``default`` when it has none."""
    for key in keys:
        if key in node:
            return node[key]
    if default is _MISSING:
        raise KeyError(f"the config node has none of the keys {', '.join(keys)}")
    return default
