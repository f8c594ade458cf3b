"""What every prompt method shares: the prompt interface, the prompted CLIP, the loop.

A prompt method is a *schedule of tokens* handed to a frozen CLIP (clip/model.py): the class
prompts' token embeddings, and per-layer prompt tensors for the text and the vision tower. A
method is a declaration of parts (trainers/method.py): a **prompt learner**
(trainers/learners.py: an ``nn.Module`` whose ``forward()`` returns a :class:`PromptSchedule`,
or ``forward(image_features)`` for a conditional learner), **objective terms**, **step
hooks**, **epoch hooks** and a **head** (trainers/objective.py, trainers/parts.py).

:func:`build_prompted_model` builds the prompted CLIP from (backbone, learner, class names)
without a trainer or a dataset. :class:`PromptTrainer` is the one loop every declaration
runs in: it loads CLIP, applies the precision policy, builds the declaration, runs the
objective through the step hooks and the epoch hooks after each epoch, caches the class text
features during evaluation, and loads official checkpoints through the learner's key map.

Only what trains (the learner, or the learner and a head) is registered with the engine, so
the optimizer and our checkpoints hold only that; the frozen CLIP is rebuilt from its weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

import clip
from engine import TrainerX
from engine.config import CN, get_cfg_default, register_config
from engine.errors import ConfigError
from engine.optim import build_lr_scheduler, build_optimizer
from engine.precision import Precision
from engine.utils import load_pretrained_weights
from trainers.feature_cache import image_embeddings, text_feature_cache, use_feature_cache
from trainers.learners import build_prompt_learner, official_learner_keys
from trainers.method import (
    Method,
    PartNames,
    assemble,
    build_learner,
    check_parts,
    method_parts,
    official_state_map,
    split_trained_parts,
    trainer_node,
)
from trainers.objective import Head, Losses, Objective, StepHook, run_backward
from trainers.outputs import ForwardOutput, normalize
from trainers.parts import EpochHook, PartContext

__all__ = ["PromptSchedule", "ClassTokens", "PromptedCLIP", "PromptTrainer", "PromptMethod",
           "TrainedParts", "TextSide", "build_prompted_model", "load_clip_model", "embed_words",
           "word_context", "random_context", "prompt_text", "normalize", "ForwardOutput"]

logger = logging.getLogger(__name__)

@register_config
def add_parts_config(cfg: CN) -> None:
    cfg.TRAINER.PARTS = CN()
    # ours, for any trainer: a registered prompt learner (trainers/learners.py) built from its
    # own node (e.g. "MaPLe" from TRAINER.MAPLE); "": the trainer's own learner
    cfg.TRAINER.PARTS.PROMPT_LEARNER = ""
    cfg.TRAINER.PARTS.TERMS = []  # objective terms added to the trainer's, e.g. ["KgCoOp"]
    cfg.TRAINER.PARTS.STEP_HOOKS = []  # gradient rules added to the trainer's, e.g. ["ProGrad"]
    cfg.TRAINER.PARTS.HEAD = ""  # a head on the features, e.g. "DePT"; "": the trainer's
    # the classification loss of the "CE" term: "ce" (softmax cross-entropy over the classes,
    # every paper's) or "sigmoid" (SigLIP's pairwise sigmoid loss over image-class pairs)
    cfg.TRAINER.PARTS.LOSS = "ce"
    cfg.TRAINER.PARTS.EPOCH_HOOKS = []  # rules after each epoch added, e.g. ["GPA"]
    cfg.TRAINER.TEACHER = CN()  # the frozen teacher of a distillation method
    cfg.TRAINER.TEACHER.BACKBONE = ""  # its backbone: a name (ViT-L/14) or a weight file
    cfg.TRAINER.TEACHER.ARCH = ""  # the architecture of a weight file, e.g. open_clip:ViT-L-14
    cfg.TRAINER.ACT_CKPT = 1  # activation checkpointing segments of the text tower (1: off)


@dataclass
class PromptSchedule:
    """The tokens a prompt learner hands to CLIP.

    ``text_embeddings`` ``[N, L, d]`` and ``eot`` ``[N]``: one prompt per class (or per class
    and image, flattened). ``text[i]`` / ``vision[i]``: the prompt tensor of layer ``i`` of each
    tower (clip/model.py explains the slots); ``None`` where a layer has none.
    ``vision_after_ln_pre``: the layer-0 vision prompts join after ``ln_pre`` (MVLPT's).
    ``shared_prefix``: how many leading text tokens are the same function of the parameters in
    every class prompt (where the class-dependent part starts), for a layout whose embeddings
    carry gradients; ``None``: the text tower finds it where that is safe (clip/prefix.py).
    """

    text_embeddings: torch.Tensor
    eot: torch.Tensor
    text: Sequence[torch.Tensor | None] | None = None
    vision: Sequence[torch.Tensor | None] | None = None
    vision_after_ln_pre: bool = False
    shared_prefix: int | None = None


def prompt_text(prefix: str, classname: str) -> str:
    """The official prompt: the prefix words, the class name (underscores as spaces), a period."""
    return f"{prefix} {classname.replace('_', ' ')}."


class ClassTokens(nn.Module):
    """Frozen token ids and embeddings of one prompt per class (non-persistent buffers, rebuilt
    from the current class names, so checkpoints never carry them)."""

    def __init__(self, clip_model: nn.Module, prompts: Sequence[str]) -> None:
        super().__init__()
        tokenizer = clip_model.tokenizer
        tokens = tokenizer(list(prompts))
        device = clip_model.token_embedding.weight.device
        with torch.no_grad():
            embeddings = clip_model.token_embedding(tokens.to(device))
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("eot", tokenizer.eot_positions(tokens), persistent=False)
        self.register_buffer("embeddings", embeddings.float(), persistent=False)

    def __len__(self) -> int:
        return self.tokens.shape[0]


def embed_words(clip_model: nn.Module, words: str, n: int) -> torch.Tensor:
    """The token embeddings of the first ``n`` tokens of ``words`` (after start-of-text): the
    official initialisation of a context from CTX_INIT."""
    tokens = clip_model.tokenizer(words)
    with torch.no_grad():
        embedding = clip_model.token_embedding(tokens.to(clip_model.token_embedding.weight.device))
    return embedding[0, 1:1 + n].float().clone()


def random_context(*shape: int) -> torch.Tensor:
    """Context vectors drawn from N(0, 0.02²), as every official prompt learner does."""
    return nn.init.normal_(torch.empty(*shape), std=0.02)


def word_context(clip_model: nn.Module, n_ctx: int, ctx_init: str,
                 classes: int | None = None) -> tuple[torch.Tensor, str]:
    """CoOp's context: the embeddings of all the words of CTX_INIT (their count replaces
    N_CTX), else ``n_ctx`` random vectors (one set per class when ``classes`` is given) behind
    an "X X ..." prompt. Returns the context and the prompt prefix."""
    if ctx_init:
        ctx_init = ctx_init.replace("_", " ")
        ctx = embed_words(clip_model, ctx_init, len(ctx_init.split(" ")))
        prefix = ctx_init
    else:
        shape = (n_ctx, clip_model.text_width) if classes is None else (
            classes, n_ctx, clip_model.text_width)
        ctx = random_context(*shape)
        prefix = " ".join(["X"] * n_ctx)
    logger.info('Initial context: "%s"; number of context words (tokens): %d', prefix,
                ctx.shape[-2])
    return ctx, prefix


class TextSide(NamedTuple):
    """The class side of one forward pass: the schedule (``None`` for a conditional learner),
    the text tower's outputs and the same normalised."""

    schedule: PromptSchedule | None
    embeddings: torch.Tensor
    features: torch.Tensor


