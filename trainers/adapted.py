"""The prompted CLIP of learners that train adapters (clip/adapters.py) instead of, or besides,
prompts: MMA's residual adapters, CLIP-LoRA's low-rank attention updates.

Such a learner names :class:`AdaptedCLIP` as its ``prompted_model`` and has
``adapters(tower)`` (``tower``: ``"text"`` or ``"vision"``) returning ``(residual, attention)``,
two ``{layer: adapter}`` dicts (empty where the tower has none). The adapters are active only
while the prompted towers run, so the same CLIP computes the frozen features that objective
terms compare against (KgCoOp's hand-crafted prompts, PromptSRC's frozen image features).
"""

from __future__ import annotations

import contextlib

import torch

from clip.adapters import adapted
from trainers.base import PromptedCLIP, PromptSchedule, TextSide
from trainers.outputs import ForwardOutput

TOWERS = ("text", "vision")


class AdaptedCLIP(PromptedCLIP):
    """:class:`PromptedCLIP` with the learner's adapters active in its towers."""

    def _tower(self, tower: str):
        if tower == "text":
            return self.clip.transformer
        transformer = getattr(self.clip.visual, "transformer", None)
        if transformer is None:
            raise ValueError(f"{type(self.prompt_learner).__name__} adapts the vision "
                             "transformer; this backbone's image encoder is a ResNet: use a "
                             "ViT backbone or text adapters only")
        return transformer

    def adapted(self, tower: str) -> contextlib.AbstractContextManager:
        residual, attention = self.prompt_learner.adapters(tower)
        if not residual and not attention:
            return contextlib.nullcontext()
        return adapted(self._tower(tower), residual, attention)

    def vision_adapted(self) -> bool:
        return any(self.prompt_learner.adapters("vision"))

    def encode_schedule_text(self, schedule: PromptSchedule) -> torch.Tensor:
        with self.adapted("text"):
            return super().encode_schedule_text(schedule)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, TextSide]:
        text = self.text_side()
        schedule = self._schedule = text.schedule
        with self.adapted("vision"):
            image_embeddings = self.clip.encode_image(
                image, schedule.vision, prompt_after_ln_pre=schedule.vision_after_ln_pre)
        return image_embeddings, text

    def output(self, image: torch.Tensor, frozen: bool = False) -> ForwardOutput:
        out = super().output(image, frozen=False)
        if frozen:
            plain = self._schedule.vision is None and not self.vision_adapted()
            out.frozen_image_features = (out.image_features.detach() if plain
                                         else self.frozen_image_features(image))
        return out
