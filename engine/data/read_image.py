"""Image reading (Dassl's ``read_image``): every mode PIL opens, as 8-bit RGB, and errors that
name the file.

PIL's ``convert("RGB")`` is right for 8-bit modes but not for the others, which it clips to
0..255: a 16-bit PNG becomes an all-white image and a float image in [0, 1] an all-black one.
Here

- 16-bit modes (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) and ``I`` (32-bit integers: PIL's
  mode for 16-bit PGM/PPM and some TIFFs) are scaled from 0..65535 to 0..255 (``v / 257``,
  rounded; values outside 0..65535 are clipped);
- ``F`` (32-bit float) is scaled from [0, 1] to 0..255 when every finite value lies in [0, 1],
  else taken on the 0..255 scale as PIL does; both clipped, NaN read as 0;
- palette images with transparency go through RGBA (the same pixels PIL gives, without its
  warning for every such image), and ``La`` through ``LA``;
- every other mode (``1``, ``L``, ``LA``, ``P``, ``RGBA``, ``CMYK``, ``YCbCr``, ``LAB``,
  ``HSV``, ...) is PIL's ``convert("RGB")``, as in the official code. Alpha is dropped, not
  composited: the colour under a transparent pixel is the one the file stores.
"""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["decode_image", "read_image", "to_rgb"]

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_image(path: str) -> Image.Image:
    """Open ``path`` as an 8-bit RGB PIL image; an unreadable file raises ``OSError`` naming it
    and saying what is wrong."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image file at {path} (check DATASET.ROOT and the split "
                                f"files)")
    return decode_image(path, path)


def decode_image(source: str | BinaryIO, name: str, exif_transpose: bool = False
                 ) -> Image.Image:
    """``source`` (a path or an open binary stream, e.g. a member of a zip archive) as an
    8-bit RGB PIL image, with its EXIF orientation applied if ``exif_transpose``; errors are
    ``OSError`` naming ``name``."""
    try:
        with Image.open(source) as img:
            return to_rgb(ImageOps.exif_transpose(img) if exif_transpose else img)
    except Image.DecompressionBombError as exc:
        raise OSError(f"Cannot read image {name}: it is larger than PIL's limit of "
                      f"{Image.MAX_IMAGE_PIXELS:,} pixels ({exc}). Downscale it (the models "
                      f"see a few hundred pixels a side) or remove it.") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise OSError(f"Cannot read image {name}: {exc}. The file may be truncated or not an "
                      f"image; re-download or remove it.") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB (see the module docstring for each mode)."""
    if img.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(img, dtype=np.float64)
        return _gray8(np.clip(values, 0, 65535) / 257)
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() >= 0 and finite.max() <= 1:
            values = values * 255
        return _gray8(np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0))
    if img.mode in ("P", "PA") and "transparency" in img.info:
        img = img.convert("RGBA")
    elif img.mode == "La":
        img = img.convert("LA")
    return img.convert("RGB")


def _gray8(values: np.ndarray) -> Image.Image:
    """A grey image from values on the 0..255 scale (rounded, clipped), as RGB."""
    pixels = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert("RGB")
