"""PromptSRC: Self-regulating Prompts (Khattak et al., ICCV 2023,
https://arxiv.org/abs/2307.06948).

IVLP's prompts (by default; MaPLe's or CoOp's with TRAINER.PROMPTSRC.PROMPT_LEARNER) trained with
cross-entropy plus agreement with the frozen CLIP (text features averaged over 60 templates,
image features, logits), and Gaussian prompt aggregation over the epochs: the aggregate becomes
the model after the last epoch, before the last checkpoint is written and the final test runs.

The frozen features come from the same CLIP run without prompts, so there is no second image
encoder; our checkpoints hold the learner's tensors and, as an extra, the aggregation so far.
"""

from __future__ import annotations

import logging

import torch.nn.functional as F
from torch import nn

from engine import TRAINER_REGISTRY
from engine.config import CN, register_config
from engine.metrics import compute_accuracy
from trainers.base import PromptTrainer
from trainers.coop import CoOpPromptLearner
from trainers.ivlp import IVLPPromptLearner, map_vpt_keys
from trainers.maple import MaPLePromptLearner, map_maple_keys
from trainers.regularizers import (
    GaussianPromptAggregation,
    SelfRegulatedCLIP,
    frozen_text_features,
    self_regulating_terms,
)

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


def build_learner(node: CN, classnames: list[str], clip_model: nn.Module) -> nn.Module:
    """The prompt learner TRAINER.PROMPTSRC.PROMPT_LEARNER names, from the PromptSRC node."""
    kind = node.PROMPT_LEARNER
    if kind == "IVLP":
        return IVLPPromptLearner(clip_model, classnames, node.N_CTX_TEXT, node.N_CTX_VISION,
                                 node.PROMPT_DEPTH_TEXT, node.PROMPT_DEPTH_VISION, node.CTX_INIT)
    if kind == "MaPLe":
        return MaPLePromptLearner(clip_model, classnames, node.N_CTX_TEXT,
                                  node.PROMPT_DEPTH_TEXT, node.CTX_INIT)
    logger.info("PromptSRC on CoOp prompts: text layer 0 only (the prompt depths and "
                "N_CTX_VISION are not used)")
    return CoOpPromptLearner(clip_model, classnames, node.N_CTX_TEXT, node.CTX_INIT)


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

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        check_learner_settings(cfg.TRAINER.PROMPTSRC)

    def build_prompt_learner(self, cfg, classnames, clip_model):
        learner = build_learner(cfg.TRAINER.PROMPTSRC, classnames, clip_model)
        # the official code computes them once, in fp32, on the device
        logger.info("Computing the frozen text features of %d classes", len(classnames))
        self.frozen_text = frozen_text_features(clip_model.to(self.device), classnames)
        return learner

    def build_prompted_clip(self, clip_model, learner):
        return SelfRegulatedCLIP(clip_model, learner, self.frozen_text)

    def build_model(self) -> None:
        super().build_model()
        node = self.cfg.TRAINER.PROMPTSRC
        self.text_weight, self.image_weight = node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT
        self.gpa = GaussianPromptAggregation(node.GPA_MEAN, node.GPA_STD, self.cfg.OPTIM.MAX_EPOCH)

    def compute_loss(self, image, label):
        prompted = self.model.prompted_outputs(image)
        frozen = self.model.frozen_outputs(image)
        loss_ce = F.cross_entropy(prompted.logits.float(), label)
        terms = self_regulating_terms(prompted, frozen, self.text_weight, self.image_weight)
        figures = {"acc": compute_accuracy(prompted.logits, label)[0].item(),
                   "loss_ce": loss_ce.item(), **terms.figures()}
        return loss_ce + terms.total, figures

    # Gaussian prompt aggregation
    def after_epoch(self) -> None:
        self.aggregate_prompts()
        super().after_epoch()

    def aggregate_prompts(self) -> None:
        """Add this epoch's prompts to the aggregate; after the last epoch, the aggregate
        becomes the model (before the last checkpoint and the final test, as officially)."""
        learner = self.model.prompt_learner
        self.gpa.accumulate(self.epoch + 1, learner.state_dict())
        if self.gpa.complete:
            logger.info("Using GPA model for final inference...")
            learner.load_state_dict(self.gpa.aggregate)

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
