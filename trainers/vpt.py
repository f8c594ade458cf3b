"""VPT: vision-only (deep) prompting on CLIP (Jia et al., ECCV 2022,
https://arxiv.org/abs/2203.12119), as the MaPLe paper's baseline runs it.

Learnable tokens in the first ``PROMPT_DEPTH_VISION`` layers of the vision tower (appended after
the patch tokens at layer 0, replaced before each deeper layer); the text side is the frozen
CLIP's features of the hand-written prompt "a photo of a {class}." (as in the official code,
whatever CTX_INIT says), computed once.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.config import CN, register_config
from engine.errors import ConfigError
from trainers.base import PromptedCLIP, TextSide, normalize
from trainers.ivlp import IVLPPromptLearner, map_vpt_keys
from trainers.learners import register_learner
from trainers.method import Method, register_method

FIXED_PROMPT_PREFIX = "a photo of a"


@register_config
def add_vpt_config(cfg: CN) -> None:
    cfg.TRAINER.VPT = CN()
    cfg.TRAINER.VPT.N_CTX_VISION = 2  # number of context vectors at the vision branch
    # kept for the official configs; the text prompt is always "a photo of a {class}."
    cfg.TRAINER.VPT.CTX_INIT = "a photo of a"
    cfg.TRAINER.VPT.PREC = "fp16"  # fp16, fp32, amp or bf16
    cfg.TRAINER.VPT.PROMPT_DEPTH_VISION = 1  # vision layers with prompts (1: shallow VPT)


class FixedTextPromptedCLIP(PromptedCLIP):
    """A prompted CLIP whose class text features do not train: computed once, without
    gradients, and reused for every batch."""

    def __init__(self, clip_model: nn.Module, prompt_learner: nn.Module, head=None) -> None:
        super().__init__(clip_model, prompt_learner, head=head)
        self._fixed_text: TextSide | None = None

    def text_side(self) -> TextSide:
        schedule = self.prompt_learner()
        device = schedule.text_embeddings.device
        if self._fixed_text is None or self._fixed_text.features.device != device:
            with torch.no_grad():
                embeddings = self.encode_schedule_text(schedule)
            self._fixed_text = TextSide(None, embeddings, normalize(embeddings))
        return self._fixed_text._replace(schedule=schedule)


def vpt_settings(node: CN) -> dict:
    """VPT's learner from a node with its keys (TRAINER.VPT, TRAINER.IVLP)."""
    return {"n_ctx": node.N_CTX_VISION, "depth": node.PROMPT_DEPTH_VISION}


@register_learner("VPT", node="VPT", settings=vpt_settings, official_keys=map_vpt_keys)
class VPTPromptLearner(IVLPPromptLearner):
    """``vision_prompts.{i}`` for vision layers ``0 .. depth - 1``; no text prompts."""

    prompted_model = FixedTextPromptedCLIP

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 2,
                 depth: int = 1) -> None:
        if depth < 1:
            raise ValueError(f"the VPT prompt depth is {depth}; it must be >= 1")
        super().__init__(clip_model, classnames, n_ctx_text=0, n_ctx_vision=n_ctx,
                         depth_text=0, depth_vision=depth, ctx_init=FIXED_PROMPT_PREFIX)


def check_vpt(cfg) -> None:
    if cfg.TRAINER.VPT.PROMPT_DEPTH_VISION < 1:
        raise ConfigError("TRAINER.VPT.PROMPT_DEPTH_VISION must be >= 1")


VPT = register_method(Method(
    "VPT", node="VPT", learner="VPT", check=check_vpt,
    doc='Deep vision prompting with the fixed prompt "a photo of a {class}." on the text side.'),
    module=__name__)