class PromptedCLIP(nn.Module):
    """A frozen CLIP driven by a prompt learner (and optionally a head): ``forward(image)``
    returns the logits, :meth:`output` everything an objective reads.

    Inside :meth:`caching_text_features` (the trainer's evaluation), the class text features do
    not depend on the image, so they are computed once instead of for every batch.
    """

    cached_images = "schedule"  # trainers/feature_cache.py: how encode() uses the image tower

    def __init__(self, clip_model: nn.Module, prompt_learner: nn.Module,
                 head: Head | None = None) -> None:
        super().__init__()
        self.clip = clip_model
        self.prompt_learner = prompt_learner
        self.head = head
        self._caching = False
        self._cache: TextSide | None = None

    def cache_text_features(self, enabled: bool) -> None:
        """Compute the class text features once and reuse them until caching is switched off
        (the trainer switches it on for the length of one evaluation)."""
        self._caching, self._cache = enabled, None

    @contextlib.contextmanager
    def caching_text_features(self) -> Iterator[None]:
        self.cache_text_features(True)
        try:
            yield
        finally:
            self.cache_text_features(False)

    def encode_schedule_text(self, schedule: PromptSchedule) -> torch.Tensor:
        """The text tower's outputs (unnormalised) for the schedule's prompts."""
        return self.clip.encode_text_embeddings(schedule.text_embeddings, schedule.eot,
                                                schedule.text, schedule.shared_prefix)

    def text_side(self) -> TextSide:
        if self._caching and self._cache is not None:
            return self._cache
        schedule = self.prompt_learner()
        embeddings = self.encode_schedule_text(schedule)
        result = TextSide(schedule, embeddings, normalize(embeddings))
        if self._caching:
            self._cache = result
        return result

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, TextSide]:
        """(image embeddings [B, D] before normalisation, the class side)."""
        text = self.text_side()
        schedule = text.schedule
        return image_embeddings(self.clip, image, schedule.vision,
                                schedule.vision_after_ln_pre), text

    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised image features [B, D], normalised class text features [N, D])."""
        image_embeddings, text = self.encode(image)
        return normalize(image_embeddings), text.features

    def output(self, image: torch.Tensor, frozen: bool = False) -> ForwardOutput:
        """The forward output; with ``frozen``, also the frozen model's image features (those
        of this pass when the image tower had no prompts: the same computation)."""
        image_embeddings, text = self.encode(image)
        image_features = normalize(image_embeddings)
        frozen_features = None
        if frozen:
            unprompted = text.schedule is None or text.schedule.vision is None
            frozen_features = (image_features.detach() if unprompted
                               else self.frozen_image_features(image))
        return ForwardOutput(
            logits=self.logits(image_features, text.features), image_features=image_features,
            text_features=text.features, image_embeddings=image_embeddings,
            text_embeddings=text.embeddings, logit_scale=self.clip.logit_scale.exp(),
            frozen_image_features=frozen_features, images=image)

    @torch.no_grad()
    def frozen_image_features(self, image: torch.Tensor) -> torch.Tensor:
        """Normalised image features of the CLIP without prompts (no gradient)."""
        return normalize(self.clip.encode_image(image))

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """The backbone's own logits ``[B, N]`` (text ``[N, D]``, or ``[B, N, D]`` per image):
        scaled cosine similarities, plus SigLIP's learned bias (``CLIP.logits``)."""
        return self.clip.logits(image_features, text_features)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            image_features, text_features = self.features(image)
            return self.logits(image_features, text_features)
        return self.head(self.output(image))


