"""Tiny random CLIPs in OpenAI's layout, for tests and the demo.

They are built the way real weights are: a state dict in OpenAI's key layout goes through
``build_model`` with the tiny backbone's description. The vocabulary and context are CLIP's
(49408 tokens, 77 positions), so the real tokenizer works with them. ``clip.load`` knows three
by name: ``tiny`` (a ViT with OpenAI's QuickGELU), ``tiny-gelu`` (the same with GELU, as LAION's
and DataComp's open_clip models have it) and ``tiny-resnet`` (OpenAI's ModifiedResNet).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from .backbones import Architecture, Backbone
from .model import CLIP, build_model

VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77


DEFAULT_SIZES = {"embed_dim": 64, "text_width": 64, "text_layers": 2, "vision_width": 64,
                 "vision_layers": 2, "image_resolution": 32, "patch_size": 8}
NAMES = {"tiny": ("vit", "quick_gelu"), "tiny-gelu": ("vit", "gelu"),
         "tiny-resnet": ("resnet", "quick_gelu")}


def tiny_backbone(vision: Literal["vit", "resnet"] = "vit", activation: str = "quick_gelu",
                  **sizes: int) -> Backbone:
    """The description of a tiny CLIP.

    ``sizes`` (defaults: embed_dim 64, text_width 64, text_layers 2, vision_layers 2,
    image_resolution 32, patch_size 8, vision_width 64 for a ViT and 8 for a ResNet): widths
    are multiples of 64 (one head per 64 channels, as in OpenAI's models). For
    ``vision="resnet"`` ``vision_width`` is the stem width (the pooled feature map has
    ``32 * vision_width`` channels), each stage has ``vision_layers`` blocks, and
    ``image_resolution`` must be a multiple of 32. The name is ``tiny``, ``tiny-gelu`` or
    ``tiny-resnet`` for their default sizes.
    """
    unknown = sorted(set(sizes) - set(DEFAULT_SIZES))
    if unknown:
        raise TypeError(f"unknown sizes {unknown}; the sizes are {sorted(DEFAULT_SIZES)}")
    defaults = {**DEFAULT_SIZES, "vision_width": 8 if vision == "resnet" else 64}
    size = {**defaults, **sizes}
    _check(vision, size["text_width"], size["vision_width"], size["image_resolution"],
           size["patch_size"])
    resnet = vision == "resnet"
    arch = Architecture(
        embed_dim=size["embed_dim"], image_size=size["image_resolution"],
        vision_layers=(size["vision_layers"],) * 4 if resnet else size["vision_layers"],
        vision_width=size["vision_width"],
        vision_heads=size["vision_width"] * (32 if resnet else 1) // 64,
        patch_size=None if resnet else size["patch_size"], context_length=CONTEXT_LENGTH,
        vocab_size=VOCAB_SIZE, text_width=size["text_width"],
        text_heads=size["text_width"] // 64, text_layers=size["text_layers"],
        activation=activation)
    name = next((n for n, kind in NAMES.items() if kind == (vision, activation)), None)
    if name is None or size != defaults:
        name = f"tiny[{vision}, {arch.describe()}]"
    return Backbone(name, arch)


def tiny_state_dict(seed: int = 0, vision: Literal["vit", "resnet"] = "vit", *,
                    activation: str = "quick_gelu", **sizes: int) -> dict[str, torch.Tensor]:
    """A deterministic random state dict of a small CLIP in OpenAI's layout (sizes as
    :func:`tiny_backbone` says)."""
    backbone = tiny_backbone(vision, activation, **sizes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP.from_backbone(backbone)
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


def tiny_clip(seed: int = 0, vision: Literal["vit", "resnet"] = "vit", *,
              activation: str = "quick_gelu", **sizes: int) -> CLIP:
    """A tiny random CLIP (fp32, eval mode), the same for the same arguments.

    Defaults: embed_dim 64, text width 64 with 2 layers, a ViT of width 64 with 2 layers on
    32-pixel images with 8-pixel patches, QuickGELU. ``sizes`` overrides them (see
    :func:`tiny_backbone`).
    """
    return build_model(tiny_state_dict(seed, vision, activation=activation, **sizes),
                       copy=False, backbone=tiny_backbone(vision, activation, **sizes))
