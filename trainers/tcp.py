"""TCP: Textual-based Class-aware Prompt tuning (Yao et al., CVPR 2024,
https://arxiv.org/abs/2311.18231).

CoOp's shared context (4 tokens, in front of a per-dataset class prompt) plus *class-aware
tokens*: a small net (Linear, QuickGELU, Linear; hidden width D / 4) turns each class's frozen
hand-crafted text feature (normalised) into 4 tokens, which replace the context tokens of that
class's prompt before one text layer (layer 8 of 12 officially). Trained with cross-entropy
plus KgCoOp's term (weight 8 officially) against the same hand-crafted features.

The class-aware tokens go through the text tower's prompt slot (clip/model.py): layer 0 takes
the context, layer ``LAYER`` the per-class tokens; no text encoder of its own.

Official config keys: TRAINER.COOP (N_CTX, CSC, CTX_INIT, W, PREC, CLASS_TOKEN_POSITION) and
TRAINER.COCOOP.PREC. Any true CTX_INIT starts the context from "a photo of a" (as the official
code does). Two values the official code fixes are ours to change: TRAINER.TCP.LAYER (8) and
TRAINER.TCP.KG_WEIGHT (8.0: the official loss ignores TRAINER.COOP.W, which it passes to the
text encoder where a constant 1.0 replaces it).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch
from torch import nn

from clip.model import QuickGELU
from engine.config import CN, register_config
from trainers.base import ClassTokens, PromptSchedule, normalize, word_context
from trainers.kgcoop import KnowledgeGuidance
from trainers.learners import first_key, register_learner
from trainers.method import Method, register_method
from trainers.objective import TERM_REGISTRY, PartContext, Term
from trainers.objective import hand_crafted_text_features as hand_crafted
from trainers.templates import KGCOOP_TEMPLATES

logger = logging.getLogger(__name__)

CLASS_TOKENS = 4  # the net's output: 4 tokens per class, in the 4 context positions
TCP_CTX_INIT = "a photo of a"

# TCP's hand-crafted prompts (its CUSTOM_TEMPLATES_ori): the net's input and KgCoOp's term;
# KgCoOp's but for two datasets
TCP_HANDCRAFTED_TEMPLATES: dict[str, str] = {
    **KGCOOP_TEMPLATES,
    "FGVCAircraft": "a photo of an aircraft {}.",
    "Food101": "a photo of a {}, a type of food.",
}
# TCP's class prompts (its CUSTOM_TEMPLATES): "X X X X" marks the context positions; on
# UCF101 and the ImageNets the context takes the place of "a photo of a"
TCP_PROMPT_TEMPLATES: dict[str, str] = {
    **TCP_HANDCRAFTED_TEMPLATES,
    "OxfordPets": "X X X X {}, a type of pet.",
    "OxfordFlowers": "X X X X {}, a type of flower.",
    "FGVCAircraft": "X X X X {}, a type of aircraft.",
    "DescribableTextures": "X X X X {} texture.",
    "EuroSAT": "X X X X {}.",
    "StanfordCars": "X X X X {}, a type of car",
    "Food101": "X X X X {}, a type of food.",
    "SUN397": "X X X X {}.",
    "Caltech101": "X X X X {}.",
}


@register_config
def add_tcp_config(cfg: CN) -> None:
    cfg.TRAINER.TCP = CN()
    cfg.TRAINER.TCP.LAYER = 8  # ours: the text layer the class-aware tokens enter (official 8)
    cfg.TRAINER.TCP.KG_WEIGHT = 8.0  # ours: weight of KgCoOp's term (the official constant 8.0)


def tcp_templates(dataset: str) -> tuple[str, str]:
    """(class prompt template, hand-crafted template) of a dataset; others get the generic."""
    return (TCP_PROMPT_TEMPLATES.get(dataset, "X X X X {}."),
            TCP_HANDCRAFTED_TEMPLATES.get(dataset, "a photo of a {}."))


def tcp_settings(node: CN, ctx: PartContext) -> dict:
    """TRAINER.COOP's N_CTX and CTX_INIT; the run's dataset (its templates) and
    TRAINER.TCP.LAYER."""
    return {"n_ctx": first_key(node, "N_CTX", "N_CTX_TEXT"), "ctx_init": node.CTX_INIT,
            "dataset": ctx.dataset_name, "layer": int(ctx.cfg.TRAINER.TCP.LAYER)}


@register_learner("TCP", node="COOP", settings=tcp_settings)
class TCPPromptLearner(nn.Module):
    """``ctx`` ``[4, d]`` and ``meta_net``: hand-crafted class feature -> 4 class-aware tokens,
    written into the context positions before text layer ``layer``.

    ``dataset`` picks TCP's class prompt and hand-crafted template (the run's DATASET.NAME).
    """

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 4,
                 ctx_init: str | bool = "", layer: int = 8, dataset: str = "") -> None:
        super().__init__()
        if n_ctx != CLASS_TOKENS:
            raise ValueError(f"TCP's class prompts hold {CLASS_TOKENS} context tokens; "
                             f"N_CTX is {n_ctx}: set TRAINER.COOP.N_CTX {CLASS_TOKENS}")
        layers = clip_model.transformer.layers
        if not 1 <= layer < layers:
            raise ValueError(f"TRAINER.TCP.LAYER is {layer}; the class-aware tokens enter a "
                             f"text layer 1 .. {layers - 1}")
        width = clip_model.text_width
        ctx, _ = word_context(clip_model, n_ctx, TCP_CTX_INIT if ctx_init else "")
        self.ctx = nn.Parameter(ctx)
        self.layer = layer
        prompt, handcrafted = tcp_templates(dataset)
        logger.info("TCP: class prompts '%s', hand-crafted prompts '%s', class-aware tokens "
                    "at text layer %d", prompt, handcrafted, layer)
        names = [c.replace("_", " ") for c in classnames]
        self.class_tokens = ClassTokens(clip_model, [prompt.format(c) for c in names])
        features = hand_crafted(clip_model, classnames, [handcrafted])
        self.register_buffer("class_features", normalize(features), persistent=False)
        dim = features.shape[-1]
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(dim, dim // 4)),
            ("relu", QuickGELU()),
            ("linear2", nn.Linear(dim // 4, CLASS_TOKENS * width)),
        ]))

    def class_aware_tokens(self) -> torch.Tensor:
        """``[N, 4, d]``: each class's tokens from its hand-crafted feature."""
        net = self.meta_net
        out = net(self.class_features.to(net.linear1.weight.dtype))
        return out.view(out.shape[0], CLASS_TOKENS, -1)

    def forward(self) -> PromptSchedule:
        text: list[torch.Tensor | None] = [None] * (self.layer + 1)
        text[0], text[self.layer] = self.ctx, self.class_aware_tokens()
        return PromptSchedule(self.class_tokens.embeddings, self.class_tokens.eot, text=text)


@TERM_REGISTRY.register(name="TCP", node="TCP")
def tcp_terms(ctx: PartContext) -> list[Term]:
    """KgCoOp's term against TCP's hand-crafted prompts, weighted by TRAINER.TCP.KG_WEIGHT."""
    _, template = tcp_templates(ctx.cfg.DATASET.NAME)
    features = hand_crafted(ctx.clip_model, ctx.classnames, [template])
    return [KnowledgeGuidance(features, weight=float(ctx.cfg.TRAINER.TCP.KG_WEIGHT))]


TCP = register_method(Method("TCP", node="COOP", learner="TCP", terms=("CE", "TCP"),
                            doc="Textual-based class-aware prompt tuning."), module=__name__)
