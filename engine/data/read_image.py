"""Image reading with a clear error (Dassl's ``read_image``)."""

from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError


def read_image(path: str) -> Image.Image:
    """Open ``path`` as an RGB PIL image; an unreadable file raises ``OSError`` naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image file at {path} (check DATASET.ROOT and the split "
                                f"files)")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise OSError(f"Cannot read image {path}: {exc}. The file may be truncated or not an "
                      f"image; re-download or remove it.") from exc
