"""PromptSRC's reusable parts (Khattak et al., ICCV 2023, https://arxiv.org/abs/2307.06948):
the self-regulating objective and Gaussian prompt aggregation (GPA).

Both work on any prompt learner (a module whose ``forward()`` returns a
:class:`~trainers.base.PromptSchedule`):

* :class:`SelfRegulatedCLIP` runs the frozen CLIP twice per batch, with the learner's prompts and
  without (the same weights, under ``no_grad``: no second copy of the image encoder), and holds
  the frozen class text features averaged over :data:`PROMPTSRC_TEMPLATES`, computed once.
* :func:`self_regulating_terms` computes the three agreement terms from the prompted and the
  frozen outputs; the training loss is cross-entropy plus their sum.
* :class:`GaussianPromptAggregation` accumulates the learner's tensors after every epoch with a
  Gaussian weight of the epoch; its state goes into the checkpoints so a resumed run continues it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from trainers.base import PromptedCLIP, normalize
from trainers.templates import IMAGENET_TEMPLATES

# The 60 templates of the official PromptSRC (its trainers/imagenet_templates.py): "a photo of a
# {}." first, then OpenAI's first 60 ImageNet templates without that one, in their order.
PROMPTSRC_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",) + tuple(
    t for t in IMAGENET_TEMPLATES[:60] if t != "a photo of a {}.")


# --------------------------------------------------------------------------- frozen features


@torch.no_grad()
def frozen_text_features(clip_model: nn.Module, classnames: Sequence[str],
                         templates: Sequence[str] = PROMPTSRC_TEMPLATES,
                         max_batch: int = 4096) -> torch.Tensor:
    """The frozen CLIP's class text features ``[N, D]`` averaged over ``templates``, each
    unnormalised, as the official code precomputes them (underscores in names become spaces).
    The text tower runs on at most ``max_batch`` prompts at once."""
    if not templates:
        raise ValueError("frozen text features need at least one template")
    names = [name.replace("_", " ") for name in classnames]
    prompts = [template.replace("{}", name) for template in templates for name in names]
    tokens = clip_model.tokenizer(prompts).to(clip_model.token_embedding.weight.device)
    features = torch.cat([clip_model.encode_text(chunk).float()
                          for chunk in tokens.split(max_batch)])
    return features.view(len(templates), len(names), -1).mean(dim=0)


class Outputs(NamedTuple):
    """What a CLIP computes for a batch: ``logits`` ``[B, N]``, normalised ``image_features``
    ``[B, D]`` and normalised class ``text_features`` ``[N, D]``."""

    logits: torch.Tensor
    image_features: torch.Tensor
    text_features: torch.Tensor


class SelfRegulatedCLIP(PromptedCLIP):
    """A :class:`PromptedCLIP` that also gives the frozen model's outputs for training.

    ``frozen_text`` (a non-persistent buffer, so checkpoints never carry it) holds the frozen
    class text features from :func:`frozen_text_features`; the frozen image features come from
    the same CLIP run without prompts.
    """

    def __init__(self, clip_model: nn.Module, prompt_learner: nn.Module,
                 frozen_text: torch.Tensor) -> None:
        super().__init__(clip_model, prompt_learner)
        n_cls = len(prompt_learner.class_tokens)
        if frozen_text.dim() != 2 or frozen_text.shape[0] != n_cls:
            raise ValueError(f"frozen text features must be [{n_cls}, D] (one per class); "
                             f"got {tuple(frozen_text.shape)}")
        self.register_buffer("frozen_text", frozen_text.float(), persistent=False)

    def prompted_outputs(self, image: torch.Tensor) -> Outputs:
        image_features, text_features = self.features(image)
        return Outputs(self.logits(image_features, text_features), image_features, text_features)

    @torch.no_grad()
    def frozen_outputs(self, image: torch.Tensor) -> Outputs:
        """The frozen CLIP's outputs (no prompts, no gradient)."""
        image_features = normalize(self.clip.encode_image(image))
        text_features = normalize(self.frozen_text)
        logits = self.logits(image_features, text_features.to(image_features.dtype))
        return Outputs(logits, image_features, text_features)


# --------------------------------------------------------------------------- the objective


@dataclass
class SelfRegulatingTerms:
    """The weighted agreement terms of PromptSRC's objective (each a scalar tensor)."""

    text: torch.Tensor  # L1 between prompted and frozen text features x TEXT_LOSS_WEIGHT
    image: torch.Tensor  # L1 between prompted and frozen image features x IMAGE_LOSS_WEIGHT
    logits: torch.Tensor  # KL divergence of the prompted logits from the frozen ones

    @property
    def total(self) -> torch.Tensor:
        return self.logits + self.text + self.image

    def figures(self) -> dict[str, float]:
        return {"loss_scl_text": self.text.item(), "loss_scl_image": self.image.item(),
                "loss_scl_logits": self.logits.item()}


def logits_agreement(logits: torch.Tensor, frozen_logits: torch.Tensor) -> torch.Tensor:
    """KL(frozen || prompted) summed over every logit and divided by their number (the official
    ``kl_div(log_softmax(prompted), log_softmax(frozen), log_target=True, reduction='sum')
    / numel``)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    log_q = F.log_softmax(frozen_logits.float(), dim=1)
    return F.kl_div(log_p, log_q, reduction="sum", log_target=True) / logits.numel()


def self_regulating_terms(prompted: Outputs, frozen: Outputs, text_weight: float,
                          image_weight: float) -> SelfRegulatingTerms:
    """PromptSRC's agreement terms between the prompted and the frozen model's outputs (both
    with normalised features)."""
    if prompted.logits.shape != frozen.logits.shape:
        raise ValueError(f"prompted logits {tuple(prompted.logits.shape)} and frozen logits "
                         f"{tuple(frozen.logits.shape)} differ in shape")
    text = F.l1_loss(prompted.text_features.float(), frozen.text_features.float())
    image = F.l1_loss(prompted.image_features.float(), frozen.image_features.float())
    return SelfRegulatingTerms(text=text * text_weight, image=image * image_weight,
                               logits=logits_agreement(prompted.logits, frozen.logits))


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
