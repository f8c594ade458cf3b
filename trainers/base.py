"""What every prompt-learning trainer shares.

A prompt method is a *schedule of tokens* handed to a frozen CLIP (clip/model.py): the class
prompts' token embeddings, and per-layer prompt tensors for the text and the vision tower. A
method file provides a prompt learner (an ``nn.Module`` whose ``forward()`` returns a
:class:`PromptSchedule`), its config node and its registration; this module loads CLIP, freezes
it, applies the precision policy, trains the learner with cross-entropy, caches the class text
features during evaluation, and maps official checkpoints onto the learner.

Only the prompt learner is registered with the engine, so the optimizer and our checkpoints
hold only what trains; the frozen CLIP is rebuilt from its weights.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import clip
from engine import TrainerX
from engine.metrics import compute_accuracy
from engine.optim import build_lr_scheduler, build_optimizer
from engine.precision import Precision
from engine.utils import load_pretrained_weights

logger = logging.getLogger(__name__)

FROZEN_PREFIXES = ("image_encoder.", "text_encoder.", "token_embedding.", "logit_scale",
                   "positional_embedding", "ln_final.", "text_projection")


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
        tokens = clip.tokenize(list(prompts))
        device = clip_model.token_embedding.weight.device
        with torch.no_grad():
            embeddings = clip_model.token_embedding(tokens.to(device))
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("eot", tokens.argmax(dim=-1), persistent=False)
        self.register_buffer("embeddings", embeddings.float(), persistent=False)

    def __len__(self) -> int:
        return self.tokens.shape[0]


def embed_words(clip_model: nn.Module, words: str, n: int) -> torch.Tensor:
    """The token embeddings of the first ``n`` tokens of ``words`` (after start-of-text): the
    official initialisation of a context from CTX_INIT."""
    tokens = clip.tokenize(words)
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


def normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


class PromptedCLIP(nn.Module):
    """A frozen CLIP driven by a prompt learner: ``forward(image)`` returns the logits.

    Inside :meth:`caching_text_features` (the trainer's evaluation), the class text features do
    not depend on the image, so they are computed once instead of for every batch.
    """

    def __init__(self, clip_model: nn.Module, prompt_learner: nn.Module) -> None:
        super().__init__()
        self.clip = clip_model
        self.prompt_learner = prompt_learner
        self._caching = False
        self._cache: tuple[PromptSchedule, torch.Tensor] | None = None

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
        """Normalised text features of the schedule's prompts."""
        return normalize(self.clip.encode_text_embeddings(
            schedule.text_embeddings, schedule.eot, schedule.text))

    def text_side(self) -> tuple[PromptSchedule, torch.Tensor]:
        if self._caching and self._cache is not None:
            return self._cache
        schedule = self.prompt_learner()
        result = (schedule, self.encode_schedule_text(schedule))
        if self._caching:
            self._cache = result
        return result

    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised image features [B, D], normalised class text features [N, D])."""
        schedule, text_features = self.text_side()
        image_features = normalize(self.clip.encode_image(
            image, schedule.vision, prompt_after_ln_pre=schedule.vision_after_ln_pre))
        return image_features, text_features

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        scale = self.clip.logit_scale.exp()
        return scale * image_features @ text_features.t()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits(*self.features(image))


def load_clip_model(cfg) -> nn.Module:
    """The frozen CLIP named by MODEL.BACKBONE.NAME, in fp32 on the CPU."""
    model, _ = clip.load(cfg.MODEL.BACKBONE.NAME, device="cpu")
    model = model.float().eval()
    model.requires_grad_(False)
    resolution = model.visual.input_resolution
    size = tuple(cfg.INPUT.SIZE)
    if size != (resolution, resolution):
        raise ValueError(f"INPUT.SIZE {size} does not match the input resolution of "
                         f"{cfg.MODEL.BACKBONE.NAME} ({resolution}); set INPUT.SIZE "
                         f"\"({resolution}, {resolution})\"")
    return model


class PromptTrainer(TrainerX):
    """Base of the prompt-learning trainers.

    Subclasses set ``config_node`` (their TRAINER.<NODE>), ``model_name`` (the official name of
    the registered model, which names the checkpoint folder) and implement
    :meth:`build_prompt_learner`; they may override :meth:`build_prompted_clip`,
    :meth:`compute_loss` and :meth:`map_official_state_dict`.
    """

    config_node = ""
    model_name = "prompt_learner"
    precisions = ("fp16", "fp32", "amp", "bf16")
    cache_eval_text_features = True  # the benchmark switches it off to measure the gain

    @property
    def node(self):
        return self.cfg.TRAINER[self.config_node]

    def check_cfg(self, cfg) -> None:
        prec = cfg.TRAINER[self.config_node].PREC
        if prec not in self.precisions:
            raise ValueError(f"TRAINER.{self.config_node}.PREC is '{prec}'; "
                             f"use one of {', '.join(self.precisions)}")

    def build_prompt_learner(self, cfg, classnames: list[str], clip_model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def build_prompted_clip(self, clip_model: nn.Module, learner: nn.Module) -> PromptedCLIP:
        return PromptedCLIP(clip_model, learner)

    def build_model(self) -> None:
        cfg = self.cfg
        self.precision = Precision(self.node.PREC, self.device)
        classnames = list(self.dm.dataset.classnames)
        logger.info("Loading CLIP (backbone: %s)", cfg.MODEL.BACKBONE.NAME)
        clip_model = load_clip_model(cfg)
        learner = self.build_prompt_learner(cfg, classnames, clip_model)
        self.clip_model = clip_model.to(dtype=self.precision.param_dtype)
        self.model = self.build_prompted_clip(self.clip_model, learner)
        trainable = sorted(n for n, p in learner.named_parameters() if p.requires_grad)
        logger.info("Parameters to be updated: %s", trainable)
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(learner, cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)
        self.optim = build_optimizer(learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.model_name, learner, self.optim, self.sched)

    def compute_loss(self, image: torch.Tensor,
                     label: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of one batch and the figures to log."""
        logits = self.model(image)
        loss = F.cross_entropy(logits.float(), label)
        return loss, {"acc": compute_accuracy(logits, label)[0].item()}

    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            loss, figures = self.compute_loss(image, label)
        self.model_backward_and_update(loss)
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

    # checkpoints of the official code
    def map_checkpoint_state_dict(self, name: str,
                                  state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Engine hook: check any frozen CLIP weights the file holds against the loaded
        backbone, then keep the learned tensors under the learner's key names."""
        self.check_frozen_weights(state_dict)
        return self.learner_state_dict(state_dict)

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
    def map_official_state_dict(cls, state_dict: dict[str, torch.Tensor]
                                ) -> dict[str, torch.Tensor]:
        """Official key names → the learner's; the default strips ``prompt_learner.``."""
        prefix = "prompt_learner."
        return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}

    def frozen_reference(self) -> dict[str, torch.Tensor]:
        """Official full-model key name → the loaded backbone's tensor, for the checks."""
        visual = self.clip_model.visual.state_dict()
        reference = {f"image_encoder.{k}": v for k, v in visual.items()}
        for key, value in self.clip_model.state_dict().items():
            if not key.startswith("visual."):
                reference[f"text_encoder.{key}" if key.startswith(("transformer.", "ln_final.",
                          "text_projection", "positional_embedding")) else key] = value
        return reference

    def check_frozen_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Official MaPLe/IVLP/PromptSRC files hold the whole model: when their frozen CLIP
        weights differ from the loaded backbone, the checkpoint was trained on another one."""
        frozen = {k: v for k, v in state_dict.items() if k.startswith(FROZEN_PREFIXES)}
        if not frozen:
            return
        reference = self.frozen_reference()
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
                f"{self.cfg.MODEL.BACKBONE.NAME} ({len(mismatched)} tensors, e.g. "
                f"{mismatched[:3]}): it was trained with another backbone; set "
                "MODEL.BACKBONE.NAME to the one it was trained with")
