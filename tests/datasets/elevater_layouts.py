"""Synthetic ELEVATER tasks in the exact file format: index files, label maps, COCO files,
zip archives (or the archives' folders) of tiny PNG images."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Sequence

from PIL import Image

from datasets.elevater_tasks import get_task


def png(colour: tuple[int, int, int], size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def colour_of(split: str, index: int) -> tuple[int, int, int]:
    """A distinct colour per image, so tests can tell images apart by their pixels."""
    return (index % 251, (index // 251) % 251, 100 if split == "train" else 200)


def write_images(folder: str, archive: str, names: Sequence[str], split: str,
                 zipped: bool) -> None:
    if zipped:
        with zipfile.ZipFile(os.path.join(folder, archive), "a") as z:
            for i, name in enumerate(names):
                z.writestr(name, png(colour_of(split, i)))
        return
    for i, name in enumerate(names):
        path = os.path.join(folder, archive[:-4], name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png(colour_of(split, i)))


def image_labels(task_name: str, split: str, per_class: int) -> list[tuple[int, ...]]:
    """``per_class`` images per class, classes interleaved; multi-label images also carry the
    next class."""
    task = get_task(task_name)
    labels = []
    for i in range(per_class * task.num_classes):
        label = i % task.num_classes
        if task.multilabel and i % 3 == 0:
            labels.append((label, (label + 1) % task.num_classes))
        else:
            labels.append((label,))
    return labels


def write_task(root: str, task_name: str, train_per_class: int = 4, test_per_class: int = 2,
               zipped: bool = True) -> str:
    """Write ``task_name`` under ``root`` as ELEVATER lays it out; returns its folder."""
    task = get_task(task_name)
    folder = os.path.join(root, task.folder)
    os.makedirs(folder, exist_ok=True)
    for archive in set(task.train_archives + task.test_archives):  # written anew
        if os.path.isfile(os.path.join(folder, archive)):
            os.remove(os.path.join(folder, archive))
    names = [f"class {c}" for c in range(task.num_classes)]
    for split, per_class, index, archives in (
            ("train", train_per_class, task.train_index, task.train_archives),
            ("test", test_per_class, task.test_index, task.test_archives)):
        labels = image_labels(task_name, split, per_class)
        members = [f"{split}/{i:04d} img.png" for i in range(len(labels))]  # a space inside
        write_images(folder, archives[0], members, split, zipped)
        entries = [f"{archives[0]}@{member}" for member in members]
        if task.coco:
            write_coco(os.path.join(folder, index), entries, labels, names)
        else:
            with open(os.path.join(folder, index), "w", encoding="utf-8") as f:
                for entry, image in zip(entries, labels, strict=True):
                    f.write(f"{entry} {','.join(map(str, image))}\n")
    if task.labelmap:
        with open(os.path.join(folder, task.labelmap), "w", encoding="utf-8") as f:
            f.write("\n".join(names) + "\n\n")
    return folder


def write_coco(path: str, entries: Sequence[str], labels: Sequence[tuple[int, ...]],
               names: Sequence[str]) -> None:
    """A COCO index: ids from 1 listed in reverse order (the reader sorts them), category ids
    from 1, the archive in ``zip_file``."""
    images, annotations = [], []
    for i, (entry, image) in reversed(list(enumerate(zip(entries, labels, strict=True)))):
        archive, member = entry.split("@", 1)
        images.append({"id": i + 1, "file_name": member, "zip_file": archive})
        annotations += [{"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1}
                        for c in image]
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(names)]
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
