"""Independent vision-language prompting (IVLP) and deep language prompting (Khattak et al.,
MaPLe, CVPR 2023, https://arxiv.org/abs/2210.03117, the baselines of its ablations).

Learnable prompts in the first ``PROMPT_DEPTH_TEXT`` layers of the text tower and the first
``PROMPT_DEPTH_VISION`` layers of the vision tower, learned independently of each other.
Language-only (deep language prompting) is IVLP with vision depth 0; vision-only (VPT-deep,
trainers/vpt.py) is the same learner with text depth 0 and a fixed hand-written prompt.

Text layer 0 is the context ``ctx`` written after the start-of-text token (initialised from the
first ``n_ctx_text`` tokens of CTX_INIT when ``n_ctx_text <= 4``, the prompt text keeping all of
CTX_INIT); text layer ``i > 0`` replaces those positions with its own prompt. Vision layer 0
appends ``n_ctx_vision`` tokens after the patch tokens; vision layer ``i > 0`` replaces them.
"""

from __future__ import annotations

import logging
import re

import torch
from torch import nn

from engine.config import CN, register_config
from engine.errors import ConfigError
from trainers.base import ClassTokens, PromptSchedule, embed_words, prompt_text, random_context
from trainers.learners import official_learner_keys, register_learner
from trainers.method import Method, register_method

logger = logging.getLogger(__name__)


@register_config
def add_ivlp_config(cfg: CN) -> None:
    cfg.TRAINER.IVLP = CN()
    cfg.TRAINER.IVLP.N_CTX_VISION = 2  # number of context vectors at the vision branch
    cfg.TRAINER.IVLP.N_CTX_TEXT = 2  # number of context vectors at the language branch
    cfg.TRAINER.IVLP.CTX_INIT = "a photo of a"  # initialization words (language prompts only)
    cfg.TRAINER.IVLP.PREC = "fp16"  # fp16, fp32, amp or bf16
    cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 9  # vision layers with prompts (0: none), max layers
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = 9  # text layers with prompts (>= 1), max layers


def check_depth(depth: int, layers: int, what: str, minimum: int = 0) -> None:
    """A clear error for a prompt depth the tower cannot take."""
    if not minimum <= depth <= layers:
        raise ValueError(f"{what} is {depth}; it must be between {minimum} and the number of "
                         f"layers of the tower ({layers})")


def text_context(clip_model: nn.Module, n_ctx: int, ctx_init: str) -> tuple[torch.Tensor, str]:
    """(initial context [n_ctx, d], prompt prefix) as the official MaPLe-family learners build
    them: from the first ``n_ctx`` tokens of ``ctx_init`` when ``n_ctx <= 4`` (the prefix keeps
    every word of ``ctx_init``), else N(0, 0.02²) with the prefix "X X ... X"."""
    if ctx_init and n_ctx <= 4:
        ctx_init = ctx_init.replace("_", " ")
        return embed_words(clip_model, ctx_init, n_ctx), ctx_init
    return random_context(n_ctx, clip_model.text_width), " ".join(["X"] * n_ctx)


def deep_prompts(layers: range, n: int, width: int) -> nn.ParameterDict:
    """One N(0, 0.02²) prompt ``[n, width]`` per layer, keyed by the layer's index."""
    return nn.ParameterDict({str(i): nn.Parameter(random_context(n, width)) for i in layers})


def vision_layers(clip_model: nn.Module) -> int:
    """The number of blocks of a ViT image tower (0 for a ResNet: it takes no prompts)."""
    transformer = getattr(clip_model.visual, "transformer", None)
    return transformer.layers if transformer is not None else 0


def check_settings(clip_model: nn.Module, n_ctx_text: int, n_ctx_vision: int, depth_text: int,
                   depth_vision: int) -> None:
    """Clear errors for prompt settings the loaded CLIP cannot take."""
    check_depth(depth_text, clip_model.transformer.layers, "the text prompt depth")
    if depth_vision and not vision_layers(clip_model):
        raise ValueError("vision prompts need a ViT image tower; this CLIP has a ResNet "
                         "(choose a ViT backbone, or set the vision prompt depth to 0)")
    check_depth(depth_vision, vision_layers(clip_model), "the vision prompt depth")
    for n, depth, what in ((n_ctx_text, depth_text, "text"),
                           (n_ctx_vision, depth_vision, "vision")):
        if depth > 0 and n < 1:
            raise ValueError(f"{what} prompts in {depth} layers need at least one context "
                             f"token; got {n} (set the {what} depth to 0 to have none)")


