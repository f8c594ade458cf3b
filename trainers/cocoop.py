"""CoCoOp: Conditional Prompt Learning (Zhou et al., CVPR 2022, https://arxiv.org/abs/2203.05557).

A meta-net (Linear, ReLU, Linear; hidden width vis_dim / 16) turns each normalised image feature
into a shift of the shared context, so the class prompts, and their text features, are computed
per image.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from engine.config import CN, register_config
from trainers.base import (
    ClassTokens,
    PromptedCLIP,
    TextSide,
    normalize,
    prompt_text,
    word_context,
)
from trainers.learners import register_learner
from trainers.method import Method, register_method


@register_config
def add_cocoop_config(cfg: CN) -> None:
    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16  # number of context vectors
    cfg.TRAINER.COCOOP.CTX_INIT = ""  # initialization words (overrides N_CTX by their count)
    cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16, fp32, amp or bf16


class ConditionalPromptedCLIP(PromptedCLIP):
    """Text features per image: every image's context is written into every class prompt.

    The text tower runs on ``images x classes`` prompts at once, in chunks of at most
    ``max_text_batch`` prompts.
    """

    max_text_batch = 4096

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, TextSide]:
        """(image embeddings [B, D], the class side with text features [B, N, D])."""
        image_embeddings = self.clip.encode_image(image)
        ctx = self.prompt_learner(normalize(image_embeddings))
        tokens = self.prompt_learner.class_tokens
        chunk = max(1, self.max_text_batch // len(tokens))
        text = torch.cat([self._per_image_text(ctx[i:i + chunk], tokens)
                          for i in range(0, ctx.shape[0], chunk)])
        return image_embeddings, TextSide(None, text, normalize(text))

    def _per_image_text(self, ctx: torch.Tensor, tokens: ClassTokens) -> torch.Tensor:
        images, n_cls = ctx.shape[0], len(tokens)
        embeddings = tokens.embeddings.unsqueeze(0).expand(images, -1, -1, -1).flatten(0, 1)
        eot = tokens.eot.repeat(images)
        prompt = ctx.unsqueeze(1).expand(-1, n_cls, -1, -1).flatten(0, 1)
        features = self.clip.encode_text_embeddings(embeddings, eot, [prompt])
        return features.view(images, n_cls, -1)


def cocoop_settings(node: CN) -> dict:
    """CoCoOp's learner from its node's keys."""
    return {"n_ctx": node.N_CTX, "ctx_init": node.CTX_INIT}


@register_learner("CoCoOp", node="COCOOP", settings=cocoop_settings)
class CoCoOpPromptLearner(nn.Module):
    """``ctx`` ``[n_ctx, d]`` and ``meta_net`` (the official key names); conditional:
    ``forward(image_features)``, driven by :class:`ConditionalPromptedCLIP`."""

    prompted_model = ConditionalPromptedCLIP

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 16,
                 ctx_init: str = "") -> None:
        super().__init__()
        width, vis_dim = clip_model.text_width, clip_model.visual.output_dim
        ctx, prefix = word_context(clip_model, n_ctx, ctx_init)
        self.ctx = nn.Parameter(ctx)
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, width)),
        ]))
        self.class_tokens = ClassTokens(clip_model, [prompt_text(prefix, c) for c in classnames])

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """Per-image context ``[B, n_ctx, d]`` from normalised image features ``[B, D]``."""
        shift = self.meta_net(image_features.to(self.ctx.dtype))
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1)


CoCoOp = register_method(Method("CoCoOp", node="COCOOP", learner="CoCoOp",
                                doc="Conditional Context Optimization (CoCoOp)."),
                         module=__name__)
