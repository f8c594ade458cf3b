"""PromptKD: Unsupervised Prompt Distillation for Vision-Language Models (Li et al., CVPR 2024,
https://arxiv.org/abs/2403.02781).

A teacher (a larger CLIP prompted by PromptSRC, loaded from its official checkpoint) distils
into a student CLIP with deep vision prompts and a feature projector (student width → teacher
width: Linear, BatchNorm, ReLU, Linear; the official 1x1 convolutions), on the training images
of the target dataset without their labels (the transductive protocol). The teacher's class
text features are computed once and kept with the student (the paper's pre-stored class
vectors): the student's logits are ``scale · normalise(projector(f)) · T`` against them, so a
trained student evaluates without the teacher. Loss: ``KD_WEIGHT · T² · KL(softmax(z_t / T) ||
softmax(z_s / T))`` summed over the batch and the classes, divided by their product.

``TRAINER.MODAL base2novel`` (official): train on every class's images; evaluate the base half
of the classes on ``val`` and the new half on ``test`` (each against its half of the teacher's
class vectors). ``cross``: every class, ``val`` = ``test``.

The student's prompts are VPT's (vision layers ``0 .. PROMPT_DEPTH_VISION - 1``, built from
this node) unless ``TRAINER.PARTS.PROMPT_LEARNER`` names another learner: its vision prompts
are used (MaPLe's, coupled to its text prompts, train through the couplings).
"""

from __future__ import annotations

import logging
import math
import os
import re

import torch
import torch.nn.functional as F
from torch import nn

import clip
from engine.checkpoint import load_checkpoint
from engine.config import CN, register_config
from engine.data import DataManager
from engine.data.data_manager import build_data_loader
from engine.data.datasets import Datum
from engine.data.transforms import build_transform
from engine.errors import ConfigError
from engine.optim import build_lr_scheduler, build_optimizer
from engine.precision import Precision
from trainers.base import (
    PromptedCLIP,
    PromptMethod,
    PromptTrainer,
    check_frozen_weights,
    load_clip_model,
    unlabelled_loader,
)
from trainers.ivlp import IVLPPromptLearner, map_vpt_keys
from trainers.learners import learner_entry
from trainers.method import Method, learner_settings, register_method
from trainers.objective import TERM_REGISTRY, Term, build_objective
from trainers.outputs import ForwardOutput, normalize
from trainers.parts import PartContext
from trainers.promptsrc import PromptSRC

logger = logging.getLogger(__name__)

TEACHERS_URL = "https://drive.google.com/drive/folders/1OdQ9WauZmYAzVSUTTw7tIKKChyECIS5B"
MODALS = ("base2novel", "cross")


@register_config
def add_promptkd_config(cfg: CN) -> None:
    cfg.TRAINER.MODAL = "base2novel"  # PromptKD's protocol: base2novel or cross
    cfg.TRAINER.PROMPTKD = CN()
    cfg.TRAINER.PROMPTKD.N_CTX_VISION = 4  # student: context vectors per vision layer
    cfg.TRAINER.PROMPTKD.N_CTX_TEXT = 4  # the teacher's text context (its checkpoint decides)
    cfg.TRAINER.PROMPTKD.CTX_INIT = "a photo of a"  # the teacher's prompt words
    cfg.TRAINER.PROMPTKD.PREC = "fp16"  # fp16, fp32, amp or bf16
    cfg.TRAINER.PROMPTKD.PROMPT_DEPTH_VISION = 9  # student: vision layers with prompts
    cfg.TRAINER.PROMPTKD.PROMPT_DEPTH_TEXT = 9  # the teacher's (its checkpoint decides)
    cfg.TRAINER.PROMPTKD.PROJECT_LAYER = 2  # layers of the feature projector (2, as officially)
    cfg.TRAINER.PROMPTKD.CE_WEIGHT = 0.0  # official key, unused there: the data is unlabelled
    cfg.TRAINER.PROMPTKD.KD_WEIGHT = 1.0  # weight of the distillation loss
    cfg.TRAINER.PROMPTKD.TEMPERATURE = 1.0  # distillation temperature
    cfg.TRAINER.PROMPTKD.TEACHER_NAME = "ViT-L/14"  # the teacher's backbone (a BACKBONE.NAME)
    # ours: the teacher's PromptSRC checkpoint file; "": the official place under TEACHER_DIR
    # (<DATASET.NAME>/VLPromptLearner/model-best.pth.tar, cross: ImageNet-xd/...-20)
    cfg.TRAINER.PROMPTKD.TEACHER_CKPT = ""
    cfg.TRAINER.PROMPTKD.TEACHER_DIR = "teacher_model"  # ours: the official teacher folder


# --------------------------------------------------------------------------- the teacher


