"""PromptSRC's reusable parts (Khattak et al., ICCV 2023, https://arxiv.org/abs/2307.06948):
the self-regulating objective and Gaussian prompt aggregation (GPA).

Both work on any prompt learner (a module whose ``forward()`` returns a
:class:`~trainers.base.PromptSchedule`):

* The objective terms ``scl_text``, ``scl_image`` and ``scl_logits`` (registered together as
  ``"PromptSRC"`` in ``TERM_REGISTRY``, node ``TRAINER.PROMPTSRC``): agreement of the
  prompted text features, image features and logits with the frozen model's (text features
  averaged over :data:`PROMPTSRC_TEMPLATES`, computed once; image features of the same CLIP
  run without prompts, under ``no_grad``: no second copy of the image encoder). Weights:
  TEXT_LOSS_WEIGHT and IMAGE_LOSS_WEIGHT.
* The epoch hook ``"GPA"`` (node ``TRAINER.GPA``: MEAN, STD; the official
  ``TRAINER.PROMPTSRC.GPA_MEAN`` / ``GPA_STD`` set them): :class:`GaussianPromptAggregation`
  accumulates what trains after every epoch with a Gaussian weight of the epoch and, after the
  last, makes the aggregate the model; its state goes into the checkpoints, so a resumed run
  continues it. On any learner: ``TRAINER.PARTS.EPOCH_HOOKS: ["GPA"]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import CN, register_alias, register_config
from trainers.objective import (
    TERM_REGISTRY,
    ForwardOutput,
    HandCraftedTerm,
    PartContext,
    Term,
    hand_crafted_text_features,
)
from trainers.parts import EPOCH_HOOK_REGISTRY, EpochHook
from trainers.templates import IMAGENET_TEMPLATES

logger = logging.getLogger(__name__)

# The 60 templates of the official PromptSRC (its trainers/imagenet_templates.py): "a photo of a
# {}." first, then OpenAI's first 60 ImageNet templates without that one, in their order.
PROMPTSRC_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",) + tuple(
    t for t in IMAGENET_TEMPLATES[:60] if t != "a photo of a {}.")


# --------------------------------------------------------------------------- frozen features


def frozen_text_features(clip_model: nn.Module, classnames: Sequence[str],
                         templates: Sequence[str] = PROMPTSRC_TEMPLATES,
                         max_batch: int = 4096) -> torch.Tensor:
    """The frozen CLIP's class text features ``[N, D]`` averaged over ``templates`` (by
    default PromptSRC's 60), each unnormalised, as the official code precomputes them."""
    return hand_crafted_text_features(clip_model, classnames, templates, max_batch)


# --------------------------------------------------------------------------- the objective


def logits_agreement(logits: torch.Tensor, frozen_logits: torch.Tensor) -> torch.Tensor:
    """KL(frozen || prompted) summed over every logit and divided by their number (the official
    ``kl_div(log_softmax(prompted), log_softmax(frozen), log_target=True, reduction='sum')
    / numel``)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    log_q = F.log_softmax(frozen_logits.float(), dim=1)
    return F.kl_div(log_p, log_q, reduction="sum", log_target=True) / logits.numel()


def feature_agreement(features: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of prompted and frozen features (both normalised)."""
    return F.l1_loss(features.float(), frozen.float())


class TextAgreement(HandCraftedTerm):
    """``scl_text``: L1 between the prompted class text features and the frozen ones."""

    name = "scl_text"

    def forward(self, out: ForwardOutput, label: torch.Tensor) -> torch.Tensor:
        return feature_agreement(out.text_features, self.per_image(out))


class ImageAgreement(Term):
    """``scl_image``: L1 between the prompted image features and the frozen model's."""

    name = "scl_image"
    needs_frozen_image = True

    def forward(self, out: ForwardOutput, label: torch.Tensor) -> torch.Tensor:
        return feature_agreement(out.image_features, out.require_frozen())


class LogitsAgreement(HandCraftedTerm):
    """``scl_logits``: KL divergence of the prompted logits from the frozen model's."""

    name = "scl_logits"
    needs_frozen_image = True

    def forward(self, out: ForwardOutput, label: torch.Tensor) -> torch.Tensor:
        return logits_agreement(out.logits, out.frozen_logits(self.hand_crafted))


@TERM_REGISTRY.register(name="PromptSRC", node="PROMPTSRC",
                        keys=("TEXT_LOSS_WEIGHT", "IMAGE_LOSS_WEIGHT"))
def promptsrc_terms(ctx: PartContext) -> list[Term]:
    """PromptSRC's three agreement terms, weighted by its node's loss weights."""
    node = ctx.node
    # the official code computes them once, in fp32, on the device
    logger.info("Computing the frozen text features of %d classes", len(ctx.classnames))
    frozen = frozen_text_features(ctx.clip_model, ctx.classnames)
    return [TextAgreement(frozen, weight=node.TEXT_LOSS_WEIGHT),
            ImageAgreement(weight=node.IMAGE_LOSS_WEIGHT), LogitsAgreement(frozen)]


# --------------------------------------------------------------------------- GPA


