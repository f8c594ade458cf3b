"""read_image: every mode PIL opens becomes the right 8-bit RGB picture, one test per mode;
files PIL refuses give an error naming the file."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from engine.data.read_image import read_image

GRADIENT16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1365)  # 0 .. 64155


def read(path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no PIL warning either
        img = read_image(str(path))
    assert img.mode == "RGB"
    return np.asarray(img)


def grey(values: np.ndarray) -> np.ndarray:
    """The expected RGB array of a grey picture of 8-bit values."""
    return np.repeat(np.asarray(values, dtype=np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path, suffix):
    path = tmp_path / f"deep.{suffix}"
    Image.fromarray(GRADIENT16).save(path)
    assert Image.open(path).mode == "I;16"
    expected = grey(np.rint(GRADIENT16 / 257))
    assert np.array_equal(read(path), expected)
    assert len(np.unique(expected)) == 48  # not the all-white image PIL's convert gives


def test_sixteen_bit_big_endian_and_mode_i(tmp_path):
    # a 16-bit PGM opens as mode I (32-bit integers holding 0..65535)
    path = tmp_path / "deep.pgm"
    path.write_bytes(b"P5\n8 6\n65535\n" + GRADIENT16.astype(">u2").tobytes())
    assert Image.open(path).mode == "I"
    assert np.array_equal(read(path), grey(np.rint(GRADIENT16 / 257)))
    big = Image.frombytes("I;16B", (8, 6), GRADIENT16.astype(">u2").tobytes())
    path = tmp_path / "big.tif"
    big.save(path)
    assert Image.open(path).mode.startswith("I;16")
    assert np.array_equal(read(path), grey(np.rint(GRADIENT16 / 257)))


def test_float_images(tmp_path):
    unit = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    assert Image.open(tmp_path / "unit.tif").mode == "F"
    assert np.array_equal(read(tmp_path / "unit.tif"), grey(np.rint(unit.astype(np.float64) * 255)))
    # values beyond [0, 1] are on the 8-bit scale (PIL's reading), clipped; NaN reads as 0
    wide = np.linspace(-20, 300, 48, dtype=np.float32).reshape(6, 8)
    wide[0, 0] = np.nan
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    expected = np.clip(np.rint(np.nan_to_num(wide.astype(np.float64))), 0, 255)
    assert np.array_equal(read(tmp_path / "wide.tif"), grey(expected))


def test_palette_with_transparency(tmp_path):
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255]
    img = Image.new("P", (3, 1))
    img.putpalette(palette + [0] * (768 - len(palette)))
    for x in range(3):
        img.putpixel((x, 0), x)
    # per-entry alpha (tRNS as bytes): PIL's convert("RGB") warns for every such image
    img.save(tmp_path / "alpha.png", transparency=bytes([0, 128, 255]))
    img.save(tmp_path / "index.gif", transparency=0)
    expected = np.array(palette, dtype=np.uint8).reshape(1, 3, 3)
    assert np.array_equal(read(tmp_path / "alpha.png"), expected)
    assert np.array_equal(read(tmp_path / "index.gif"), expected)


@pytest.mark.parametrize("mode, value, fmt, expected", [
    ("1", 1, "png", (255, 255, 255)),
    ("L", 77, "png", (77, 77, 77)),
    ("LA", (77, 10), "png", (77, 77, 77)),
    ("RGBA", (10, 20, 30, 0), "png", (10, 20, 30)),  # alpha dropped, as PIL (and Dassl) do
    ("CMYK", (0, 255, 255, 0), "tiff", (255, 0, 0)),
    ("CMYK", (0, 255, 255, 0), "jpeg", (255, 0, 0)),
    ("YCbCr", (76, 85, 255), "tiff", (254, 0, 0)),
    ("I;16", 65535, "png", (255, 255, 255)),
    ("I;16", 257 * 100, "png", (100, 100, 100)),
])
def test_other_modes(tmp_path, mode, value, fmt, expected):
    path = tmp_path / f"image.{fmt}"
    Image.new(mode, (4, 4), value).save(path, quality=100) if fmt == "jpeg" else \
        Image.new(mode, (4, 4), value).save(path)
    pixels = read(path)
    assert pixels.shape == (4, 4, 3)
    assert np.abs(pixels.astype(int) - np.array(expected)).max() <= 1


def test_lab_image_is_converted_not_reinterpreted(tmp_path):
    from PIL import ImageCms

    rgb = Image.new("RGB", (2, 2), (30, 200, 60))
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"),
                                     ImageCms.createProfile("LAB"), "RGB", "LAB")
    ImageCms.applyTransform(rgb, to_lab).save(tmp_path / "lab.tif")
    assert Image.open(tmp_path / "lab.tif").mode == "LAB"
    assert np.abs(read(tmp_path / "lab.tif").astype(int) - (30, 200, 60)).max() <= 4


def test_image_over_pils_size_limit_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels > twice the limit
    with pytest.raises(OSError, match=r"huge\.png.*larger than PIL's limit of 100 pixels.*"
                                      r"Downscale"):
        read_image(str(path))


def test_truncated_image_names_the_file(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(GRADIENT16).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(OSError, match=r"cut\.png.*truncated"):
        read_image(str(path))