def ivlp_settings(node: CN) -> dict:
    """IVLP's learner from a node with its keys (TRAINER.IVLP, TRAINER.PROMPTSRC)."""
    return {"n_ctx_text": node.N_CTX_TEXT, "n_ctx_vision": node.N_CTX_VISION,
            "depth_text": node.PROMPT_DEPTH_TEXT, "depth_vision": node.PROMPT_DEPTH_VISION,
            "ctx_init": node.CTX_INIT}


_DEEP_VPT = re.compile(r"^(image|text)_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")


def map_vpt_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official IVLP / VPT key names (prompts stored inside the CLIP towers: the
    ``VPT`` tensors of the official model's frozen modules) → the learner's; then the
    learner's other official keys (trainers/learners.py's default map)."""
    mapped = {}
    for key, value in state_dict.items():
        deep = _DEEP_VPT.match(key)
        if key == "image_encoder.VPT":
            key = "vision_prompts.0"
        elif deep:
            tower = "vision" if deep.group(1) == "image" else "text"
            key = f"{tower}_prompts.{deep.group(2)}"
        else:
            key = key.removeprefix("prompt_learner.")
        mapped[key] = value
    return official_learner_keys(mapped)


@register_learner("IVLP", node="IVLP", settings=ivlp_settings, official_keys=map_vpt_keys)
class IVLPPromptLearner(nn.Module):
    """Independent prompts for the two towers.

    Parameters: ``ctx`` (text layer 0, present when ``depth_text >= 1``),
    ``text_prompts.{i}`` for text layers ``1 .. depth_text - 1`` and ``vision_prompts.{i}`` for
    vision layers ``0 .. depth_vision - 1``. With ``depth_text = 0`` the class prompts are the
    fixed text ``"{ctx_init} {class}."`` (VPT's text side).
    """

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx_text: int,
                 n_ctx_vision: int, depth_text: int, depth_vision: int,
                 ctx_init: str = "a photo of a") -> None:
        super().__init__()
        check_settings(clip_model, n_ctx_text, n_ctx_vision, depth_text, depth_vision)
        if depth_text > 0:
            ctx, prefix = text_context(clip_model, n_ctx_text, ctx_init)
            self.ctx = nn.Parameter(ctx)
        else:
            self.ctx = None
            prefix = ctx_init.replace("_", " ")
        logger.info('Initial text context: "%s"; context tokens: %d text (depth %d), '
                    '%d vision (depth %d)', prefix, n_ctx_text if depth_text else 0, depth_text,
                    n_ctx_vision if depth_vision else 0, depth_vision)
        self.text_prompts = deep_prompts(range(1, depth_text), n_ctx_text, clip_model.text_width)
        self.vision_prompts = deep_prompts(range(depth_vision), n_ctx_vision,
                                           clip_model.vision_width)
        self.depth_text, self.depth_vision = depth_text, depth_vision
        self.class_tokens = ClassTokens(clip_model, [prompt_text(prefix, c) for c in classnames])

    def text_schedule(self) -> list[torch.Tensor] | None:
        if self.ctx is None:
            return None
        return [self.ctx, *(self.text_prompts[str(i)] for i in range(1, self.depth_text))]

    def vision_schedule(self) -> list[torch.Tensor] | None:
        if not self.depth_vision:
            return None
        return [self.vision_prompts[str(i)] for i in range(self.depth_vision)]

    def forward(self) -> PromptSchedule:
        tokens = self.class_tokens
        return PromptSchedule(tokens.embeddings, tokens.eot, text=self.text_schedule(),
                              vision=self.vision_schedule())


def check_ivlp(cfg) -> None:
    if cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT < 1:
        raise ConfigError("TRAINER.IVLP.PROMPT_DEPTH_TEXT must be >= 1 (the text context is "
                          "always learned); to learn only vision prompts use the VPT trainer")


IVLP = register_method(Method(
    "IVLP", node="IVLP", learner="IVLP", model_name="VLPromptLearner", check=check_ivlp,
    doc="Independent vision-language prompting (deep language prompting with vision depth "
        "0)."), module=__name__)
