"""DePT: Decoupled Prompt Tuning (Zhang et al., CVPR 2024, https://arxiv.org/abs/2309.07439).

A head on the same features (``"DePT"`` in HEAD_REGISTRY, usable on any learner): channel-wise
transforms (FiLM: ``scale * x + bias``, one for the image and one for the text embeddings) and
a linear classifier over the transformed embeddings, trained on the base classes together with
the prompts (learning rate ``OPTIM.LR * OPTIM.LR_EXP``). The objective becomes ``(1 - w) *
CE(similarity logits) + w * CE(head)``, the head classifying both the image embeddings and the
text embeddings of their labels (``w`` = TRAINER.LINEAR_PROBE.WEIGHT); evaluation on the base
classes fuses ``(1 - w) * similarity + w * head``. The head's node is ``TRAINER.LINEAR_PROBE``
(TYPE, WEIGHT, TEST_TIME_FUSION, FILM, LR_EXP); the official ``TRAINER.FILM.LINEAR_PROBE`` and
``OPTIM.LR_EXP`` set FILM and LR_EXP (aliases). On other classes (new classes; other datasets
than ImageNet's family in cross-dataset runs) the head does not apply and the similarity logits
are the prediction, as in the official code.

The official trainers are the base methods with the head: ExtrasLinearProbeCoOp,
ExtrasLinearProbeCoCoOp, ExtrasLinearProbeKgCoOp (checkpoint folder ``PromptLearner``) and
ExtrasLinearProbeMaPLe (``MultiModalPromptLearner``): each is its base method's declaration
with the head. Their prompts learn at OPTIM.LR (the official BASE_LR_MULT of 1.0);
OPTIM.STAGED_LR is refused and NEW_LAYERS is not read.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from datasets.imagenet import CLASSNAMES_FILE, class_folders, read_classnames
from engine.config import CN, register_alias, register_config
from trainers.cocoop import CoCoOp
from trainers.coop import CoOp
from trainers.kgcoop import KgCoOp
from trainers.maple import MaPLe
from trainers.method import register_method
from trainers.objective import HEAD_REGISTRY, ForwardOutput, Head, PartContext, Term
from trainers.outputs import normalize

logger = logging.getLogger(__name__)

HEAD_TYPES = ("linear", "similarity")


@register_config
def add_dept_config(cfg: CN) -> None:
    cfg.TRAINER.LINEAR_PROBE = CN()
    cfg.TRAINER.LINEAR_PROBE.TYPE = "linear"  # DePT's head: 'linear' or 'similarity'
    cfg.TRAINER.LINEAR_PROBE.WEIGHT = 0.7  # weight of the head in the loss and the fusion
    cfg.TRAINER.LINEAR_PROBE.TEST_TIME_FUSION = True  # False: the head's logits alone
    cfg.TRAINER.LINEAR_PROBE.FILM = True  # channel-wise transforms before the head
    cfg.TRAINER.LINEAR_PROBE.LR_EXP = 6.5  # the head learns at OPTIM.LR * LR_EXP


register_alias("TRAINER.FILM.LINEAR_PROBE", "TRAINER.LINEAR_PROBE.FILM")
register_alias("OPTIM.LR_EXP", "TRAINER.LINEAR_PROBE.LR_EXP")


class FiLM(nn.Module):
    """``scale * x + bias`` per channel (scale ones, bias zeros at the start)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias


def head_applies(cfg) -> bool:
    """The official rule: the head serves the classes it was trained on, the base classes
    (or all of ImageNet's, and its variants', in cross-dataset runs)."""
    subsample = cfg.DATASET.SUBSAMPLE_CLASSES
    return subsample == "base" or (subsample == "all" and "ImageNet" in cfg.DATASET.NAME)


