"""PromptSRC's agreement in the official code's form, for the tests: a model giving the
prompted and the frozen outputs, and a function of the two. It goes through the same two
functions as the registered terms (trainers/regularizers.py: ``feature_agreement``,
``logits_agreement``), so the parity and trainer tests check both forms against each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from trainers.base import PromptedCLIP, normalize
from trainers.regularizers import feature_agreement, logits_agreement


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


def self_regulating_terms(prompted: Outputs, frozen: Outputs, text_weight: float,
                          image_weight: float) -> SelfRegulatingTerms:
    """PromptSRC's agreement terms between the prompted and the frozen model's outputs (both
    with normalised features)."""
    if prompted.logits.shape != frozen.logits.shape:
        raise ValueError(f"prompted logits {tuple(prompted.logits.shape)} and frozen logits "
                         f"{tuple(frozen.logits.shape)} differ in shape")
    text = feature_agreement(prompted.text_features, frozen.text_features)
    image = feature_agreement(prompted.image_features, frozen.image_features)
    return SelfRegulatingTerms(text=text * text_weight, image=image * image_weight,
                               logits=logits_agreement(prompted.logits, frozen.logits))
