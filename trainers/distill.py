"""Distillation from a frozen teacher on unlabelled images: the ``"Distill"`` term.

A method that declares ``needs=("unlabelled", "teacher")`` (trainers/method.py) trains on the
unlabelled images of its task (the dataset's ``train_u`` split, else its training images
without their labels) and gets a second frozen backbone, the teacher, in its parts' context
(``ctx.teacher``; by default the backbone ``TRAINER.TEACHER.BACKBONE``, or what the
declaration's ``teacher(cfg)`` builds, e.g. a prompted teacher). This term makes the student's
logits agree with the teacher's zero-shot logits on the same images::

    T² · KL(softmax(z_teacher / T) || softmax(z_student / T))

(batch mean), the teacher's class text features from the hand-crafted prompt of the dataset
(CoOp's template), computed once. Its node is ``TRAINER.DISTILL`` (WEIGHT, T).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import CN, register_config
from trainers.objective import TERM_REGISTRY, Term, hand_crafted_text_features
from trainers.outputs import ForwardOutput, normalize
from trainers.parts import PartContext

logger = logging.getLogger(__name__)


@register_config
def add_distill_config(cfg: CN) -> None:
    cfg.TRAINER.DISTILL = CN()
    cfg.TRAINER.DISTILL.WEIGHT = 1.0  # weight of the distillation term
    cfg.TRAINER.DISTILL.T = 1.0  # temperature of both softmaxes


class TeacherDistillation(Term):
    """``distill``: the teacher's zero-shot logits as soft targets for the student's logits,
    on the unlabelled batch. The teacher is held outside the module tree (it never trains
    and never enters a checkpoint)."""

    name = "distill"
    batch = "unlabelled"

    def __init__(self, teacher: nn.Module, class_text: torch.Tensor, temperature: float = 1.0,
                 weight: float = 1.0) -> None:
        super().__init__(weight)
        if temperature <= 0:
            raise ValueError(f"TRAINER.DISTILL.T must be positive; got {temperature}")
        self._teacher = [teacher]
        self.temperature = temperature
        self.register_buffer("class_text", normalize(class_text.float()), persistent=False)

    @torch.no_grad()
    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        teacher = self._teacher[0]
        features = normalize(teacher.encode_image(images).float())
        return teacher.logit_scale.exp().float() * features @ self.class_text.t()

    def forward(self, out: ForwardOutput, label: torch.Tensor | None) -> torch.Tensor:
        if out.images is None:
            raise RuntimeError("the distillation term needs the batch's images in the output")
        t = self.temperature
        target = F.softmax(self.teacher_logits(out.images) / t, dim=-1)
        student = F.log_softmax(out.logits.float() / t, dim=-1)
        return F.kl_div(student, target, reduction="batchmean") * t * t


@TERM_REGISTRY.register(name="Distill", node="DISTILL")
def distill_terms(ctx: PartContext) -> list[Term]:
    """The teacher's agreement term, its class text features from the dataset's template."""
    if ctx.teacher is None:
        raise ValueError("the Distill term needs a teacher: declare the method with "
                         "needs=(..., 'teacher') and set TRAINER.TEACHER.BACKBONE")
    template = ctx.template()
    logger.info("Distillation: teacher's prompts '%s' (T %s)", template, ctx.node.T)
    class_text = hand_crafted_text_features(ctx.teacher, ctx.classnames, [template])
    return [TeacherDistillation(ctx.teacher, class_text, ctx.node.T, ctx.node.WEIGHT)]