class DecoupledHead(Head):
    """DePT's head over the unnormalised embeddings; it computes in fp32."""

    module_names = ("film_lp_img", "film_lp_text", "linear_probe_proj")

    def __init__(self, dim: int, n_cls: int, weight: float = 0.7, kind: str = "linear",
                 film: bool = True, fusion: bool = True, lr_mult: float = 6.5) -> None:
        super().__init__()
        if kind not in HEAD_TYPES:
            raise ValueError(f"TRAINER.LINEAR_PROBE.TYPE is '{kind}'; use one of "
                             f"{', '.join(HEAD_TYPES)}")
        if not 0 <= weight <= 1:
            raise ValueError(f"TRAINER.LINEAR_PROBE.WEIGHT is {weight}; it must be in [0, 1]")
        if film:
            self.film_lp_img, self.film_lp_text = FiLM(dim), FiLM(dim)
        if kind == "linear":
            self.linear_probe_proj = nn.Linear(dim, n_cls)
        self.kind, self.film, self.fusion = kind, film, fusion
        self.weight, self.similarity_weight, self.lr_mult = weight, 1 - weight, lr_mult

    @classmethod
    def from_context(cls, ctx: PartContext) -> DecoupledHead | None:
        if not head_applies(ctx.cfg):
            logger.info("DePT: the head does not apply to these classes (%s, %s): similarity "
                        "logits only", ctx.cfg.DATASET.NAME, ctx.cfg.DATASET.SUBSAMPLE_CLASSES)
            return None
        probe = ctx.node
        return cls(ctx.clip_model.embed_dim, len(ctx.classnames), weight=probe.WEIGHT,
                   kind=probe.TYPE, film=probe.FILM, fusion=probe.TEST_TIME_FUSION,
                   lr_mult=probe.LR_EXP)

    def transformed(self, out: ForwardOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(image embeddings [B, D], text embeddings [N, D] or [B, N, D]) through FiLM."""
        image, text = out.image_embeddings.float(), out.text_embeddings.float()
        if self.film:
            image, text = self.film_lp_img(image), self.film_lp_text(text)
        return image, text

    def similarity(self, out: ForwardOutput, image: torch.Tensor,
                   text: torch.Tensor) -> torch.Tensor:
        scale = out.logit_scale.float()
        image, text = normalize(image), normalize(text)
        if text.dim() == 3:
            return scale * torch.einsum("bd,bnd->bn", image, text)
        return scale * image @ text.t()

    def training_logits(self, out: ForwardOutput,
                        label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, their labels): the linear head classifies the image embeddings and the
        text embeddings of their labels (2B rows); the similarity head the images."""
        image, text = self.transformed(out)
        if self.kind == "similarity":
            return self.similarity(out, image, text), label
        labelled = text[torch.arange(len(label)), label] if text.dim() == 3 else text[label]
        return self.linear_probe_proj(torch.cat([labelled, image])), torch.cat([label, label])

    def forward(self, out: ForwardOutput) -> torch.Tensor:
        image, text = self.transformed(out)
        probe = (self.similarity(out, image, text) if self.kind == "similarity"
                 else self.linear_probe_proj(image))
        if not self.fusion:
            return probe
        return self.similarity_weight * out.logits.float() + self.weight * probe

    def terms(self) -> list[Term]:
        return [HeadCrossEntropy(self, weight=self.weight)]

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor],
                         dataset: Any) -> dict[str, torch.Tensor]:
        """A classifier trained on all of ImageNet, evaluated on ImageNet-A or -R (200 of its
        classes): its rows of those classes, found as the official code finds them (the
        variant's class folders among the WordNet ids of its copy of classnames.txt)."""
        weight = state_dict.get("linear_probe_proj.weight")
        if weight is None or weight.shape[0] == self.linear_probe_proj.out_features:
            return state_dict
        if not hasattr(dataset, "image_dir"):
            raise ValueError(f"the checkpoint's DePT classifier has {weight.shape[0]} classes "
                             f"and this dataset {self.linear_probe_proj.out_features}: "
                             "evaluate it on the classes it was trained on")
        wnids = read_classnames(os.path.join(dataset.dataset_dir, CLASSNAMES_FILE),
                                "copy ImageNet's classnames.txt next to the dataset")
        present = set(class_folders(dataset.image_dir))
        keep = torch.tensor([wnid in present for wnid in wnids])
        if len(wnids) != weight.shape[0] or int(keep.sum()) != self.linear_probe_proj.out_features:
            raise ValueError(f"cannot match the checkpoint's {weight.shape[0]} DePT classes to "
                             f"the {self.linear_probe_proj.out_features} of {dataset.image_dir}")
        return {**state_dict, "linear_probe_proj.weight": weight[keep],
                "linear_probe_proj.bias": state_dict["linear_probe_proj.bias"][keep]}


class HeadCrossEntropy(Term):
    """``head_ce``: cross-entropy of DePT's head on the training batch."""

    name = "head_ce"

    def __init__(self, head: DecoupledHead, weight: float) -> None:
        super().__init__(weight)
        self._head = [head]  # not a child: the head's parameters belong to the model

    def forward(self, out: ForwardOutput, label: torch.Tensor) -> torch.Tensor:
        logits, labels = self._head[0].training_logits(out, label)
        return F.cross_entropy(logits, labels)


HEAD_REGISTRY.register(DecoupledHead, name="DePT", node="LINEAR_PROBE")


def with_dept_head(base: type, model_name: str) -> type:
    """The trainer ``ExtrasLinearProbe<base>``: ``base``'s declaration with DePT's head, its
    registered model named ``model_name`` (the official checkpoint folder)."""
    name = f"ExtrasLinearProbe{base.declaration.name}"
    return register_method(dataclasses.replace(
        base.declaration, name=name, model_name=model_name, head="DePT",
        doc=f"{base.declaration.name} with DePT's head."), module=__name__)


ExtrasLinearProbeCoOp = with_dept_head(CoOp, "PromptLearner")
ExtrasLinearProbeCoCoOp = with_dept_head(CoCoOp, "PromptLearner")
ExtrasLinearProbeKgCoOp = with_dept_head(KgCoOp, "PromptLearner")
ExtrasLinearProbeMaPLe = with_dept_head(MaPLe, "MultiModalPromptLearner")
