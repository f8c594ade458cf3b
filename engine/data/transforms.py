"""Dassl's image transforms for the choices the prompt-learning configs use.

Train (in this order, each when listed in ``INPUT.TRANSFORMS``): a resize to ``INPUT.SIZE``
when neither random_crop nor random_resized_crop is asked for, random_translation,
random_crop (``INPUT.CROP_PADDING``), random_resized_crop (``INPUT.RRCROP_SCALE``),
random_flip, colorjitter, randomgrayscale, gaussian_blur, to-tensor, normalize.
Test: resize of the shorter side to ``max(INPUT.SIZE)``, center crop to ``INPUT.SIZE``,
to-tensor, normalize (when listed); with ``INPUT.RESIZE_MODE`` "squash", a resize of both sides
to ``INPUT.SIZE`` instead (SigLIP's). ``INPUT.INTERPOLATION`` picks the resize mode.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from torchvision.transforms import functional as F
from torchvision.transforms.functional import InterpolationMode

__all__ = ["AVAI_CHOICES", "INTERPOLATION_MODES", "build_transform", "Random2DTranslation"]

logger = logging.getLogger(__name__)

AVAI_CHOICES = ["random_flip", "random_resized_crop", "normalize", "random_crop",
                "random_translation", "center_crop", "colorjitter", "randomgrayscale",
                "gaussian_blur"]

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


class Random2DTranslation:
    """With probability ``p``: resize to 1.125x the target size and crop a random window;
    otherwise resize to the target size."""

    def __init__(self, height: int, width: int, p: float = 0.5,
                 interpolation: InterpolationMode = InterpolationMode.BILINEAR) -> None:
        self.height, self.width, self.p, self.interpolation = height, width, p, interpolation

    def __call__(self, img: Any) -> Any:
        if random.uniform(0, 1) > self.p:
            return F.resize(img, [self.height, self.width], interpolation=self.interpolation)
        new_w, new_h = int(round(self.width * 1.125)), int(round(self.height * 1.125))
        resized = F.resize(img, [new_h, new_w], interpolation=self.interpolation)
        x1 = int(round(random.uniform(0, new_w - self.width)))
        y1 = int(round(random.uniform(0, new_h - self.height)))
        return F.crop(resized, y1, x1, self.height, self.width)


def _check(cfg: Any, choices: Any) -> None:
    for choice in choices:
        if choice not in AVAI_CHOICES:
            raise ValueError(f"Unknown transform {choice!r} in INPUT.TRANSFORMS; supported: "
                             f"{', '.join(AVAI_CHOICES)}")
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ValueError(f"Unknown INPUT.INTERPOLATION {cfg.INPUT.INTERPOLATION!r}; choose one "
                         f"of {', '.join(INTERPOLATION_MODES)}")


def build_transform(cfg: Any, is_train: bool = True, choices: Any = None) -> Compose | None:
    """The train or test transform of ``cfg`` (None with ``INPUT.NO_TRANSFORM``)."""
    if cfg.INPUT.NO_TRANSFORM:
        logger.info("Note: no transform is applied!")
        return None
    choices = cfg.INPUT.TRANSFORMS if choices is None else choices
    _check(cfg, choices)
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    size = tuple(cfg.INPUT.SIZE)
    steps = _train_steps(cfg, choices, size, interp) if is_train else _test_resize(
        cfg, size, interp)
    steps.append(ToTensor())
    if "normalize" in choices:
        steps.append(normalize)
    tfm = Compose(steps)
    logger.info("Building transform_%s\n%s", "train" if is_train else "test", tfm)
    return tfm


def _test_resize(cfg: Any, size: tuple, interp: InterpolationMode) -> list:
    """INPUT.RESIZE_MODE: "shortest" (short side, center crop) or "squash" (both sides)."""
    mode = cfg.INPUT.get("RESIZE_MODE", "shortest")
    if mode == "squash":
        return [Resize(size, interpolation=interp)]
    if mode != "shortest":
        raise ValueError(f"Unknown INPUT.RESIZE_MODE {mode!r}; choose shortest or squash")
    return [Resize(max(size), interpolation=interp), CenterCrop(size)]


def _train_steps(cfg: Any, choices: Any, size: tuple, interp: InterpolationMode) -> list:
    steps: list = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        steps.append(Resize(size, interpolation=interp))
    if "random_translation" in choices:
        steps.append(Random2DTranslation(size[0], size[1]))
    if "random_crop" in choices:
        steps.append(RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        steps.append(RandomResizedCrop(size, scale=tuple(cfg.INPUT.RRCROP_SCALE),
                                       interpolation=interp))
    if "random_flip" in choices:
        steps.append(RandomHorizontalFlip())
    if "colorjitter" in choices:
        steps.append(ColorJitter(brightness=cfg.INPUT.COLORJITTER_B,
                                 contrast=cfg.INPUT.COLORJITTER_C,
                                 saturation=cfg.INPUT.COLORJITTER_S, hue=cfg.INPUT.COLORJITTER_H))
    if "randomgrayscale" in choices:
        steps.append(RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        steps.append(RandomApply([GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    return steps