def gaussian_epoch_weights(mean: float, std: float, max_epoch: int) -> list[float]:
    """The weight of each epoch ``e = 1 .. max_epoch``: the N(mean, std²) density at ``e``,
    normalised to sum to one."""
    if std <= 0:
        raise ValueError(f"GPA_STD must be positive; got {std}")
    if max_epoch < 1:
        raise ValueError(f"GPA needs at least one epoch; OPTIM.MAX_EPOCH is {max_epoch}")
    density = [math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
               for e in range(1, max_epoch + 1)]
    total = sum(density)
    if total == 0:
        raise ValueError(f"the Gaussian N({mean}, {std}²) is zero at every epoch 1..{max_epoch}: "
                         "set GPA_MEAN within (or near) the training epochs, or a larger GPA_STD")
    return [d / total for d in density]


class GaussianPromptAggregation:
    """The running Gaussian-weighted sum of a model's tensors over the epochs.

    After epoch ``e`` (1-based) call :meth:`accumulate` with the tensors; once the last epoch is
    in, :attr:`aggregate` is the final model. :meth:`state_dict` / :meth:`load_state_dict` carry
    it through checkpoints.
    """

    def __init__(self, mean: float, std: float, max_epoch: int) -> None:
        self.mean, self.std, self.max_epoch = float(mean), float(std), int(max_epoch)
        self.weights = gaussian_epoch_weights(self.mean, self.std, self.max_epoch)
        self.last_epoch = 0
        self.aggregate: dict[str, torch.Tensor] = {}

    @property
    def complete(self) -> bool:
        return self.last_epoch == self.max_epoch

    def weight(self, epoch: int) -> float:
        """The weight of ``epoch`` (1-based)."""
        if not 1 <= epoch <= self.max_epoch:
            raise ValueError(f"epoch {epoch} is outside 1..{self.max_epoch}")
        return self.weights[epoch - 1]

    @torch.no_grad()
    def accumulate(self, epoch: int, tensors: Mapping[str, torch.Tensor]) -> None:
        """Add the tensors of ``epoch`` (1-based, the next one after the last accumulated)."""
        if epoch != self.last_epoch + 1:
            raise ValueError(f"GPA expected epoch {self.last_epoch + 1}, got {epoch}: epochs are "
                             "aggregated once each, in order")
        if self.aggregate and set(tensors) != set(self.aggregate):
            raise ValueError(f"GPA aggregates {sorted(self.aggregate)}; got {sorted(tensors)}")
        weight = self.weight(epoch)
        for key, value in tensors.items():
            weighted = value.detach() * weight
            self.aggregate[key] = weighted if key not in self.aggregate else \
                self.aggregate[key] + weighted
        self.last_epoch = epoch

    def state_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "max_epoch": self.max_epoch,
                "last_epoch": self.last_epoch,
                "aggregate": {k: v.clone() for k, v in self.aggregate.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a saved aggregation; its schedule must be this one."""
        saved = (float(state["mean"]), float(state["std"]), int(state["max_epoch"]))
        if saved != (self.mean, self.std, self.max_epoch):
            raise ValueError(
                f"the saved GPA ran with GPA_MEAN {saved[0]}, GPA_STD {saved[1]}, MAX_EPOCH "
                f"{saved[2]}; this run has {self.mean}, {self.std}, {self.max_epoch}: resume "
                "with the settings of the interrupted run")
        self.last_epoch = int(state["last_epoch"])
        self.aggregate = {k: v.clone() for k, v in state["aggregate"].items()}


@register_config
def add_gpa_config(cfg: CN) -> None:
    cfg.TRAINER.GPA = CN()
    cfg.TRAINER.GPA.MEAN = 15  # mean (epoch) of the Gaussian prompt aggregation
    cfg.TRAINER.GPA.STD = 1  # standard deviation (epochs) of the aggregation


register_alias("TRAINER.PROMPTSRC.GPA_MEAN", "TRAINER.GPA.MEAN")
register_alias("TRAINER.PROMPTSRC.GPA_STD", "TRAINER.GPA.STD")


class GaussianAggregationHook(EpochHook):
    """``GPA``: after epoch ``e``, add what trains with the weight of ``e``; after the last
    epoch the aggregate becomes the model (before the last checkpoint and the final test, as
    officially)."""

    name = "GPA"

    def __init__(self, mean: float, std: float, max_epoch: int) -> None:
        self.gpa = GaussianPromptAggregation(mean, std, max_epoch)

    def after_epoch(self, epoch: int, max_epoch: int, trained: nn.Module) -> None:
        self.gpa.accumulate(epoch, trained.state_dict())
        if self.gpa.complete:
            logger.info("Using GPA model for final inference...")
            trained.load_state_dict(self.gpa.aggregate)

    def state_dict(self) -> dict:
        return self.gpa.state_dict()

    def load_state_dict(self, state) -> None:
        self.gpa.load_state_dict(state)


@EPOCH_HOOK_REGISTRY.register(name="GPA", node="GPA")
def gpa_hook(ctx: PartContext) -> GaussianAggregationHook:
    """PromptSRC's aggregation over OPTIM.MAX_EPOCH epochs with the node's MEAN and STD."""
    return GaussianAggregationHook(ctx.node.MEAN, ctx.node.STD, ctx.cfg.OPTIM.MAX_EPOCH)
