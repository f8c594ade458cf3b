"""What every prompt-learning trainer shares: a method is parts.

A prompt method is a *schedule of tokens* handed to a frozen CLIP (clip/model.py): the class
prompts' token embeddings, and per-layer prompt tensors for the text and the vision tower. A
method is assembled from parts, each in a registry of its own:

* a **prompt learner** (trainers/learners.py): an ``nn.Module`` whose ``forward()`` returns a
  :class:`PromptSchedule` (or ``forward(image_features)`` for a conditional learner);
* an **objective** (trainers/objective.py): named terms over one :class:`ForwardOutput`;
* optional **step hooks** (gradient rules) and a **head** on the features.

:func:`build_prompted_model` builds the prompted CLIP from (backbone, learner, class names)
without a trainer or a dataset. :class:`PromptTrainer` declares a method's parts by name
(class attributes), reads more from ``TRAINER.PARTS`` and :meth:`PromptTrainer.assemble` puts
them together (also usable without a dataset, as the benchmark does); it loads CLIP, freezes
it, applies the precision policy, caches the class text features during evaluation, and maps
official checkpoints onto what trains.

Only what trains (the learner, or the learner and a head) is registered with the engine, so
the optimizer and our checkpoints hold only that; the frozen CLIP is rebuilt from its weights.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

import clip
from engine import TrainerX
from engine.checkpoint_checks import flat_config
from engine.config import CN, get_cfg_default, register_config
from engine.errors import ConfigError
from engine.optim import build_lr_scheduler, build_optimizer
from engine.precision import Precision
from engine.utils import load_pretrained_weights
from trainers.learners import build_prompt_learner, learner_entry
from trainers.objective import (
    HEAD_REGISTRY,
    STEP_HOOK_REGISTRY,
    TERM_REGISTRY,
    Head,
    Losses,
    Objective,
    PartContext,
    StepHook,
    build_head,
    build_objective,
    build_step_hooks,
    run_backward,
)
from trainers.outputs import ForwardOutput, normalize

__all__ = ["PromptSchedule", "ClassTokens", "PromptedCLIP", "PromptTrainer", "PromptMethod",
           "TrainedParts", "TextSide", "build_prompted_model", "load_clip_model", "embed_words",
           "word_context", "random_context", "prompt_text", "normalize", "ForwardOutput"]

logger = logging.getLogger(__name__)

FROZEN_PREFIXES = ("image_encoder.", "text_encoder.", "token_embedding.", "logit_scale",
                   "positional_embedding", "ln_final.", "text_projection")


@register_config
def add_parts_config(cfg: CN) -> None:
    cfg.TRAINER.PARTS = CN()
    # ours, for any trainer: a registered prompt learner (trainers/learners.py) built from its
    # own node (e.g. "MaPLe" from TRAINER.MAPLE); "": the trainer's own learner
    cfg.TRAINER.PARTS.PROMPT_LEARNER = ""
    cfg.TRAINER.PARTS.TERMS = []  # objective terms added to the trainer's, e.g. ["KgCoOp"]
    cfg.TRAINER.PARTS.STEP_HOOKS = []  # gradient rules added to the trainer's, e.g. ["ProGrad"]
    cfg.TRAINER.PARTS.HEAD = ""  # a head on the features, e.g. "DePT"; "": the trainer's


@dataclass
class PromptSchedule:
    """The tokens a prompt learner hands to CLIP.

    ``text_embeddings`` ``[N, L, d]`` and ``eot`` ``[N]``: one prompt per class (or per class
    and image, flattened). ``text[i]`` / ``vision[i]``: the prompt tensor of layer ``i`` of each
    tower (clip/model.py explains the slots); ``None`` where a layer has none.
    ``vision_after_ln_pre``: the layer-0 vision prompts join after ``ln_pre`` (MVLPT's).
    """

    text_embeddings: torch.Tensor
    eot: torch.Tensor
    text: Sequence[torch.Tensor | None] | None = None
    vision: Sequence[torch.Tensor | None] | None = None
    vision_after_ln_pre: bool = False


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
                                                schedule.text)

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
        return self.clip.encode_image(image, schedule.vision,
                                      prompt_after_ln_pre=schedule.vision_after_ln_pre), text

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
            frozen_image_features=frozen_features)

    @torch.no_grad()
    def frozen_image_features(self, image: torch.Tensor) -> torch.Tensor:
        """Normalised image features of the CLIP without prompts (no gradient)."""
        return normalize(self.clip.encode_image(image))

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities ``[B, N]`` (text ``[N, D]``, or ``[B, N, D]`` per image)."""
        scale = self.clip.logit_scale.exp()
        if text_features.dim() == 3:
            return scale * torch.einsum("bd,bnd->bn", image_features, text_features)
        return scale * image_features @ text_features.t()

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
    if cfg.INPUT.INTERPOLATION != pre.interpolation or pre.resize_mode != "shortest":
        logger.warning("%s was trained on images resized by %s (%s); the data loaders resize the "
                       "short side with INPUT.INTERPOLATION %s, then crop", backbone.name,
                       pre.interpolation, pre.resize_mode, cfg.INPUT.INTERPOLATION)


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


class PartNames(NamedTuple):
    """The parts a trainer runs with: the learner and the names in each part registry."""

    learner: str
    terms: tuple[str, ...]
    step_hooks: tuple[str, ...]
    head: str


@dataclass(eq=False)
class PromptMethod:
    """A method's parts put together: the prompted model, what trains, the objective, the
    step hooks. Built by :meth:`PromptTrainer.assemble`, without a trainer or a dataset."""

    model: PromptedCLIP
    trained: nn.Module
    objective: Objective
    step_hooks: tuple[StepHook, ...] = ()

    @property
    def learner(self) -> nn.Module:
        return self.model.prompt_learner

    def losses(self, image: torch.Tensor, label: torch.Tensor) -> Losses:
        """The objective on one batch (one forward pass of the prompted model)."""
        out = self.model.output(image, frozen=self.objective.needs_frozen_image)
        return self.objective(out, label)

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


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


class PromptTrainer(TrainerX):
    """Base of the prompt-learning trainers.

    A subclass declares its method: ``config_node`` (its TRAINER.<NODE>, which holds PREC),
    ``model_name`` (the official name of the registered model, which names the checkpoint
    folder), ``learner_name`` (a registered prompt learner), ``term_names`` (objective terms),
    ``step_hook_names`` and ``head_name``; ``TRAINER.PARTS`` adds to them from the config. It
    may override :meth:`build_prompt_learner`, :meth:`compute_loss` and
    :meth:`map_official_state_dict` (official checkpoint key names → the learner's).
    """

    config_node = ""
    model_name = "prompt_learner"
    learner_name = ""
    term_names: tuple[str, ...] = ("CE",)
    step_hook_names: tuple[str, ...] = ()
    head_name = ""
    precisions = ("fp16", "fp32", "amp", "bf16")
    cache_eval_text_features = True  # the benchmark switches it off to measure the gain
    # keys of the config node that do not shape the learned tensors (not compared on load)
    checkpoint_free_keys = ("PREC",)

    @property
    def node(self):
        return self.cfg.TRAINER[self.config_node]

    # ------------------------------------------------------------------ the parts
    @classmethod
    def default_learner(cls, cfg) -> str:
        """The learner this method trains unless TRAINER.PARTS.PROMPT_LEARNER names another."""
        return cls.learner_name

    @classmethod
    def part_names(cls, cfg) -> PartNames:
        parts = cfg.TRAINER.PARTS
        head = cls.head_name or parts.HEAD
        if cls.head_name and parts.HEAD and parts.HEAD != cls.head_name:
            raise ValueError(f"{cls.__name__} runs the head '{cls.head_name}'; "
                             f"TRAINER.PARTS.HEAD names '{parts.HEAD}': leave it empty")
        return PartNames(parts.PROMPT_LEARNER or cls.default_learner(cfg),
                         _unique(cls.term_names + tuple(parts.TERMS)),
                         _unique(cls.step_hook_names + tuple(parts.STEP_HOOKS)), head)

    @classmethod
    def learner_node(cls, cfg, name: str):
        """The config node the learner ``name`` is built from: its own."""
        return cfg.TRAINER[learner_entry(name).node]

    @classmethod
    def learner_settings(cls, cfg, name: str) -> dict[str, Any]:
        """The keyword arguments of the learner ``name``, from :meth:`learner_node` (and, for
        a learner class with a ``run_settings(cfg)``, what it reads from the run: its dataset)."""
        entry = learner_entry(name)
        run_settings = getattr(entry.cls, "run_settings", None)
        extra = run_settings(cfg) if run_settings is not None else {}
        return {**entry.settings(cls.learner_node(cfg, name)), **extra}

    @classmethod
    def make_prompt_learner(cls, cfg, classnames: Sequence[str],
                            clip_model: nn.Module) -> nn.Module:
        name = cls.part_names(cfg).learner
        if not name:
            raise NotImplementedError(f"{cls.__name__} names no registered prompt learner: set "
                                      "learner_name or override build_prompt_learner")
        return build_prompt_learner(name, clip_model, classnames,
                                    **cls.learner_settings(cfg, name))

    def backbone_identity(self) -> dict[str, str]:
        """The backbone's canonical name and the fingerprint of its weights (clip's
        ``CLIP.identity``), taken once: checkpoints record it, loading compares it."""
        if getattr(self, "_backbone_identity", None) is None:
            identity = self.clip_model.identity()
            self._backbone_identity = {"name": identity["backbone"],
                                       "fingerprint": identity["fingerprint"]}
        return self._backbone_identity

    def checkpoint_meta(self, name: str) -> dict:
        """Engine hook: also the backbone (name, fingerprint of the weights as loaded) and the
        config nodes that shape the learned tensors: the trainer's and, when another node
        builds its prompt learner, that one (without :attr:`checkpoint_free_keys`)."""
        nodes = {self.config_node: self.node}
        learner = self.part_names(self.cfg).learner
        learner_node = self.learner_node(self.cfg, learner) if learner else self.node
        if learner_node is not self.node and all(v is not learner_node
                                                 for v in self.node.values()):
            nodes[learner_entry(learner).node] = learner_node
        config = {}
        for key, node in nodes.items():
            free = {f"TRAINER.{key}.{k}" for k in self.checkpoint_free_keys}
            config.update({k: v for k, v in flat_config(node, f"TRAINER.{key}").items()
                           if k not in free})
        return {**super().checkpoint_meta(name),
                "backbone": self.backbone_identity(),
                "config": config}

    def build_prompt_learner(self, cfg, classnames: list[str], clip_model: nn.Module) -> nn.Module:
        return self.make_prompt_learner(cfg, classnames, clip_model)

    @classmethod
    def assemble(cls, cfg, clip_model: nn.Module, classnames: Sequence[str], learner: nn.Module,
                 param_dtype: torch.dtype | None = None,
                 tasks: Sequence | None = None) -> PromptMethod:
        """The method's parts around ``learner``. The parts read the frozen ``clip_model`` in
        fp32 (hand-crafted prompts' features); it is cast to ``param_dtype`` after. ``tasks``:
        the tasks of a multitask label space (the data's), for the parts that use them."""
        names = cls.part_names(cfg)
        ctx = PartContext(cfg, clip_model, list(classnames), list(tasks) if tasks else None)
        head = build_head(names.head, ctx)
        hooks = build_step_hooks(names.step_hooks, ctx)
        objective = build_objective(names.terms, ctx, hooks, head)
        if param_dtype is not None:
            clip_model.to(dtype=param_dtype)
        model = build_prompted_model(clip_model, learner, head=head)
        trained = (TrainedParts(learner, head, HEAD_REGISTRY.get(names.head).module_names)
                   if names.head else learner)
        return PromptMethod(model, trained, objective, tuple(hooks))

    @classmethod
    def check_cfg(cls, cfg) -> None:
        node = cfg.TRAINER[cls.config_node]
        if node.PREC not in cls.precisions:
            raise ConfigError(f"TRAINER.{cls.config_node}.PREC is '{node.PREC}'; "
                              f"use one of {', '.join(cls.precisions)}")
        if "N_CTX" in node and node.N_CTX < 1 and not node.get("CTX_INIT"):
            raise ConfigError(f"TRAINER.{cls.config_node}.N_CTX is {node.N_CTX} and CTX_INIT is "
                              "empty: the prompt would have no context to learn; set N_CTX >= 1 "
                              "or CTX_INIT words")
        names = cls.part_names(cfg)
        if names.learner:
            learner_entry(names.learner)
        for registry, listed in ((TERM_REGISTRY, names.terms),
                                 (STEP_HOOK_REGISTRY, names.step_hooks),
                                 (HEAD_REGISTRY, [names.head] if names.head else [])):
            for name in listed:
                registry.get(name)
        if names.step_hooks and cls.compute_loss is not PromptTrainer.compute_loss:
            raise ValueError(f"the step hooks {list(names.step_hooks)} read the objective's "
                             f"terms, but {cls.__name__} computes a loss of its own "
                             "(compute_loss): run it without TRAINER.PARTS.STEP_HOOKS")

    def build_model(self) -> None:
        cfg = self.cfg
        self.precision = Precision(self.node.PREC, self.device)
        classnames = list(self.dm.dataset.classnames)
        logger.info("Loading CLIP (backbone: %s)", cfg.MODEL.BACKBONE.NAME)
        clip_model = load_clip_model(cfg)
        learner = self.build_prompt_learner(cfg, classnames, clip_model)
        self.method = self.assemble(cfg, clip_model.to(self.device), classnames, learner,
                                    self.precision.param_dtype, tasks=self.dm.tasks)
        self.clip_model, self.model = clip_model, self.method.model
        self.objective = self.method.objective
        trained = self.method.trained
        names = self.part_names(cfg)
        logger.info("Objective: %s; step hooks: %s; head: %s", self.objective.names,
                    list(names.step_hooks) or "none", names.head or "none")
        logger.info("Parameters to be updated: %s",
                    sorted(n for n, p in trained.named_parameters() if p.requires_grad))
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(trained, cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)
        self.objective.to(self.device)
        self.optim = build_optimizer(trained, cfg.OPTIM, self.method.param_groups(cfg.OPTIM.LR))
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.model_name, trained, self.optim, self.sched)

    # ------------------------------------------------------------------ a training step
    def compute_losses(self, image: torch.Tensor, label: torch.Tensor) -> Losses:
        """The objective's terms on one batch."""
        return self.method.losses(image, label)

    def compute_loss(self, image: torch.Tensor,
                     label: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of one batch and the figures to log."""
        losses = self.compute_losses(image, label)
        return losses.total, losses.figures()

    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            if self.method.step_hooks:
                losses = self.compute_losses(image, label)
                loss, figures = losses.total, losses.figures()
            else:
                losses = None
                loss, figures = self.compute_loss(image, label)
        if losses is None:
            self.model_backward_and_update(loss)
        else:
            self.model_zero_grad()
            self.method.backward(losses, self.model_backward)
            self.model_update()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), **figures}

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(input).float()

    def before_test(self) -> None:
        self.model.cache_text_features(self.cache_eval_text_features)

    def after_test(self) -> None:
        self.model.cache_text_features(False)

    # ------------------------------------------------------------------ checkpoints
    def map_checkpoint_state_dict(self, name: str,
                                  state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Engine hook: check any frozen CLIP weights the file holds against the loaded
        backbone, then keep the trained tensors under our key names."""
        check_frozen_weights(state_dict, self.clip_model, self.cfg.MODEL.BACKBONE.NAME)
        trained = self.method.trained
        if not isinstance(trained, TrainedParts):
            return self.learner_state_dict(state_dict)
        mapped = self.trained_parts_state_dict(state_dict, trained)
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
    def learner_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The learner's state dict from one of our checkpoints or an official one: drops the
        class-name token buffers (rebuilt from the current class names), the frozen CLIP and
        PromptSRC's frozen image-encoder copy, then maps official names."""
        learned = {k: v for k, v in state_dict.items()
                   if not k.endswith(("token_prefix", "token_suffix"))
                   and (not k.startswith(FROZEN_PREFIXES) or "VPT" in k)
                   and ".ZS_image_encoder." not in k}
        return cls.map_official_state_dict(learned)

    @classmethod
    def trained_parts_state_dict(cls, state_dict: dict[str, torch.Tensor],
                                 trained: TrainedParts) -> dict[str, torch.Tensor]:
        """The state dict of ``trained`` from a checkpoint of a method with a head (ours, or an
        official whole-model file): the learner's keys through :meth:`learner_state_dict`
        under ``prompt_learner.``, the head's as they are (dropped when the head does not
        apply to these classes)."""
        head_keys = {k for k in state_dict if k.split(".", 1)[0] in trained.module_names}
        learner = cls.learner_state_dict({k: v for k, v in state_dict.items()
                                          if k not in head_keys})
        mapped = {f"prompt_learner.{k}": v for k, v in learner.items()}
        mapped.update({k: state_dict[k] for k in head_keys
                       if k.split(".", 1)[0] in trained.head_names})
        return mapped

    @classmethod
    def map_official_state_dict(cls, state_dict: dict[str, torch.Tensor]
                                ) -> dict[str, torch.Tensor]:
        """Official key names → the learner's; the default strips ``prompt_learner.``."""
        prefix = "prompt_learner."
        return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


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
    """Official MaPLe/IVLP/PromptSRC/DePT files hold the whole model: when their frozen CLIP
    weights differ from the loaded backbone, the checkpoint was trained on another one."""
    frozen = {k: v for k, v in state_dict.items() if k.startswith(FROZEN_PREFIXES)}
    if not frozen:
        return
    reference = frozen_reference(clip_model)
    mismatched = []
    for key, value in frozen.items():
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
