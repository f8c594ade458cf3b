"""What a prompted CLIP computes for one batch: the output every objective term reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def normalize(x: torch.Tensor) -> torch.Tensor:
    """``x`` divided by its L2 norm along the last dimension (as CLIP normalises features)."""
    return x / x.norm(dim=-1, keepdim=True)


@dataclass
class ForwardOutput:
    """One forward pass of a prompted CLIP.

    ``text_*`` are ``[N, D]`` (one per class) or ``[B, N, D]`` for a conditional learner
    (CoCoOp: the class prompts depend on the image). ``*_embeddings`` are the towers' outputs,
    ``*_features`` the same normalised; ``logits`` ``[B, N]`` are the scaled cosine
    similarities. ``frozen_image_features`` (normalised, no prompts, no gradient) are filled in
    only when a term of the objective asks for them, once per batch.
    """

    logits: torch.Tensor
    image_features: torch.Tensor
    text_features: torch.Tensor
    image_embeddings: torch.Tensor
    text_embeddings: torch.Tensor
    logit_scale: torch.Tensor
    frozen_image_features: torch.Tensor | None = None
    images: torch.Tensor | None = None  # the input batch (a teacher's terms run it)

    @property
    def conditional(self) -> bool:
        """Whether the class text features differ per image."""
        return self.text_features.dim() == 3

    def require_frozen(self) -> torch.Tensor:
        if self.frozen_image_features is None:
            raise RuntimeError("this term reads the frozen model's image features: declare "
                               "needs_frozen_image = True on the term so that they are computed")
        return self.frozen_image_features

    def frozen_logits(self, frozen_text: torch.Tensor) -> torch.Tensor:
        """The frozen CLIP's logits ``[B, N]`` against normalised hand-crafted class text
        features ``frozen_text`` ``[N, D]``."""
        image = self.require_frozen()
        return self.logit_scale * image @ frozen_text.to(image.dtype).t()
