"""ProGrad: Prompt-aligned Gradient (Zhu et al., ICCV 2023, https://arxiv.org/abs/2205.14865).

CoOp's prompts trained with cross-entropy through a gradient rule (the ``"ProGrad"`` step hook,
usable with any learner): the *general direction* ``g`` is the gradient of
``T² · CE(softmax(z₀ / T), z / T)`` (the zero-shot CLIP's logits ``z₀`` on ProGrad's hand-crafted
prompts as soft targets for the prompted logits ``z``); where the cross-entropy's gradient
``d`` of a parameter conflicts with it (``d · g < 0``), ``d`` loses ``λ`` times its component
along ``g``: ``d - λ (d · ĝ) ĝ``. Only the cross-entropy is minimised; the reference term is
logged (``loss_prograd_kl``).

Official config keys: TRAINER.COOP (as CoOp's) for the learner; the hook's own node is
``TRAINER.PROGRAD`` (NAME, T, LAMBDA), which the official ``LOSS.NAME``, ``LOSS.T`` and
``LOSS.LAMBDA`` set (aliases); ``LOSS.GM`` and ``LOSS.ALPHA`` are read by nothing (the official
code neither) and only their defaults are accepted. NAME must be "prograd". ``CTX_INIT: True``
starts the N_CTX context vectors at zero with the words of ProGrad's template of the dataset in
the last ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine import distributed
from engine.config import CN, register_alias, register_config, register_unread
from engine.errors import ConfigError
from trainers.method import Method, register_method
from trainers.objective import (
    STEP_HOOK_REGISTRY,
    HandCraftedTerm,
    Losses,
    PartContext,
    StepHook,
    Term,
    hand_crafted_text_features,
)
from trainers.outputs import ForwardOutput
from trainers.templates import PROGRAD_TEMPLATES, dataset_template

logger = logging.getLogger(__name__)


@register_config
def add_prograd_config(cfg: CN) -> None:
    cfg.LOSS = CN()
    cfg.LOSS.GM = False  # in the official ProGrad config; unused there too
    cfg.LOSS.ALPHA = 0.0  # in the official ProGrad config; unused there too
    cfg.TRAINER.PROGRAD = CN()
    cfg.TRAINER.PROGRAD.NAME = ""  # the ProGrad trainer: "prograd" (the official LOSS.NAME)
    cfg.TRAINER.PROGRAD.T = 1.0  # temperature of the distillation towards the zero-shot logits
    cfg.TRAINER.PROGRAD.LAMBDA = 1.0  # how much of the conflicting component is removed


for _key in ("NAME", "T", "LAMBDA"):
    register_alias(f"LOSS.{_key}", f"TRAINER.PROGRAD.{_key}")
register_unread("LOSS.GM", "the official ProGrad code does not read it either")
register_unread("LOSS.ALPHA", "the official ProGrad code does not read it either")


class ZeroShotDistillation(HandCraftedTerm):
    """``prograd_kl``: ``T² · CE(softmax(z₀ / T), z / T)`` averaged over the batch, ``z₀`` the
    frozen CLIP's logits on the hand-crafted prompts."""

    name = "prograd_kl"
    needs_frozen_image = True

    def __init__(self, hand_crafted: torch.Tensor, temperature: float = 1.0) -> None:
        super().__init__(hand_crafted, summed=False)
        self.temperature = temperature

    def forward(self, out: ForwardOutput, label: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        teacher = F.softmax(out.frozen_logits(self.hand_crafted).float() / t, dim=-1)
        student = F.log_softmax(out.logits.float() / t, dim=-1)
        return -(teacher * student).sum(dim=1).mean() * t * t


def project_conflicting(grad: torch.Tensor | None, general: torch.Tensor | None,
                        lambda_: float) -> torch.Tensor | None:
    """``grad`` without ``lambda_`` times its component along ``general`` when the two
    conflict (negative dot product); unchanged otherwise, or when either is missing or zero."""
    if grad is None or general is None:
        return grad
    norm = torch.linalg.norm(general)
    if norm == 0:
        return grad
    unit = general / norm
    along = torch.dot(grad.flatten(), unit.flatten())
    if along < 0:
        return grad - lambda_ * along * unit
    return grad


def _averaged(params: Sequence[nn.Parameter],
              grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
    """``grads`` (one per parameter) averaged over the processes under torchrun."""
    saved = [p.grad for p in params]
    for param, grad in zip(params, grads, strict=True):
        param.grad = grad
    distributed.average_gradients(params)
    averaged = [p.grad for p in params]
    for param, grad in zip(params, saved, strict=True):
        param.grad = grad
    return averaged


class ProGradHook(StepHook):
    """ProGrad's gradient rule on whatever the optimizers update. Under torchrun the two
    gradients are averaged over the processes before the projection, as one process with the
    whole batch computes it."""

    name = "ProGrad"

    def __init__(self, reference: Term, lambda_: float = 1.0) -> None:
        self.reference = reference
        self.lambda_ = lambda_

    def terms(self) -> list[Term]:
        return [self.reference]

    def backward(self, losses: Losses, params: Sequence[nn.Parameter],
                 backward: Callable[[torch.Tensor], None]) -> None:
        general = torch.autograd.grad(losses.terms[self.reference.name], params,
                                      retain_graph=True, allow_unused=True)
        backward(losses.total)
        if distributed.world_size() > 1:
            general = _averaged(params, general)
            distributed.average_gradients(params)
        for param, direction in zip(params, general, strict=True):
            param.grad = project_conflicting(param.grad, direction, self.lambda_)


@STEP_HOOK_REGISTRY.register(name="ProGrad", node="PROGRAD")
def prograd_hook(ctx: PartContext) -> ProGradHook:
    """ProGrad's rule with its LAMBDA, the teacher on ProGrad's template at its T."""
    template = ctx.template(PROGRAD_TEMPLATES)
    logger.info("ProGrad: zero-shot prompts '%s' (T %s, lambda %s)", template, ctx.node.T,
                ctx.node.LAMBDA)
    features = hand_crafted_text_features(ctx.clip_model, ctx.classnames, [template])
    return ProGradHook(ZeroShotDistillation(features, ctx.node.T), ctx.node.LAMBDA)


def prograd_words(dataset_name: str) -> str:
    """ProGrad's initial words: its template of the dataset before " {}."."""
    return dataset_template(dataset_name, PROGRAD_TEMPLATES).replace(" {}.", "")


def prograd_start(ctx: PartContext, settings: dict) -> dict:
    """``CTX_INIT: True`` (the official configs): N_CTX vectors ending with ProGrad's words
    of the dataset."""
    if settings.get("ctx_init") is not True:
        return settings
    return {**settings, "ctx_init": prograd_words(ctx.dataset_name), "words_last": True}


def check_prograd(cfg) -> None:
    if cfg.TRAINER.PROGRAD.NAME != "prograd":
        raise ConfigError(f"LOSS.NAME is '{cfg.TRAINER.PROGRAD.NAME}'; the ProGrad trainer needs "
                          "'prograd' (as its official configs set it)")


ProGrad = register_method(Method(
    "ProGrad", node="COOP", learner="CoOp", step_hooks=("ProGrad",), learner_init=prograd_start,
    check=check_prograd, doc="Projected gradient for few-shot CLIP."), module=__name__)