def teacher_checkpoint(cfg) -> str:
    node = cfg.TRAINER.PROMPTKD
    if node.TEACHER_CKPT:
        path = node.TEACHER_CKPT
    elif cfg.TRAINER.MODAL == "cross":
        path = os.path.join(node.TEACHER_DIR, "ImageNet-xd", "VLPromptLearner_large",
                            "model.pth.tar-20")
    else:
        path = os.path.join(node.TEACHER_DIR, cfg.DATASET.NAME, "VLPromptLearner",
                            "model-best.pth.tar")
    if not os.path.isfile(path):
        raise ConfigError(f"PromptKD's teacher checkpoint {path} does not exist: download the "
                          f"teacher of {cfg.DATASET.NAME} from {TEACHERS_URL} (or train one with "
                          "PromptSRC on TRAINER.PROMPTKD.TEACHER_NAME) and set "
                          "TRAINER.PROMPTKD.TEACHER_CKPT to the file")
    return path


def teacher_learner_settings(state: dict[str, torch.Tensor]) -> dict:
    """IVLP's settings as the teacher's checkpoint shapes them (the official teacher always
    has 4 + 4 tokens in 9 layers; these are read, not assumed)."""
    text = [k for k in state if re.fullmatch(r"text_prompts\.\d+", k)]
    vision = [k for k in state if re.fullmatch(r"vision_prompts\.\d+", k)]
    if "ctx" not in state or "vision_prompts.0" not in state:
        raise ConfigError("the teacher checkpoint holds no IVLP/PromptSRC prompts (ctx, "
                          "image_encoder.VPT): it is not a PromptSRC teacher")
    return {"n_ctx_text": state["ctx"].shape[0], "depth_text": 1 + len(text),
            "n_ctx_vision": state["vision_prompts.0"].shape[0], "depth_vision": len(vision)}


def load_teacher(cfg, classnames: list[str], device: torch.device,
                 backbone: nn.Module | None = None) -> PromptedCLIP:
    """The frozen teacher: TEACHER_NAME (or ``backbone``) prompted by IVLP prompts from its
    PromptSRC checkpoint (official key names; its frozen weights are checked against the
    teacher backbone)."""
    node = cfg.TRAINER.PROMPTKD
    path = teacher_checkpoint(cfg)
    if backbone is None:
        backbone, _ = clip.load(node.TEACHER_NAME, device="cpu")
    backbone = backbone.float().eval().requires_grad_(False)
    state = load_checkpoint(path)["state_dict"]
    check_frozen_weights(state, backbone, node.TEACHER_NAME)
    mapped = PromptSRC.learner_state_dict(state)
    learner = IVLPPromptLearner(backbone, classnames, ctx_init=node.CTX_INIT,
                                **teacher_learner_settings(mapped))
    learner.load_state_dict(mapped, strict=True)
    learner.requires_grad_(False)
    logger.info("PromptKD: teacher %s from %s", node.TEACHER_NAME, path)
    return PromptedCLIP(backbone, learner).to(device).eval()


@torch.no_grad()
def teacher_outputs(teacher: PromptedCLIP, image: torch.Tensor,
                    text_features: torch.Tensor) -> torch.Tensor:
    """The teacher's logits against its (pre-computed) class text features."""
    schedule = teacher.prompt_learner()
    embeddings = teacher.clip.encode_image(image, schedule.vision)
    return teacher.logits(normalize(embeddings).float(), text_features)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """The official KD term: ``T² · KL(p_t || p_s)`` summed, over ``B · N``."""
    kl = F.kl_div(F.log_softmax(student / temperature, dim=1),
                  F.softmax(teacher / temperature, dim=1), reduction="sum")
    return kl * temperature ** 2 / student.numel()


class Distillation(Term):
    """``kd``: PromptKD's term on the unlabelled batch: the student's logits (``out.logits``,
    against the class vectors) against the teacher's on the same images (``out.images``)."""

    name = "kd"
    batch = "unlabelled"

    def __init__(self, teacher: PromptedCLIP, weight: float, temperature: float) -> None:
        super().__init__(weight)
        self.teacher = [teacher]  # not a submodule: frozen, never saved with the objective
        with torch.no_grad():
            features = teacher.text_side().features.float()
        self.register_buffer("class_vectors", features, persistent=False)
        self.temperature = temperature

    def forward(self, out: ForwardOutput, label: torch.Tensor | None) -> torch.Tensor:
        teacher = teacher_outputs(self.teacher[0], out.images, self.class_vectors)
        return distillation_loss(out.logits.float(), teacher, self.temperature)


@TERM_REGISTRY.register(name="PromptKD", node="PROMPTKD")
def promptkd_terms(ctx: PartContext) -> list[Term]:
    """PromptKD's distillation from ``ctx.teacher`` (a prompted teacher), weighted by
    KD_WEIGHT, at TEMPERATURE."""
    if ctx.teacher is None:
        raise ValueError("PromptKD's term distils from a teacher: the context has none")
    return [Distillation(ctx.teacher, ctx.node.KD_WEIGHT, ctx.node.TEMPERATURE)]