def build_prompted_model(backbone: nn.Module, learner: str | nn.Module,
                         classnames: Sequence[str] | None = None, head: Head | None = None,
                         **settings: Any) -> PromptedCLIP:
    """The prompted CLIP of ``learner`` (a module, or a registered name built for
    ``classnames`` with keyword ``settings``) on ``backbone``: the learner's
    ``prompted_model`` class (:class:`PromptedCLIP` unless the learner names another)."""
    if isinstance(learner, str):
        if classnames is None:
            raise ValueError(f"building the learner '{learner}' needs the class names")
        learner = build_prompt_learner(learner, backbone, classnames, **settings)
    elif settings:
        raise ValueError(f"settings {sorted(settings)} are for building a learner by name; "
                         "this one is built already")
    model_cls = getattr(learner, "prompted_model", PromptedCLIP)
    return model_cls(backbone, learner, head=head)


def load_clip_model(cfg) -> nn.Module:
    """The frozen CLIP named by MODEL.BACKBONE.NAME (and MODEL.BACKBONE.ARCH), in fp32 on the
    CPU, after checking that the input configuration is what the backbone needs."""
    model, _ = clip.load(cfg.MODEL.BACKBONE.NAME, device="cpu",
                         arch=cfg.MODEL.BACKBONE.ARCH or None)
    model = model.float().eval()
    model.requires_grad_(False)
    check_input(cfg, model.backbone)
    return model


