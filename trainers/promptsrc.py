"""PromptSRC: Self-regulating Prompts (Khattak et al., ICCV 2023,
https://arxiv.org/abs/2307.06948).

IVLP's prompts (by default; MaPLe's or CoOp's with TRAINER.PROMPTSRC.PROMPT_LEARNER, built from
this node's keys; any registered learner with TRAINER.PARTS.PROMPT_LEARNER, built from its own
node) trained with cross-entropy plus the ``"PromptSRC"`` terms and the ``"GPA"`` epoch hook
of trainers/regularizers.py (agreement with the frozen CLIP: text features averaged over 60
templates, image features, logits; Gaussian prompt aggregation over the epochs: the aggregate
becomes the model after the last epoch, before the last checkpoint is written and the final
test runs).

The frozen features come from the same CLIP run without prompts, so there is no second image
encoder (the official files' copy, ``ZS_image_encoder``, is dropped on load); our checkpoints
hold what trains and, as an extra, the aggregation so far.
"""

from __future__ import annotations

import logging

from engine.config import CN, register_config
from trainers import regularizers  # noqa: F401  (registers the terms and the GPA hook)
from trainers.method import Method, register_method

logger = logging.getLogger(__name__)

PROMPT_LEARNERS = ("IVLP", "MaPLe", "CoOp")


@register_config
def add_promptsrc_config(cfg: CN) -> None:
    cfg.TRAINER.PROMPTSRC = CN()
    cfg.TRAINER.PROMPTSRC.N_CTX_VISION = 4  # number of context vectors at the vision branch
    cfg.TRAINER.PROMPTSRC.N_CTX_TEXT = 4  # number of context vectors at the language branch
    cfg.TRAINER.PROMPTSRC.CTX_INIT = "a photo of a"  # initialization words
    cfg.TRAINER.PROMPTSRC.PREC = "fp16"  # fp16, fp32, amp or bf16
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9  # vision layers with prompts, max layers
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9  # text layers with prompts (>= 1), max layers
    cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25  # weight of the L1 text-feature agreement
    cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10  # weight of the L1 image-feature agreement
    # GPA_MEAN and GPA_STD (official) set TRAINER.GPA.MEAN and STD (the GPA hook's node)
    # ours: the prompts the objective trains: IVLP (the paper's), MaPLe (uses N_CTX_TEXT and
    # PROMPT_DEPTH_TEXT, which must equal the vision ones) or CoOp (text layer 0 only)
    cfg.TRAINER.PROMPTSRC.PROMPT_LEARNER = "IVLP"


def check_learner_settings(node: CN) -> None:
    """Clear errors for settings the chosen prompt learner cannot take."""
    kind = node.PROMPT_LEARNER
    if kind not in PROMPT_LEARNERS:
        raise ValueError(f"TRAINER.PROMPTSRC.PROMPT_LEARNER is '{kind}'; use one of "
                         f"{', '.join(PROMPT_LEARNERS)}")
    if kind == "IVLP" and node.PROMPT_DEPTH_TEXT < 1:
        raise ValueError("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT must be >= 1 with IVLP prompts "
                         "(the text context is always learned)")
    if kind == "MaPLe" and (node.N_CTX_VISION, node.PROMPT_DEPTH_VISION) != (
            node.N_CTX_TEXT, node.PROMPT_DEPTH_TEXT):
        raise ValueError("MaPLe derives the vision prompts from the text prompts: set "
                         "TRAINER.PROMPTSRC.N_CTX_VISION = N_CTX_TEXT and PROMPT_DEPTH_VISION = "
                         f"PROMPT_DEPTH_TEXT (now {node.N_CTX_VISION} vs {node.N_CTX_TEXT} and "
                         f"{node.PROMPT_DEPTH_VISION} vs {node.PROMPT_DEPTH_TEXT})")


def check_promptsrc(cfg) -> None:
    node, chosen = cfg.TRAINER.PROMPTSRC, cfg.TRAINER.PARTS.PROMPT_LEARNER
    if not chosen:
        check_learner_settings(node)
    elif node.PROMPT_LEARNER not in ("IVLP", chosen):
        raise ValueError(f"TRAINER.PARTS.PROMPT_LEARNER is '{chosen}' and "
                         f"TRAINER.PROMPTSRC.PROMPT_LEARNER '{node.PROMPT_LEARNER}': "
                         "name the learner in one of them")


def drop_frozen_copy(state_dict):
    """The official files also hold a frozen copy of the image encoder
    (``prompt_learner.ZS_image_encoder.*``): dropped."""
    return {k: v for k, v in state_dict.items() if ".ZS_image_encoder." not in k}


PromptSRC = register_method(Method(
    "PromptSRC", node="PROMPTSRC", learner="IVLP", model_name="VLPromptLearner",
    terms=("CE", "PromptSRC"), epoch_hooks=("GPA",),
    learner_nodes={"IVLP": "PROMPTSRC",
                   "MaPLe": ("PROMPTSRC", {"N_CTX": "N_CTX_TEXT",
                                           "PROMPT_DEPTH": "PROMPT_DEPTH_TEXT"}),
                   "CoOp": ("PROMPTSRC", {"N_CTX": "N_CTX_TEXT"})},
    select_learner=lambda cfg: cfg.TRAINER.PROMPTSRC.PROMPT_LEARNER,
    official_keys=drop_frozen_copy, check=check_promptsrc,
    doc="Prompting with self-regulating constraints."), module=__name__)