# --------------------------------------------------------------------------- the student


class FeatureProjector(nn.Module):
    """Student width → teacher width: Linear, BatchNorm, ReLU, Linear (``layers.{0,1,3}``)."""

    def __init__(self, width: int, out: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(width, out), nn.BatchNorm1d(out), nn.ReLU(),
                                    nn.Linear(out, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.to(self.layers[0].weight.dtype))


class Student(nn.Module):
    """What trains and is saved: the prompt learner, the projector and the teacher's class
    text features ``[N, D_teacher]`` (normalised; a persistent buffer)."""

    def __init__(self, learner: nn.Module, projector: FeatureProjector, classes: int) -> None:
        super().__init__()
        self.prompt_learner = learner
        self.projector = projector
        out = projector.layers[0].out_features
        self.register_buffer("teacher_text_features", torch.zeros(classes, out))


class DistilledCLIP(nn.Module):
    """The student CLIP: ``forward(image)`` → logits against the stored class vectors of the
    classes in use (``rows``: a slice of them, the base or new half under base2novel)."""

    def __init__(self, clip_model: nn.Module, student: Student) -> None:
        super().__init__()
        self.clip = clip_model
        self.student = student
        self.rows = slice(None)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        schedule = self.student.prompt_learner()
        embeddings = self.clip.encode_image(image, schedule.vision,
                                            prompt_after_ln_pre=schedule.vision_after_ln_pre)
        return normalize(self.student.projector(embeddings).float())

    def logits(self, features: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        text = self.student.teacher_text_features[self.rows if rows is None else rows]
        return self.clip.logit_scale.exp().float() * features @ text.t()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(image))

    def output(self, image: torch.Tensor) -> ForwardOutput:
        """What the objective reads: the logits against every class vector, the images."""
        features = self.features(image)
        text = self.student.teacher_text_features
        return ForwardOutput(logits=self.logits(features, slice(None)), image_features=features,
                             text_features=text, image_embeddings=features, text_embeddings=text,
                             logit_scale=self.clip.logit_scale.exp(), images=image)


# --------------------------------------------------------------------------- the trainer


def base_classes(n: int) -> int:
    """The official base half: the first ``ceil(n / 2)`` labels."""
    return math.ceil(n / 2)


def check_promptkd(cfg) -> None:
    node = cfg.TRAINER.PROMPTKD
    if cfg.TRAINER.MODAL not in MODALS:
        raise ConfigError(f"TRAINER.MODAL is '{cfg.TRAINER.MODAL}'; use base2novel or cross")
    if node.PROJECT_LAYER != 2 or node.CE_WEIGHT:
        raise ConfigError("PromptKD's projector has two layers and its data no labels: "
                          "TRAINER.PROMPTKD.PROJECT_LAYER must be 2 and CE_WEIGHT 0")
    if cfg.TRAINER.MODAL == "base2novel" and cfg.DATASET.SUBSAMPLE_CLASSES != "all":
        raise ConfigError("PromptKD's base2novel protocol trains on every class and "
                          "evaluates the base half (val) and the new half (test) itself: "
                          "leave DATASET.SUBSAMPLE_CLASSES all (or use TRAINER.MODAL cross)")


class DistillationTrainer(PromptTrainer):
    """PromptKD's loop: the teacher's logits on each (unlabelled) training batch, the student
    against the stored class vectors, evaluation on the halves of the classes."""

    # ------------------------------------------------------------------ data
    def build_data_loader(self) -> None:
        dm = DataManager(self.cfg)
        if self.cfg.TRAINER.MODAL == "base2novel":
            dm.val_loader, dm.test_loader = self.half_loaders(dm.dataset.test, dm.num_classes)
        self.use_data_manager(dm)

    def half_loaders(self, test: list[Datum], classes: int):
        """The test images of the base half (labels as they are) and of the new half
        (relabelled from 0), as the official base2novel datasets build them."""
        m = base_classes(classes)
        base = [item for item in test if item.label < m]
        new = [Datum(impath=item.impath, label=item.label - m, domain=item.domain,
                     classname=item.classname) for item in test if item.label >= m]
        tfm, node = build_transform(self.cfg, is_train=False), self.cfg.DATALOADER.TEST
        return tuple(build_data_loader(self.cfg, node.SAMPLER, half, node.BATCH_SIZE, tfm,
                                       is_train=False) for half in (base, new))

    # ------------------------------------------------------------------ model
    def build_model(self) -> None:
        cfg = self.cfg
        self.precision = Precision(self.node.PREC, self.device)
        self.classnames = list(self.dm.dataset.classnames)
        clip_model = load_clip_model(cfg).to(self.device)
        teacher_width = clip.describe(self.node.TEACHER_NAME).arch.embed_dim
        name = self.part_names(cfg).learner
        settings, reads = learner_settings(self.declaration,
                                           PartContext(cfg, clip_model, self.classnames), name)
        learner = learner_entry(name).cls(clip_model, self.classnames, **settings)
        student = Student(learner, FeatureProjector(clip_model.embed_dim, teacher_width),
                          len(self.classnames))
        clip_model.to(dtype=self.precision.param_dtype)
        self.clip_model, self.student = clip_model, student
        self.model = DistilledCLIP(clip_model, student).to(self.device)
        # what checkpoints record and the epoch hooks read (none): the learner and its keys
        self.method = PromptMethod(self.model, student, None, learner_name=name,
                                   learner_config={**reads, "TEACHER_WIDTH": teacher_width})
        self.teacher: PromptedCLIP | None = None
        # the contract's unlabelled images (the training images; labels never read) are the
        # epoch's batches
        self.unlabelled_loader = self.train_loader_x = unlabelled_loader(cfg, self.dm)
        if cfg.MODEL.INIT_WEIGHTS:
            raise ConfigError("PromptKD starts from its teacher: leave MODEL.INIT_WEIGHTS empty")
        self.optim = build_optimizer(student, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.model_name, student, self.optim, self.sched)

    def load_teacher(self) -> None:
        """The teacher, once, and its class text features into the student."""
        if self.teacher is not None:
            return
        self.teacher = load_teacher(self.cfg, self.classnames, self.device)
        self.teacher.clip.to(dtype=self.precision.param_dtype)
        ctx = PartContext(self.cfg, self.clip_model, self.classnames, teacher=self.teacher)
        self.objective = build_objective(self.declaration.terms, ctx).to(self.device)
        self.method.objective = self.objective
        self.student.teacher_text_features.copy_(self.objective["kd"].class_vectors)

    def before_train(self) -> None:
        self.load_teacher()
        super().before_train()

    # ------------------------------------------------------------------ a step
    def compute_losses(self, image, label, unlabelled: torch.Tensor | None = None):
        """The objective on the unlabelled batch (the student's output; the teacher runs in
        the term)."""
        return self.objective(None, None, self.model.output(unlabelled))

    # ------------------------------------------------------------------ evaluation
    def test(self, split: str | None = None) -> float:
        """Under base2novel the base half's class vectors for ``val``, the new half's for
        ``test``; under cross every class."""
        split = split or self.cfg.TEST.SPLIT
        m = base_classes(len(self.classnames))
        if self.cfg.TRAINER.MODAL == "base2novel":
            self.model.rows = slice(None, m) if split == "val" else slice(m, None)
        try:
            return super().test(split)
        finally:
            self.model.rows = slice(None)

    def before_test(self) -> None:
        pass

    def after_test(self) -> None:
        pass

    # ------------------------------------------------------------------ checkpoints
    def map_checkpoint_state_dict(self, name, state_dict):
        """Ours as they are; an official student file (whole model, no class vectors) through
        the official names (its frozen CLIP checked against the student's backbone), with the
        class vectors computed by the teacher."""
        check_frozen_weights(state_dict, self.clip_model, self.cfg.MODEL.BACKBONE.NAME)
        mapped = map_student_keys(state_dict)
        if "teacher_text_features" not in mapped:
            self.load_teacher()
            mapped["teacher_text_features"] = self.student.teacher_text_features.clone()
        return mapped


PromptKD = register_method(Method(
    "PromptKD", node="PROMPTKD", learner="VPT", model_name="VLPromptLearner",
    learner_nodes={"VPT": "PROMPTKD"}, terms=("PromptKD",), needs=("unlabelled", "teacher"),
    check=check_promptkd,
    doc="Unsupervised prompt distillation from a PromptSRC teacher."),
    trainer=DistillationTrainer, module=__name__)


_PROJECTOR = re.compile(r"^VPT_image_trans\.conv1\.(\d)\.(.+)$")


def map_student_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official student keys → ours: the vision prompts inside the image encoder, the
    projector's 1x1 convolutions (their kernels squeezed to matrices); the frozen CLIP and
    ``logit_scale`` dropped. Our own keys pass unchanged."""
    mapped = {}
    for key, value in state_dict.items():
        match = _PROJECTOR.match(key)
        if match:
            if torch.is_tensor(value) and value.dim() == 4:
                value = value.flatten(1)
            mapped[f"projector.layers.{match[1]}.{match[2]}"] = value
        elif key == "image_encoder.VPT" or key.endswith(".VPT_shallow"):
            mapped.update({f"prompt_learner.{k}": v
                           for k, v in map_vpt_keys({key: value}).items()})
        elif not key.startswith(("image_encoder.", "logit_scale")):
            mapped[key] = value
    return mapped