def check_input(cfg, backbone: clip.Backbone) -> None:
    """INPUT.SIZE must be the backbone's, and so must PIXEL_MEAN/STD when INPUT.TRANSFORMS
    normalises and they were set (Dassl's ImageNet defaults left as they are only get a
    warning, as does a resize other than the backbone's): an error says which values the
    backbone needs."""
    pre = backbone.preprocess
    normalizes = "normalize" in cfg.INPUT.TRANSFORMS
    defaults = get_cfg_default().INPUT
    explicit = normalizes and (list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD)) != (
        list(defaults.PIXEL_MEAN), list(defaults.PIXEL_STD))
    mean, std = (cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD) if explicit else (pre.mean, pre.std)
    problems = backbone.input_mismatches(cfg.INPUT.SIZE, mean, std)
    if problems:
        raise ValueError("the input configuration does not fit the backbone: "
                         + "; ".join(problems) + " (set these keys in the config file or on "
                         "the command line)")
    if normalizes and not explicit and backbone.input_mismatches(
            cfg.INPUT.SIZE, cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD):
        logger.warning("INPUT.PIXEL_MEAN/STD are Dassl's defaults (ImageNet's); %s was trained "
                       "with mean %s, std %s: set them", backbone.name, list(pre.mean),
                       list(pre.std))
    if not normalizes:
        logger.warning("INPUT.TRANSFORMS has no 'normalize': images reach %s unnormalised (it "
                       "was trained with mean %s, std %s)", backbone.name, list(pre.mean),
                       list(pre.std))
    resize = cfg.INPUT.get("RESIZE_MODE", "shortest")
    if cfg.INPUT.INTERPOLATION != pre.interpolation or pre.resize_mode != resize:
        logger.warning("%s was trained on images resized by %s (%s); the data loaders resize "
                       "with INPUT.INTERPOLATION %s (INPUT.RESIZE_MODE %s)", backbone.name,
                       pre.interpolation, pre.resize_mode, cfg.INPUT.INTERPOLATION, resize)


# --------------------------------------------------------------------------- a method's parts


class TrainedParts(nn.Module):
    """What trains when a method has a head: ``prompt_learner`` and the head's child modules
    under their own names (DePT's checkpoints name them so). ``head`` may be ``None`` (the
    head does not apply to these classes); the learner's keys stay ``prompt_learner.*``.
    ``module_names`` are the names the head kind uses (to drop them from a checkpoint when
    the head is absent)."""

    def __init__(self, learner: nn.Module, head: Head | None,
                 module_names: Sequence[str] = ()) -> None:
        super().__init__()
        self.prompt_learner = learner
        self.module_names = tuple(module_names)
        self.head_names: tuple[str, ...] = ()
        if head is not None:
            if next(head.parameters(recurse=False), None) is not None:
                raise ValueError(f"{type(head).__name__} holds parameters of its own; a head "
                                 "keeps them in child modules")
            for name, child in head.named_children():
                self.add_module(name, child)
            self.head_names = tuple(name for name, _ in head.named_children())


