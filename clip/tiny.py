"""A tiny random CLIP in OpenAI's layout, for tests and the demo.

It is built the way real weights are: a state dict in OpenAI's key layout goes through
``build_model``. The vocabulary and context are CLIP's (49408 tokens, 77 positions), so the real
tokenizer works with it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from .model import CLIP, build_model

VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77


def tiny_state_dict(seed: int = 0, vision: Literal["vit", "resnet"] = "vit",
                    embed_dim: int = 64, text_width: int = 64, text_layers: int = 2,
                    vision_width: int | None = None, vision_layers: int = 2,
                    image_resolution: int = 32, patch_size: int = 8) -> dict[str, torch.Tensor]:
    """A deterministic random state dict of a small CLIP in OpenAI's layout.

    Widths are multiples of 64 (heads are inferred as width // 64, as for OpenAI's models).
    ``vision_width`` defaults to 64 for a ViT. For ``vision="resnet"`` it is the stem width
    (default 8; the pooled feature map has ``32 * vision_width`` channels), each stage has
    ``vision_layers`` blocks, and ``image_resolution`` must be a multiple of 32.
    """
    if vision_width is None:
        vision_width = 8 if vision == "resnet" else 64
    _check(vision, text_width, vision_width, image_resolution, patch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(
            embed_dim=embed_dim, image_resolution=image_resolution,
            vision_layers=(vision_layers,) * 4 if vision == "resnet" else vision_layers,
            vision_width=vision_width,
            vision_patch_size=None if vision == "resnet" else patch_size,
            context_length=CONTEXT_LENGTH, vocab_size=VOCAB_SIZE,
            transformer_width=text_width, transformer_heads=text_width // 64,
            transformer_layers=text_layers)
    state = model.state_dict()
    _perturb_norms(state, torch.Generator().manual_seed(seed))
    # the temperature of trained CLIPs (OpenAI's initial 1/0.07 makes every softmax flat)
    state["logit_scale"] = torch.tensor(math.log(100.0))
    return state


def _check(vision: str, text_width: int, vision_width: int, image_resolution: int,
           patch_size: int) -> None:
    if vision not in ("vit", "resnet"):
        raise ValueError(f"vision must be 'vit' or 'resnet'; got {vision!r}")
    if text_width % 64 or (vision == "vit" and vision_width % 64):
        raise ValueError("widths must be multiples of 64 (one attention head per 64 channels); "
                         f"got text {text_width}, vision {vision_width}")
    step = 32 if vision == "resnet" else patch_size
    if image_resolution % step:
        raise ValueError(f"image_resolution {image_resolution} must be a multiple of {step}")


def _perturb_norms(state: dict[str, torch.Tensor], g: torch.Generator) -> None:
    """Give normalisation layers non-trivial values (OpenAI's initialisation leaves them at
    1 and 0, and zeroes the last BatchNorm of every ResNet block, hiding bugs in tests)."""
    for name, t in state.items():
        if not t.is_floating_point():
            continue
        leaf = name.rsplit(".", 1)[-1]
        is_norm = ".ln_" in f".{name}" or ".bn" in name or "downsample.1" in name
        if not is_norm:
            continue
        noise = torch.randn(t.shape, generator=g)
        if leaf == "weight":
            state[name] = 1 + 0.1 * noise
        elif leaf in ("bias", "running_mean"):
            state[name] = 0.1 * noise
        elif leaf == "running_var":
            state[name] = 1 + 0.2 * noise.abs()


def tiny_clip(seed: int = 0, vision: Literal["vit", "resnet"] = "vit",
              **sizes: int) -> CLIP:
    """A tiny random CLIP (fp32, eval mode), the same for the same arguments.

    Defaults: embed_dim 64, text width 64 with 2 layers, a ViT of width 64 with 2 layers on
    32-pixel images with 8-pixel patches. ``sizes`` overrides them (see ``tiny_state_dict``).
    """
    return build_model(tiny_state_dict(seed, vision, **sizes), copy=False)
