"""A method's objective, step hooks and head: the parts a method adds to a prompt learner.

* **Terms.** An objective is a list of named terms over one :class:`ForwardOutput` (logits,
  image and text features, the frozen model's image features when a term asks for them,
  computed once per batch). :class:`Objective` sums ``weight * term`` over the terms with
  ``summed = True`` and logs every term (``loss_<name>``); a term with ``summed = False`` is
  computed and logged but only read by a step hook (ProGrad's general direction).
  ``TERM_REGISTRY`` maps a name to a factory ``(PartContext) -> list[Term]`` that reads the
  term's weight (and anything else) from its own node, ``ctx.node``::

      @TERM_REGISTRY.register(name="KgCoOp", node="KGCOOP")
      def kgcoop_terms(ctx: PartContext) -> list[Term]:
          return [KnowledgeGuidance(..., weight=ctx.node.W)]

  A term reads the labelled batch's output (``batch = "labelled"``) or, in a method that
  needs unlabelled images, the unlabelled batch's (``batch = "unlabelled"``; its label is
  None).

* **Step hooks.** A :class:`StepHook` replaces the plain ``backward(loss)`` of a training step
  by a rule over the gradients (ProGrad projects them); it may bring reference terms of its
  own. ``STEP_HOOK_REGISTRY`` maps a name to a factory ``(PartContext) -> StepHook``.
* **Heads.** A :class:`Head` turns the same forward output into the evaluation logits (DePT's
  linear probe fused with the similarity logits), brings its own terms and scales the
  similarity terms; its parameters train with the learner (learning rate ``LR * lr_mult``).
  ``HEAD_REGISTRY`` maps a name to a :class:`Head` subclass; its ``from_context(ctx)`` builds
  it, or returns ``None`` where the head does not apply (DePT evaluated on new classes).

A method's declaration (trainers/method.py) names its parts; ``TRAINER.PARTS`` adds more
from a config file, so combinations need no code. Every part is built from one
:class:`~trainers.parts.PartContext` (trainers/parts.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.metrics import compute_accuracy
from trainers.outputs import ForwardOutput, normalize
from trainers.parts import PartContext, PartRegistry

__all__ = ["PartContext", "Term", "CrossEntropy", "HandCraftedTerm", "Losses", "Objective",
           "StepHook", "Head", "TERM_REGISTRY", "STEP_HOOK_REGISTRY", "HEAD_REGISTRY",
           "hand_crafted_text_features", "build_objective", "build_step_hooks", "build_head",
           "run_backward"]

TERM_REGISTRY = PartRegistry("objective term")
STEP_HOOK_REGISTRY = PartRegistry("step hook")
HEAD_REGISTRY = PartRegistry("head")


# --------------------------------------------------------------------------- terms


class Term(nn.Module):
    """One named term of an objective: ``forward(out, label)`` returns the unweighted scalar.

    Subclasses set ``name`` (unique in an objective; logged as ``loss_<name>``),
    ``needs_frozen_image`` when they read ``out.frozen_image_features``, and ``batch`` to
    ``"unlabelled"`` when they read the unlabelled batch's output (label None).
    """

    name = ""
    needs_frozen_image = False
    batch = "labelled"

    def __init__(self, weight: float = 1.0, summed: bool = True) -> None:
        super().__init__()
        self.weight = weight
        self.summed = summed

    def forward(self, out: ForwardOutput, label: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weight={self.weight}, summed={self.summed}"


class CrossEntropy(Term):
    """Cross-entropy of the logits (every method's first term)."""

    name = "ce"

    def forward(self, out: ForwardOutput, label: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.logits.float(), label)


@torch.no_grad()
def hand_crafted_text_features(clip_model: nn.Module, classnames: Sequence[str],
                               templates: Sequence[str], max_batch: int = 4096) -> torch.Tensor:
    """The frozen CLIP's class text features ``[N, D]`` averaged over ``templates``, each
    unnormalised (underscores in names become spaces). The text tower runs on at most
    ``max_batch`` prompts at once."""
    if not templates:
        raise ValueError("hand-crafted text features need at least one template")
    names = [name.replace("_", " ") for name in classnames]
    prompts = [template.replace("{}", name) for template in templates for name in names]
    tokens = clip_model.tokenizer(prompts).to(clip_model.token_embedding.weight.device)
    features = torch.cat([clip_model.encode_text(chunk).float()
                          for chunk in tokens.split(max_batch)])
    return features.view(len(templates), len(names), -1).mean(dim=0)


class HandCraftedTerm(Term):
    """A term against the frozen CLIP's features of hand-crafted prompts: ``hand_crafted``
    ``[N, D]`` holds them normalised (a non-persistent buffer: checkpoints never carry it)."""

    def __init__(self, hand_crafted: torch.Tensor, weight: float = 1.0,
                 summed: bool = True) -> None:
        super().__init__(weight, summed)
        if hand_crafted.dim() != 2:
            raise ValueError(f"hand-crafted text features must be [N, D]; got "
                             f"{tuple(hand_crafted.shape)}")
        self.register_buffer("hand_crafted", normalize(hand_crafted.float()), persistent=False)

    def per_image(self, out: ForwardOutput) -> torch.Tensor:
        """The hand-crafted features (fp32) shaped like ``out.text_features``: ``[N, D]``, or
        ``[B, N, D]`` for a conditional learner."""
        features = self.hand_crafted
        return features.expand(out.text_features.shape) if out.conditional else features


@dataclass
class Losses:
    """One batch's objective: ``total`` (what backward runs on) and every term's value
    (weighted for the summed terms), plus the accuracy of the logits."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    accuracy: float | None

    def figures(self) -> dict[str, float]:
        acc = {} if self.accuracy is None else {"acc": self.accuracy}
        return {**acc, **{f"loss_{k}": v.item() for k, v in self.terms.items()}}


class Objective(nn.Module):
    """Named terms over one forward output, summed with their weights."""

    def __init__(self, terms: Sequence[Term]) -> None:
        super().__init__()
        names = [term.name for term in terms]
        if not names or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"an objective needs terms with distinct, non-empty names; "
                             f"got {names}")
        if not any(term.summed for term in terms):
            raise ValueError(f"an objective needs at least one summed term; got {names}")
        self.terms = nn.ModuleList(terms)

    @property
    def names(self) -> list[str]:
        return [term.name for term in self.terms]

    @property
    def needs_frozen_image(self) -> bool:
        return any(term.needs_frozen_image for term in self.terms)

    def __getitem__(self, name: str) -> Term:
        for term in self.terms:
            if term.name == name:
                return term
        raise KeyError(f"the objective has no term '{name}'; its terms: {self.names}")

    @property
    def batches(self) -> set[str]:
        """The batches the terms read: ``"labelled"`` and / or ``"unlabelled"``."""
        return {term.batch for term in self.terms}

    def forward(self, out: ForwardOutput | None, label: torch.Tensor | None,
                unlabelled: ForwardOutput | None = None) -> Losses:
        values: dict[str, torch.Tensor] = {}
        total = None
        for term in self.terms:
            source = unlabelled if term.batch == "unlabelled" else out
            if source is None:
                raise RuntimeError(f"the term '{term.name}' reads the {term.batch} batch, "
                                   "which this method's declaration does not ask for")
            value = term(source, label if source is out else None)
            if term.summed:
                value = value * term.weight
                total = value if total is None else total + value
            values[term.name] = value
        accuracy = None
        if out is not None and label is not None:
            hard = label if label.dim() == 1 else label.argmax(dim=-1)  # soft targets: top
            accuracy = compute_accuracy(out.logits, hard)[0].item()
        return Losses(total, values, accuracy)


# --------------------------------------------------------------------------- step hooks


class StepHook:
    """A rule over one training step's gradients.

    :meth:`backward` is called instead of ``backward(losses.total)``: it must call
    ``backward`` (the precision policy's backward, or the next hook's) once, and may read the
    terms in ``losses`` and change ``p.grad`` of ``params`` (what the optimizers update)
    afterwards. :meth:`terms` lists terms the hook needs computed (``summed = False``).
    """

    name = ""

    def terms(self) -> list[Term]:
        return []

    def backward(self, losses: Losses, params: Sequence[nn.Parameter],
                 backward: Callable[[torch.Tensor], None]) -> None:
        backward(losses.total)


def _hooked(hook: StepHook, losses: Losses, params: Sequence[nn.Parameter],
            inner: Callable[[torch.Tensor], None], total: torch.Tensor) -> None:
    hook.backward(losses, params, inner)


def run_backward(hooks: Sequence[StepHook], losses: Losses, params: Sequence[nn.Parameter],
                 backward: Callable[[torch.Tensor], None]) -> None:
    """``backward(losses.total)`` through ``hooks`` (the first hook outermost)."""
    step = backward
    for hook in reversed(hooks):
        step = functools.partial(_hooked, hook, losses, params, step)
    step(losses.total)


# --------------------------------------------------------------------------- heads


class Head(nn.Module):
    """A head on the prompted model's output: ``forward(out)`` gives the evaluation logits.

    Its parameters live in child modules, named in ``module_names`` (they are saved under
    those names next to ``prompt_learner.*``). ``lr_mult`` scales OPTIM.LR for them;
    ``similarity_weight`` scales the cross-entropy of the similarity logits; :meth:`terms`
    adds terms of its own.
    """

    module_names: tuple[str, ...] = ()
    lr_mult = 1.0
    similarity_weight = 1.0

    @classmethod
    def from_context(cls, ctx: PartContext) -> Head | None:
        """The head for this run (``None`` where it does not apply)."""
        raise NotImplementedError

    def terms(self) -> list[Term]:
        return []

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor],
                         dataset: Any) -> dict[str, torch.Tensor]:
        """A checkpoint's head tensors for the classes of ``dataset`` (by default as they
        are); called when a checkpoint is loaded."""
        return state_dict

    def forward(self, out: ForwardOutput) -> torch.Tensor:
        raise NotImplementedError


# --------------------------------------------------------------------------- building


def build_step_hooks(names: Sequence[str], ctx: PartContext) -> list[StepHook]:
    return [STEP_HOOK_REGISTRY.build(name, ctx) for name in names]


def build_head(name: str, ctx: PartContext) -> Head | None:
    return HEAD_REGISTRY.build(name, ctx) if name else None


def build_objective(term_names: Sequence[str], ctx: PartContext,
                    hooks: Sequence[StepHook] = (), head: Head | None = None) -> Objective:
    """The terms named (each factory's, in order), the hooks' reference terms, and the head's
    terms, with the cross-entropy scaled by the head's ``similarity_weight``."""
    terms = [term for name in term_names for term in TERM_REGISTRY.build(name, ctx)]
    terms += [term for hook in hooks for term in hook.terms()]
    if head is not None:
        for term in terms:
            if isinstance(term, CrossEntropy):
                term.weight = term.weight * head.similarity_weight
        terms += head.terms()
    return Objective(terms)


TERM_REGISTRY.register(lambda ctx: [CrossEntropy()], name="CE")
