"""Synthetic ELEVATER tasks in ELEVATER's own file format, to try MVLPT's ELEVATER protocol
without the archives::

    python -m datasets.elevater_demo DIR     # then DATA=DIR for the ELEVATER scripts


Each task is written as vision-datasets lays it out under ``DIR/classification/<folder>``:
IRIS index files (``<archive>@<member> <label>[,<label>...]``) with their label map, or COCO
JSON index files, and zip archives of PNG images (or the archives' unpacked folders). The
images are drawn like the Demo dataset's (datasets/demo.py): a noisy field of a colour given
to each class, so a prompt learner has something to learn; a multi-label image shows its
second class as a disc. The three demo tasks cover the three readers: cifar-10 (single label,
IRIS, zip), voc-2007-classification (multi-label, scored by 11-point mAP) and kitti-distance
(COCO JSON).
"""

from __future__ import annotations

import argparse
import colorsys
import io
import json
import os
import sys
import zipfile
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from datasets.elevater_tasks import get_task

DEMO_TASKS = ("cifar-10", "voc-2007-classification", "kitti-distance")
# split, index of the image in its split, its labels -> the PNG file's bytes
Painter = Callable[[str, int, tuple[int, ...]], bytes]


def class_colours(count: int) -> list[tuple[int, int, int]]:
    """``count`` colours evenly spread around the hue circle."""
    return [tuple(round(255 * c) for c in colorsys.hsv_to_rgb(k / count, 0.8, 0.85))
            for k in range(count)]


def class_painter(num_classes: int, seed: int = 0, size: int = 32) -> Painter:
    """Images of each class's colour (noise and a disc, as the Demo dataset's)."""
    from datasets.demo import draw

    colours = class_colours(num_classes)
    rng = np.random.default_rng(seed)

    def paint(_split: str, _index: int, labels: tuple[int, ...]) -> bytes:
        disc = colours[labels[1]] if len(labels) > 1 else None
        return png_bytes(draw(rng, colours[labels[0]], size=size, disc_colour=disc))

    return paint


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_labels(task_name: str, split: str, per_class: int) -> list[tuple[int, ...]]:
    """``per_class`` images per class, classes interleaved; in a multi-label task every third
    image also carries the next class."""
    task = get_task(task_name)
    labels = []
    for i in range(per_class * task.num_classes):
        label = i % task.num_classes
        if task.multilabel and i % 3 == 0:
            labels.append((label, (label + 1) % task.num_classes))
        else:
            labels.append((label,))
    return labels


def write_images(folder: str, archive: str, names: Sequence[str], split: str,
                 labels: Sequence[tuple[int, ...]], zipped: bool, paint: Painter) -> None:
    if zipped:
        with zipfile.ZipFile(os.path.join(folder, archive), "a") as z:
            for i, (name, image) in enumerate(zip(names, labels, strict=True)):
                z.writestr(name, paint(split, i, image))
        return
    for i, (name, image) in enumerate(zip(names, labels, strict=True)):
        path = os.path.join(folder, archive[:-4], name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(paint(split, i, image))


def write_task(root: str, task_name: str, train_per_class: int = 4, test_per_class: int = 2,
               zipped: bool = True, paint: Painter | None = None) -> str:
    """Write ``task_name`` under ``root`` as ELEVATER lays it out (replacing what is there);
    returns its folder. ``paint`` draws each image (default: :func:`class_painter`)."""
    task = get_task(task_name)
    paint = paint or class_painter(task.num_classes)
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
        write_images(folder, archives[0], members, split, labels, zipped, paint)
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


def write_demo_tasks(root: str, train_per_class: int = 6, test_per_class: int = 3) -> list[str]:
    """The three demo tasks under ``root``; returns their folders."""
    return [write_task(root, name, train_per_class, test_per_class) for name in DEMO_TASKS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.elevater_demo",
                                     description="Write synthetic ELEVATER tasks (cifar-10, "
                                     "voc-2007-classification, kitti-distance) in ELEVATER's "
                                     "format under ROOT/classification/.")
    parser.add_argument("root", help="the data root of the runs (DATA, --root)")
    parser.add_argument("--train-per-class", type=int, default=6)
    parser.add_argument("--test-per-class", type=int, default=3)
    args = parser.parse_args(argv)
    for folder in write_demo_tasks(args.root, args.train_per_class, args.test_per_class):
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
