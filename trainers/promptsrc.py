"""PromptSRC: Self-regulating Prompts (Khattak et al., ICCV 2023,
https://arxiv.org/abs/2307.06948).

IVLP's prompts (by default; MaPLe's or CoOp's with TRAINER.PROMPTSRC.PROMPT_LEARNER, built from
this node's keys; any registered learner with TRAINER.PARTS.PROMPT_LEARNER, built from its own
node) trained with cross-entropy plus the ``"PromptSRC"`` terms of trainers/regularizers.py
(agreement with the frozen CLIP: text features averaged over 60 templates, image features,
logits), and Gaussian prompt aggregation over the epochs: the aggregate becomes the model
after the last epoch, before the last checkpoint is written and the final test runs.

The frozen features come from the same CLIP run without prompts, so there is no second image
encoder; our checkpoints hold what trains and, as an extra, the aggregation so far.
"""

from __future__ import annotations

import logging

from engine import TRAINER_REGISTRY
from engine.config import CN, register_config
from trainers.base import PromptTrainer
from trainers.ivlp import map_vpt_keys
from trainers.maple import map_maple_keys
from trainers.regularizers import GaussianPromptAggregation

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
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 15  # mean (epoch) of the Gaussian prompt aggregation
    cfg.TRAINER.PROMPTSRC.GPA_STD = 1  # standard deviation (epochs) of the aggregation
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


@TRAINER_REGISTRY.register()
class PromptSRC(PromptTrainer):
    """Prompting with self-regulating constraints."""

    config_node = "PROMPTSRC"
    model_name = "VLPromptLearner"
    checkpoint_free_keys = ("PREC", "TEXT_LOSS_WEIGHT", "IMAGE_LOSS_WEIGHT", "GPA_MEAN",
                            "GPA_STD")  # training only: a checkpoint evaluates without them
    term_names = ("CE", "PromptSRC")

    @classmethod
    def default_learner(cls, cfg) -> str:
        return cfg.TRAINER.PROMPTSRC.PROMPT_LEARNER

    @classmethod
    def learner_node(cls, cfg, name: str):
        """PromptSRC's own node for the learner its PROMPT_LEARNER names; a learner named by
        TRAINER.PARTS.PROMPT_LEARNER is built from its own node."""
        if cfg.TRAINER.PARTS.PROMPT_LEARNER:
            return super().learner_node(cfg, name)
        if name == "CoOp":
            logger.info("PromptSRC on CoOp prompts: text layer 0 only (the prompt depths and "
                        "N_CTX_VISION are not used)")
        return cfg.TRAINER.PROMPTSRC

    @classmethod
    def check_cfg(cls, cfg) -> None:
        super().check_cfg(cfg)
        node, chosen = cfg.TRAINER.PROMPTSRC, cfg.TRAINER.PARTS.PROMPT_LEARNER
        if not chosen:
            check_learner_settings(node)
        elif node.PROMPT_LEARNER not in ("IVLP", chosen):
            raise ValueError(f"TRAINER.PARTS.PROMPT_LEARNER is '{chosen}' and "
                             f"TRAINER.PROMPTSRC.PROMPT_LEARNER '{node.PROMPT_LEARNER}': "
                             "name the learner in one of them")

    def build_model(self) -> None:
        super().build_model()
        node = self.cfg.TRAINER.PROMPTSRC
        self.gpa = GaussianPromptAggregation(node.GPA_MEAN, node.GPA_STD, self.cfg.OPTIM.MAX_EPOCH)

    # Gaussian prompt aggregation
    def after_epoch(self) -> None:
        self.aggregate_prompts()
        super().after_epoch()

    def aggregate_prompts(self) -> None:
        """Add this epoch's trained tensors to the aggregate; after the last epoch, the
        aggregate becomes the model (before the last checkpoint and the final test, as
        officially)."""
        trained = self._models[self.model_name]
        self.gpa.accumulate(self.epoch + 1, trained.state_dict())
        if self.gpa.complete:
            logger.info("Using GPA model for final inference...")
            trained.load_state_dict(self.gpa.aggregate)

    def checkpoint_extras(self, name: str) -> dict:
        return {"gpa": self.gpa.state_dict()}

    def load_checkpoint_extras(self, name: str, checkpoint: dict) -> None:
        if "gpa" not in checkpoint:
            raise ValueError("the checkpoint to resume from holds no Gaussian prompt aggregation "
                             "state (not written by this PromptSRC trainer); start the run anew "
                             "in an empty output directory")
        self.gpa.load_state_dict(checkpoint["gpa"])

    @classmethod
    def map_official_state_dict(cls, state_dict):
        """Official PromptSRC files use IVLP's key names; PromptSRC on MaPLe, MaPLe's."""
        return map_vpt_keys(map_maple_keys(state_dict))
