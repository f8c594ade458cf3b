"""MaPLe: Multi-modal Prompt Learning (Khattak et al., CVPR 2023,
https://arxiv.org/abs/2210.03117).

Language prompts in text layers ``0 .. J-1`` (``J = PROMPT_DEPTH``); the vision prompt of each of
those layers is produced from that layer's language prompt by its own linear coupling function
(text width → vision width), so the two towers are prompted jointly.
"""

from __future__ import annotations

import copy
import logging
import re

import torch
from torch import nn

from engine.config import CN, register_config
from trainers.base import ClassTokens, PromptSchedule, prompt_text
from trainers.ivlp import check_depth, deep_prompts, text_context, vision_layers
from trainers.learners import official_learner_keys, register_learner
from trainers.method import Method, register_method

logger = logging.getLogger(__name__)


@register_config
def add_maple_config(cfg: CN) -> None:
    cfg.TRAINER.MAPLE = CN()
    cfg.TRAINER.MAPLE.N_CTX = 2  # number of context vectors (per layer, shared by both towers)
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"  # initialization words
    cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16, fp32, amp or bf16
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # layers with prompts, J (1: shallow MaPLe), max layers


def maple_settings(node: CN) -> dict:
    """MaPLe's learner from its node's keys."""
    return {"n_ctx": node.N_CTX, "depth": node.PROMPT_DEPTH, "ctx_init": node.CTX_INIT}


_OFFICIAL = (
    (re.compile(r"^prompt_learner\.proj\.(weight|bias)$"), lambda m: f"couplings.0.{m[1]}"),
    (re.compile(r"^prompt_learner\.compound_prompts_text\.(\d+)$"),
     lambda m: f"text_prompts.{int(m[1]) + 1}"),
    (re.compile(r"^prompt_learner\.compound_prompt_projections\.(\d+)\.(weight|bias)$"),
     lambda m: f"couplings.{int(m[1]) + 1}.{m[2]}"),
)


def map_maple_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official MaPLe key names → the learner's: ``proj`` is the coupling of layer 0,
    ``compound_prompts_text.k`` and ``compound_prompt_projections.k`` belong to layer k + 1."""
    mapped = {}
    for key, value in state_dict.items():
        for pattern, rename in _OFFICIAL:
            match = pattern.match(key)
            if match:
                key = rename(match)
                break
        else:
            key = key.removeprefix("prompt_learner.")
        mapped[key] = value
    return official_learner_keys(mapped)


@register_learner("MaPLe", node="MAPLE", settings=maple_settings, official_keys=map_maple_keys)
class MaPLePromptLearner(nn.Module):
    """Parameters: ``ctx`` (text layer 0), ``text_prompts.{i}`` for text layers ``1 .. J-1``,
    and ``couplings.{i}`` (a Linear text width → vision width) for layers ``0 .. J-1``.

    As in the official code, the couplings of layers ``1 .. J-1`` start as copies of one
    freshly initialised Linear, and layer 0's is initialised on its own.
    """

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 2,
                 depth: int = 9, ctx_init: str = "a photo of a") -> None:
        super().__init__()
        if not vision_layers(clip_model):
            raise ValueError("MaPLe prompts the vision tower, which must be a ViT; this CLIP "
                             "has a ResNet (choose a ViT backbone, e.g. ViT-B/16)")
        layers = min(clip_model.transformer.layers, vision_layers(clip_model))
        check_depth(depth, layers, "the MaPLe prompt depth (PROMPT_DEPTH)", minimum=1)
        if n_ctx < 1:
            raise ValueError(f"MaPLe needs at least one context token; N_CTX is {n_ctx}")
        text_width, vision_width = clip_model.text_width, clip_model.vision_width
        ctx, prefix = text_context(clip_model, n_ctx, ctx_init)
        logger.info('MaPLe: initial context "%s"; context tokens: %d; prompt depth: %d',
                    prefix, n_ctx, depth)
        self.ctx = nn.Parameter(ctx)
        self.text_prompts = deep_prompts(range(1, depth), n_ctx, text_width)
        first = nn.Linear(text_width, vision_width)
        deeper = nn.Linear(text_width, vision_width)
        self.couplings = nn.ModuleDict(
            {str(i): first if i == 0 else copy.deepcopy(deeper) for i in range(depth)})
        self.depth = depth
        self.class_tokens = ClassTokens(clip_model, [prompt_text(prefix, c) for c in classnames])

    def text_schedule(self) -> list[torch.Tensor]:
        return [self.ctx, *(self.text_prompts[str(i)] for i in range(1, self.depth))]

    def forward(self) -> PromptSchedule:
        text = self.text_schedule()
        vision = [self.couplings[str(i)](prompt) for i, prompt in enumerate(text)]
        tokens = self.class_tokens
        return PromptSchedule(tokens.embeddings, tokens.eot, text=text, vision=vision)


MaPLe = register_method(Method("MaPLe", node="MAPLE", learner="MaPLe",
                               model_name="MultiModalPromptLearner",
                               doc="Multi-modal Prompt Learning."), module=__name__)