@dataclass(eq=False)
class PromptMethod:
    """A method's parts put together (trainers/method.py's :func:`~trainers.method.assemble`,
    usable without a trainer or a dataset): the prompted model, what trains, the objective,
    the step and epoch hooks, and the learner's name and resolved settings (what shaped its
    tensors)."""

    model: PromptedCLIP
    trained: nn.Module
    objective: Objective
    step_hooks: tuple[StepHook, ...] = ()
    epoch_hooks: tuple[EpochHook, ...] = ()
    learner_name: str = ""
    learner_settings: dict[str, Any] = field(default_factory=dict)
    learner_config: dict[str, Any] = field(default_factory=dict)  # the config keys read

    @property
    def learner(self) -> nn.Module:
        return self.model.prompt_learner

    def losses(self, image: torch.Tensor | None, label: torch.Tensor | None,
               unlabelled: torch.Tensor | None = None) -> Losses:
        """The objective on one batch (one forward pass of the prompted model per batch:
        the labelled one and, for a method that reads unlabelled images, those)."""
        frozen = self.objective.needs_frozen_image
        out = None if image is None else self.model.output(image, frozen=frozen)
        extra = None if unlabelled is None else self.model.output(unlabelled, frozen=frozen)
        return self.objective(out, label, extra)

    def trained_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.trained.parameters() if p.requires_grad]

    def param_groups(self, lr: float) -> list[dict] | None:
        """Optimizer groups: the learner at ``lr``, a head at ``lr * head.lr_mult``; ``None``
        without a head (the optimizer then takes the learner's parameters as they are)."""
        head = self.model.head
        if head is None:
            return None
        learner = [p for p in self.learner.parameters() if p.requires_grad]
        return [{"params": learner}, {"params": list(head.parameters()), "lr": lr * head.lr_mult}]

    def backward(self, losses: Losses, backward: Callable[[torch.Tensor], None]) -> None:
        """``backward(losses.total)`` through the step hooks."""
        run_backward(self.step_hooks, losses, self.trained_parameters(), backward)


def load_teacher(cfg) -> nn.Module:
    """The frozen teacher backbone TRAINER.TEACHER.BACKBONE (and ARCH), fp32 on the CPU."""
    name = cfg.TRAINER.TEACHER.BACKBONE
    if not name:
        raise ConfigError(f"{cfg.TRAINER.NAME} distils from a teacher: set "
                          "TRAINER.TEACHER.BACKBONE (a backbone name or weight file)")
    model, _ = clip.load(name, device="cpu", arch=cfg.TRAINER.TEACHER.ARCH or None)
    return model.float().eval().requires_grad_(False)


def unlabelled_loader(cfg, dm) -> Any:
    """The unlabelled training images: the dataset's ``train_u`` split when it has one, else
    its ``train_x`` images (their labels are not read). DATALOADER.TRAIN_U sets the batch
    size and sampler unless SAME_AS_X (then TRAIN_X's)."""
    from engine.data.data_manager import build_data_loader
    from engine.data.transforms import build_transform

    if dm.train_loader_u is not None:
        return dm.train_loader_u
    node = cfg.DATALOADER.TRAIN_X if cfg.DATALOADER.TRAIN_U.SAME_AS_X else cfg.DATALOADER.TRAIN_U
    return build_data_loader(cfg, sampler_type=node.SAMPLER, data_source=dm.dataset.train_x,
                             batch_size=node.BATCH_SIZE, tfm=build_transform(cfg, is_train=True),
                             is_train=True)


# the class attributes that declared a method before declarations (see __init_subclass__)
_LEGACY_ATTRIBUTES = {"config_node": "node", "learner_name": "learner", "term_names": "terms",
                      "step_hook_names": "step_hooks", "head_name": "head",
                      "model_name": "model_name"}


