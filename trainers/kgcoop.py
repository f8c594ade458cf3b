"""KgCoOp: Knowledge-guided Context Optimization (Yao et al., CVPR 2023,
https://arxiv.org/abs/2303.13283).

CoOp's prompts trained with cross-entropy plus ``W * (1 - mean cos(t_i, h_i))``: the mean
cosine similarity between each class's prompted text feature ``t_i`` and the frozen CLIP's
feature ``h_i`` of a hand-crafted prompt (KgCoOp's per-dataset template). The term
(``"KgCoOp"`` in TERM_REGISTRY) works on any learner, conditional ones included.

Official config keys: TRAINER.COOP (N_CTX, CSC, CTX_INIT, PREC, CLASS_TOKEN_POSITION) for the
learner; the term's weight is its own ``TRAINER.KGCOOP.W``, which the official
``TRAINER.COOP.W`` sets (an alias); ``TRAINER.COOP.ALPHA`` is read by nothing (the official
code neither) and only its default is accepted. ``CTX_INIT: True`` (the official configs)
starts the context from "a photo of a"; words start it from those words (the official code
reads any true value as "a photo of a"). CLASS_TOKEN_POSITION is honoured (the official code
puts the class at the end whatever it says; its scripts pass ``end``).
"""

from __future__ import annotations

import logging
import re

import torch
import torch.nn.functional as F

from engine.config import CN, register_alias, register_config, register_unread
from trainers.method import Method, register_method
from trainers.objective import TERM_REGISTRY, HandCraftedTerm, PartContext, Term
from trainers.objective import hand_crafted_text_features as hand_crafted
from trainers.outputs import ForwardOutput
from trainers.templates import KGCOOP_TEMPLATES

logger = logging.getLogger(__name__)

KGCOOP_CTX_INIT = "a photo of a"


@register_config
def add_kgcoop_config(cfg: CN) -> None:
    cfg.TRAINER.KGCOOP = CN()
    cfg.TRAINER.KGCOOP.W = 1.0  # weight of the distance to the hand-crafted prompts
    cfg.TRAINER.COOP.ALPHA = 1.0  # in the official KgCoOp and DePT configs; unused there too


register_alias("TRAINER.COOP.W", "TRAINER.KGCOOP.W")
register_unread("TRAINER.COOP.ALPHA", "the official KgCoOp code does not read it either")


class KnowledgeGuidance(HandCraftedTerm):
    """``kg``: one minus the mean cosine similarity between the prompted class text features
    and the hand-crafted prompts' (per image for a conditional learner)."""

    name = "kg"

    def forward(self, out: ForwardOutput, label: torch.Tensor) -> torch.Tensor:
        cos = F.cosine_similarity(out.text_features.float(), self.per_image(out), dim=-1,
                                  eps=1e-7)
        return 1.0 - cos.mean()


@TERM_REGISTRY.register(name="KgCoOp", node="KGCOOP")
def kgcoop_terms(ctx: PartContext) -> list[Term]:
    """KgCoOp's term, weighted by its W, against KgCoOp's template of the dataset."""
    template = ctx.template(KGCOOP_TEMPLATES)
    logger.info("KgCoOp: hand-crafted prompts '%s' (weight %s)", template, ctx.node.W)
    features = hand_crafted(ctx.clip_model, ctx.classnames, [template])
    return [KnowledgeGuidance(features, weight=ctx.node.W)]


_UNUSED = re.compile(r"^(prompt_learner\.)?(bias_vectors|meta_net\.linear1\.(weight|bias))$"
                     r"|^adapter\.")


def kgcoop_words(ctx: PartContext, settings: dict) -> dict:
    """``CTX_INIT: True`` (the official configs): KgCoOp's initial words "a photo of a"."""
    return {**settings, "ctx_init": KGCOOP_CTX_INIT} if settings.get("ctx_init") is True \
        else settings


def drop_unused_official_tensors(state_dict):
    """The official KgCoOp learner also saves tensors its forward never reads
    (``bias_vectors``, a one-layer ``meta_net``, DePT's copy of an ``adapter``): dropped.
    A two-layer ``meta_net`` is CoCoOp's, kept."""
    unused = {k for k in state_dict if _UNUSED.match(k)}
    if any(k.endswith("meta_net.linear2.weight") for k in state_dict):
        unused = {k for k in unused if "meta_net" not in k}
    return {k: v for k, v in state_dict.items() if k not in unused}


KGCOOP = Method("KgCoOp", node="COOP", learner="CoOp", terms=("CE", "KgCoOp"),
                learner_init=kgcoop_words, official_keys=drop_unused_official_tensors,
                doc="Knowledge-guided Context Optimization.")
KgCoOp = register_method(KGCOOP, module=__name__)
