"""ELEVATER read as the toolkit reads it: every label of a multi-label image counts, a
multi-label training index keeps negatives as vision-datasets 0.2 does, and images go through
the common image reader (16-bit PNG, oversized images, EXIF orientation)."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.elevater import ElevaterDatum, build_elevater_dataset, build_elevater_loaders
from datasets.elevater_tasks import get_task
from tests.datasets.elevater_layouts import png, write_task
from tests.datasets.test_elevater import elevater_cfg

VOC = "voc-2007-classification"


def _rewrite_index(folder: str, index: str, change) -> None:
    path = os.path.join(folder, index)
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(change(line) for line in lines) + "\n")


def _with_four(line: str) -> str:
    """Class 5 never an image's smallest label: every image of class 5 also gets class 4."""
    entry, labels = line.rsplit(" ", 1)
    values = sorted({int(v) for v in labels.split(",")})
    if values[0] == 5:
        values.insert(0, 4)
    return f"{entry} {','.join(map(str, values))}"


def test_a_class_that_is_never_the_smallest_label_is_kept(root) -> None:
    folder = write_task(str(root), VOC, train_per_class=3, test_per_class=1)
    task = get_task(VOC)
    for index in (task.train_index, task.test_index):
        _rewrite_index(folder, index, _with_four)
    dataset = build_elevater_dataset(elevater_cfg(root, VOC, shots=2))
    assert dataset.num_classes == 20
    assert all(item.label != 5 for item in dataset.test)
    assert any(5 in item.labels for item in dataset.test)


def _add_negatives(folder: str, count: int, split: str = "train") -> None:
    task = get_task(VOC)
    archive = (task.train_archives if split == "train" else task.test_archives)[0]
    members = [f"{split}/negative_{i}.png" for i in range(count)]  # no space: no label
    with zipfile.ZipFile(os.path.join(folder, archive), "a") as z:
        for member in members:
            z.writestr(member, png((1, 2, 3)))
    index = task.train_index if split == "train" else task.test_index
    with open(os.path.join(folder, index), "a", encoding="utf-8") as f:
        f.write("".join(f"{archive}@{member}\n" for member in members))


def test_negatives_of_a_multilabel_training_index_are_kept_up_to_k(root) -> None:
    folder = write_task(str(root), VOC, train_per_class=3, test_per_class=1)
    _add_negatives(folder, 12)
    shots = 2
    cfg = elevater_cfg(root, VOC, shots=shots, seed=3)
    dataset = build_elevater_dataset(cfg)
    negatives = [item for item in dataset.train_x + dataset.val if not item.labels]
    assert 1 <= len(negatives) <= shots
    assert all(item.label == -1 and "negative" in item.impath for item in negatives)
    assert not torch.any(negatives[0].target_vector())
    train, _, _ = build_elevater_loaders(cfg, dataset)
    targets = torch.cat([batch["target"] for batch in train])
    assert targets.shape[1] == 20 and bool((targets.sum(dim=1) == 0).any()) == any(
        not item.labels for item in dataset.train_x)
    # a test index lists no negatives
    _add_negatives(folder, 1, "test")
    with pytest.raises(ValueError, match="has no label .*only a multi-label training index"):
        build_elevater_dataset(cfg)


def _archive(tmp_path, members: dict[str, bytes]) -> str:
    path = str(tmp_path / "images.zip")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_images_go_through_the_common_reader(tmp_path, monkeypatch) -> None:
    deep = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # mid grey on 16 bits
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown 90 degrees clockwise
    archive = _archive(tmp_path, {
        "deep.png": _encoded(deep, "PNG"),
        "rotated.jpg": _encoded(Image.new("RGB", (6, 2), (0, 0, 255)), "JPEG", exif=exif),
        "large.png": png((9, 9, 9), size=64)})
    grey = ElevaterDatum("deep.png", [0], 2, archive=archive).load_image()
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (128, 128, 128)  # not white
    assert ElevaterDatum("rotated.jpg", [0], 2, archive=archive).load_image().size == (2, 6)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(OSError, match=r"images.zip@large.png: it is larger than PIL's limit"):
        ElevaterDatum("large.png", [0], 2, archive=archive).load_image()