class PromptTrainer(TrainerX):
    """The loop of every prompt method: :attr:`declaration` (a
    :class:`~trainers.method.Method`; trainers/method.py's ``register_method`` makes the
    subclass) says what to build, :func:`~trainers.method.assemble` builds it (``self.method``,
    a :class:`PromptMethod`). This class loads CLIP, applies the
    precision policy, runs the objective through the step hooks, the epoch hooks after each
    epoch, caches the class text features during evaluation, and loads checkpoints through
    the learner's official key map."""

    declaration: Method | None = None
    model_name = "prompt_learner"  # the checkpoint folder: the declaration's model_name
    precisions = ("fp16", "fp32", "amp", "bf16")
    cache_eval_text_features = True  # the benchmark switches it off to measure the gain

    @property
    def node(self):
        return trainer_node(self.cfg, self.declaration.node)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that declares its method with the class attributes of earlier versions
        (``config_node``, ``learner_name``, ``term_names``, ``step_hook_names``,
        ``head_name``, ``model_name``) gets the declaration they describe."""
        super().__init_subclass__(**kwargs)
        given = {field: cls.__dict__[attr] for attr, field in _LEGACY_ATTRIBUTES.items()
                 if attr in cls.__dict__}
        if "declaration" in cls.__dict__ or not given:
            return
        if cls.declaration is None:
            given.setdefault("learner", "")
            cls.declaration = Method(cls.__name__, **{"node": "", **given})
        else:
            cls.declaration = dataclasses.replace(cls.declaration, name=cls.__name__, **given)

    # ------------------------------------------------------------------ the parts
    @classmethod
    def part_names(cls, cfg) -> PartNames:
        return method_parts(cls.declaration, cfg)

    @classmethod
    def make_prompt_learner(cls, cfg, classnames: Sequence[str],
                            clip_model: nn.Module) -> nn.Module:
        return build_learner(cls.declaration, PartContext(cfg, clip_model, list(classnames)))[0]

    @classmethod
    def assemble(cls, cfg, clip_model: nn.Module, classnames: Sequence[str],
                 learner: nn.Module | None = None, param_dtype: torch.dtype | None = None,
                 tasks: Sequence | None = None, **context: Any) -> PromptMethod:
        """:func:`trainers.method.assemble` of this trainer's declaration."""
        return assemble(cls.declaration, cfg, clip_model, classnames, learner, param_dtype, tasks,
                        **context)

    @classmethod
    def check_cfg(cls, cfg) -> None:
        node = trainer_node(cfg, cls.declaration.node)
        if node.PREC not in cls.precisions:
            raise ConfigError(f"TRAINER.{cls.declaration.node}.PREC is '{node.PREC}'; "
                              f"use one of {', '.join(cls.precisions)}")
        if cfg.TRAINER.ACT_CKPT < 1:
            raise ConfigError(f"TRAINER.ACT_CKPT (--act-ckpt) must be >= 1 (1: off); got "
                              f"{cfg.TRAINER.ACT_CKPT}")
        check_parts(cls.declaration, cfg)

    def build_model(self) -> None:
        cfg, needs = self.cfg, self.declaration.needs
        self.precision = Precision(self.node.PREC, self.device)
        classnames = list(self.dm.dataset.classnames)
        logger.info("Loading CLIP (backbone: %s)", cfg.MODEL.BACKBONE.NAME)
        clip_model = load_clip_model(cfg)
        teacher = None
        if "teacher" in needs:
            teacher = (self.declaration.teacher or load_teacher)(cfg).to(self.device)
        self.unlabelled_loader = unlabelled_loader(cfg, self.dm) if "unlabelled" in needs \
            else None
        if "labelled" not in needs:  # the epoch runs over the unlabelled images
            self.train_loader_x = self.unlabelled_loader
        with text_feature_cache(cfg):  # frozen text features from FEATURE_CACHE.DIR
            self.method = self.assemble(
                cfg, clip_model.to(self.device), classnames, None, self.precision.param_dtype,
                tasks=self.dm.tasks, teacher=teacher, unlabelled=self.unlabelled_loader)
        self.clip_model, self.model = clip_model, self.method.model
        self.objective = self.method.objective
        trained = self.method.trained
        names = self.part_names(cfg)
        logger.info("Objective: %s; step hooks: %s; epoch hooks: %s; head: %s",
                    self.objective.names, list(names.step_hooks) or "none",
                    list(names.epoch_hooks) or "none", names.head or "none")
        logger.info("Parameters to be updated: %s",
                    sorted(n for n, p in trained.named_parameters() if p.requires_grad))
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(trained, cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)
        self.objective.to(self.device)
        self.optim = build_optimizer(trained, cfg.OPTIM,
                                     self.method.param_groups(cfg.OPTIM.LR))
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.model_name, trained, self.optim, self.sched)
        self.image_cache = use_feature_cache(self)  # FEATURE_CACHE.DIR

    # ------------------------------------------------------------------ a training step
    def compute_losses(self, image: torch.Tensor | None, label: torch.Tensor | None,
                       unlabelled: torch.Tensor | None = None) -> Losses:
        """The objective's terms on one batch."""
        return self.method.losses(image, label, unlabelled)

    def compute_loss(self, image: torch.Tensor,
                     label: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of one labelled batch and the figures to log."""
        losses = self.compute_losses(image, label)
        return losses.total, losses.figures()

    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch_images(batch), batch["label"].to(self.device)

    def parse_batch_test(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        # its own, as Dassl's: a trainer's parse_batch_train may return training views
        return self.batch_images(batch), batch["label"].to(self.device)

    def batch_images(self, batch: dict):
        """The batch's images, or their cached features (trainers/feature_cache.py)."""
        cache = getattr(self, "image_cache", None)
        return batch["img"].to(self.device) if cache is None else cache.images(batch)

    def next_unlabelled(self) -> torch.Tensor:
        """The next unlabelled batch's images (the loader restarts when it runs out)."""
        batch = next(self._unlabelled, None) if hasattr(self, "_unlabelled") else None
        if batch is None:
            self._unlabelled = iter(self.unlabelled_loader)
            batch = next(self._unlabelled)
        return batch["img"].to(self.device)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        needs = self.declaration.needs
        if "labelled" in needs:
            image, label = self.parse_batch_train(batch)
            unlabelled = self.next_unlabelled() if "unlabelled" in needs else None
        else:  # the epoch's loader is the unlabelled one
            image, label, unlabelled = None, None, batch["img"].to(self.device)
        with self.precision.autocast():
            losses = (self.compute_losses(image, label) if unlabelled is None
                      else self.compute_losses(image, label, unlabelled))
        self.model_zero_grad()
        self.method.backward(losses, self.model_backward)
        self.model_update()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": losses.total.item(), **losses.figures()}

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(input).float()

    def before_test(self) -> None:
        self.model.cache_text_features(self.cache_eval_text_features)

    def after_test(self) -> None:
        self.model.cache_text_features(False)
        if getattr(self, "image_cache", None) is not None:
            self.image_cache.log()

    # ------------------------------------------------------------------ epoch hooks
    def after_epoch(self) -> None:
        """The epoch hooks (before the epoch's checkpoint is written), then the engine's."""
        trained = self._models[self.model_name]
        for hook in self.method.epoch_hooks:
            hook.after_epoch(self.epoch + 1, self.max_epoch, trained)
        super().after_epoch()

    def checkpoint_extras(self, name: str) -> dict:
        hooks = self.method.epoch_hooks
        return {"epoch_hooks": {h.name: h.state_dict() for h in hooks}} if hooks else {}

    def load_checkpoint_extras(self, name: str, checkpoint: dict) -> None:
        saved = checkpoint.get("epoch_hooks", {})
        for hook in self.method.epoch_hooks:
            if hook.name not in saved:
                raise ValueError(f"the checkpoint to resume from holds no state of the epoch "
                                 f"hook '{hook.name}' (it was written by a run without it); "
                                 "start the run anew in an empty output directory")
            hook.load_state_dict(saved[hook.name])

    # ------------------------------------------------------------------ checkpoints
    def backbone_identity(self) -> dict[str, str]:
        """The backbone's canonical name and the fingerprint of its weights (clip's
        ``CLIP.identity``), taken once: checkpoints record it, loading compares it."""
        if getattr(self, "_backbone_identity", None) is None:
            identity = self.clip_model.identity()
            self._backbone_identity = {"name": identity["backbone"],
                                       "fingerprint": identity["fingerprint"]}
        return self._backbone_identity

    def checkpoint_meta(self, name: str) -> dict:
        """Engine hook: also the backbone, and what shaped the learned tensors: the learner
        and the config keys its settings were resolved from (loss weights, temperatures and
        schedules are not among them, so they may change between training and evaluation)."""
        config = {"learner": self.method.learner_name, **self.method.learner_config}
        return {**super().checkpoint_meta(name), "backbone": self.backbone_identity(),
                "config": config}

    def map_checkpoint_state_dict(self, name: str,
                                  state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Engine hook: check any frozen CLIP weights the file holds against the loaded
        backbone, then keep the trained tensors under our key names."""
        check_frozen_weights(state_dict, self.clip_model, self.cfg.MODEL.BACKBONE.NAME)
        trained, learner = self.method.trained, self.method.learner_name
        if not isinstance(trained, TrainedParts):
            return self.learner_state_dict(state_dict, learner)
        mapped = self.trained_parts_state_dict(state_dict, trained, learner)
        head = self.model.head
        return mapped if head is None else head.adapt_state_dict(mapped, self.dm.dataset)

    @classmethod
    def checked_learner_state_dict(cls, state_dict: dict[str, torch.Tensor],
                                   clip_model: nn.Module,
                                   backbone: str = "") -> dict[str, torch.Tensor]:
        """:meth:`learner_state_dict` after checking the file's frozen CLIP weights against
        ``clip_model`` (what loading a checkpoint of a method without a head does)."""
        check_frozen_weights(state_dict, clip_model, backbone)
        return cls.learner_state_dict(state_dict)

    @classmethod
    def learner_state_dict(cls, state_dict: dict[str, torch.Tensor],
                           learner: str = "") -> dict[str, torch.Tensor]:
        """The learner's state dict from one of our checkpoints or an official one, through
        the method's and the learner's official key maps (default: the declared learner)."""
        if learner and learner != cls.declaration.learner:
            return official_state_map(cls.declaration, learner)(state_dict)
        return official_learner_keys(cls.map_official_state_dict(state_dict))

    @classmethod
    def map_official_state_dict(cls, state_dict: dict[str, torch.Tensor]
                                ) -> dict[str, torch.Tensor]:
        """Official key names → the declared learner's (the method's map, then the
        learner's)."""
        return official_state_map(cls.declaration, cls.declaration.learner)(state_dict)

    @classmethod
    def trained_parts_state_dict(cls, state_dict: dict[str, torch.Tensor],
                                 trained: TrainedParts,
                                 learner: str = "") -> dict[str, torch.Tensor]:
        """:func:`trainers.method.split_trained_parts` through :meth:`learner_state_dict`."""
        return split_trained_parts(state_dict, trained,
                                   lambda own: cls.learner_state_dict(own, learner))


def frozen_reference(clip_model: nn.Module) -> dict[str, torch.Tensor]:
    """Official full-model key name → the loaded backbone's tensor, for the checks."""
    visual = clip_model.visual.state_dict()
    reference = {f"image_encoder.{k}": v for k, v in visual.items()}
    for key, value in clip_model.state_dict().items():
        if not key.startswith("visual."):
            reference[f"text_encoder.{key}" if key.startswith((
                "transformer.", "ln_final.", "text_projection", "positional_embedding"))
                else key] = value
    return reference


def check_frozen_weights(state_dict: dict[str, torch.Tensor], clip_model: nn.Module,
                         backbone: str = "") -> None:
    """Official whole-model files hold the frozen CLIP too: when those weights (the file's
    keys that name a tensor of the loaded backbone) differ from the loaded backbone's, the
    checkpoint was trained on another one."""
    reference = frozen_reference(clip_model)
    mismatched = []
    for key, value in state_dict.items():
        ref = reference.get(key)
        if ref is None:
            continue
        if ref.shape != value.shape or not torch.allclose(
                ref.float().cpu(), value.float().cpu(), atol=1e-3, rtol=1e-2):
            mismatched.append(key)
    if mismatched:
        raise ValueError(
            f"the checkpoint's frozen CLIP weights differ from the loaded backbone "
            f"{backbone} ({len(mismatched)} tensors, e.g. {mismatched[:3]}): it was trained "
            "with another backbone; set MODEL.BACKBONE.NAME to the one it was trained with")
