"""Prompt learners as a registry of their own, independent of the trainers that use them.

A prompt learner is an ``nn.Module`` built as ``cls(clip_model, classnames, **settings)``
whose ``forward()`` returns a :class:`~trainers.base.PromptSchedule` (a conditional learner,
such as CoCoOp's, takes ``forward(image_features)`` and names the prompted model that drives
it in its class attribute ``prompted_model``). Register one next to its class::

    @register_learner("CoOp", node="COOP", settings=coop_settings)
    class CoOpPromptLearner(nn.Module): ...

``node`` is the learner's own config node (``cfg.TRAINER.<node>``) and ``settings`` turns a
config node into the constructor's keyword arguments, so that no run of positional integers
can be swapped silently. Build one with :func:`build_prompt_learner`; any trainer takes
another learner from ``TRAINER.PARTS.PROMPT_LEARNER`` (built from that learner's own node).

Settings functions read the learner's own key names and, where another node names the same
setting differently (PromptSRC's ``N_CTX_TEXT`` for MaPLe's ``N_CTX``), that name too:
:func:`first_key` reads the first of several keys a node has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from engine.registry import Registry

__all__ = ["PROMPT_LEARNER_REGISTRY", "LearnerEntry", "register_learner",
           "build_prompt_learner", "learner_entry", "first_key"]

PROMPT_LEARNER_REGISTRY = Registry("prompt learner")

Settings = Callable[[Any], dict[str, Any]]
_MISSING = object()


@dataclass(frozen=True)
class LearnerEntry:
    """A registered learner: its class, its config node and its settings function."""

    name: str
    cls: type[nn.Module]
    node: str
    settings: Settings


def register_learner(name: str, node: str, settings: Settings) -> Callable[[type], type]:
    """Class decorator: register a prompt learner under ``name`` (see the module docstring)."""

    def add(cls: type) -> type:
        PROMPT_LEARNER_REGISTRY.register(LearnerEntry(name, cls, node, settings), name=name)
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
    kwargs = dict(entry.settings(node)) if node is not None else {}
    kwargs.update(settings)
    return entry.cls(clip_model, list(classnames), **kwargs)


def first_key(node: Any, *keys: str, default: Any = _MISSING) -> Any:
    """The value of the first of ``keys`` that ``node`` has; ``default`` when it has none."""
    for key in keys:
        if key in node:
            return node[key]
    if default is _MISSING:
        raise KeyError(f"the config node has none of the keys {', '.join(keys)}")
    return default
