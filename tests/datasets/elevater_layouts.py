"""Synthetic ELEVATER tasks for the tests: the shipped generator (datasets/elevater_demo.py)
with one distinct colour per image, so tests can tell images apart by their pixels."""

from __future__ import annotations

import functools

from PIL import Image

from datasets.elevater_demo import image_labels, png_bytes
from datasets.elevater_demo import write_task as _write_task

__all__ = ["colour_of", "image_labels", "png", "write_task"]


def colour_of(split: str, index: int) -> tuple[int, int, int]:
    """A distinct colour per image of a split."""
    return (index % 251, (index // 251) % 251, 100 if split == "train" else 200)


def png(colour: tuple[int, int, int], size: int = 8) -> bytes:
    """A plain PNG of one colour."""
    return png_bytes(Image.new("RGB", (size, size), colour))


def _paint_by_index(split: str, index: int, _labels: tuple[int, ...]) -> bytes:
    return png_bytes(Image.new("RGB", (8, 8), colour_of(split, index)))


write_task = functools.partial(_write_task, paint=_paint_by_index)
