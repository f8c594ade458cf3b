"""Tiny copies of the benchmarks' real on-disk layouts (CoOp's DATASETS.md), for the tests."""

from __future__ import annotations

import io
import json
import os
from functools import cache

from PIL import Image

import datasets  # noqa: F401  (registers the readers and DATASET.CUSTOM)
from engine.config import get_cfg_default

# Per split-file benchmark: (path template relative to the image folder, class name as the
# official split file writes it). Labels follow the order below.
SPLIT_FILE_SAMPLES: dict[str, list[tuple[str, str]]] = {
    "Caltech101": [("accordion/image_{i:04d}.jpg", "accordion"),
                   ("airplanes/image_{i:04d}.jpg", "airplane"),
                   ("Faces/image_{i:04d}.jpg", "face")],
    "OxfordPets": [("Abyssinian_{i}.jpg", "abyssinian"),
                   ("american_bulldog_{i}.jpg", "american_bulldog"),
                   ("great_pyrenees_{i}.jpg", "great_pyrenees")],
    "StanfordCars": [("cars_train/0{i:04d}.jpg", "2012 AM General Hummer SUV"),
                     ("cars_train/1{i:04d}.jpg", "2012 Acura RL Sedan"),
                     ("cars_test/2{i:04d}.jpg", "2007 Dodge Caliber Wagon")],
    "OxfordFlowers": [("image_0{i:04d}.jpg", "pink primrose"),
                      ("image_1{i:04d}.jpg", "hard-leaved pocket orchid"),
                      ("image_2{i:04d}.jpg", "canterbury bells")],
    "Food101": [("apple_pie/10{i:05d}.jpg", "apple_pie"),
                ("baby_back_ribs/20{i:05d}.jpg", "baby_back_ribs"),
                ("crab_cakes/30{i:05d}.jpg", "crab_cakes")],
    "SUN397": [("a/abbey/sun_a{i:04d}.jpg", "abbey"),
               ("a/apartment_building/outdoor/sun_b{i:04d}.jpg", "outdoor apartment_building"),
               ("b/bakery/shop/sun_c{i:04d}.jpg", "shop bakery")],
    "DescribableTextures": [("banded/banded_{i:04d}.jpg", "banded"),
                            ("blotchy/blotchy_{i:04d}.jpg", "blotchy"),
                            ("zigzagged/zigzagged_{i:04d}.jpg", "zigzagged")],
    "EuroSAT": [("AnnualCrop/AnnualCrop_{i}.jpg", "Annual Crop Land"),
                ("Highway/Highway_{i}.jpg", "Highway or Road"),
                ("SeaLake/SeaLake_{i}.jpg", "Sea or Lake")],
    "UCF101": [("Apply_Eye_Makeup/v_ApplyEyeMakeup_g{i:02d}_c01.jpg", "Apply_Eye_Makeup"),
               ("Baby_Crawling/v_BabyCrawling_g{i:02d}_c01.jpg", "Baby_Crawling"),
               ("Yo_Yo/v_YoYo_g{i:02d}_c01.jpg", "Yo_Yo")],
}

SPLIT_SIZES = {"train": 6, "val": 3, "test": 2}  # images per class

IMAGENET_CLASSES = [("n01440764", "tench"), ("n01443537", "goldfish"),
                    ("n01484850", "great white shark"), ("n01491361", "tiger shark")]


@cache
def tiny_image(fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 30, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


def write_image(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fmt = "PNG" if path.lower().endswith(".png") else "JPEG"
    with open(path, "wb") as f:
        f.write(tiny_image(fmt))


def split_rows(name: str, sizes: dict[str, int] = SPLIT_SIZES) -> dict[str, list[list]]:
    """Rows of a split file for benchmark ``name``; classes interleaved (labels 2, 0, 1, ...)."""
    samples = SPLIT_FILE_SAMPLES[name]
    rows: dict[str, list[list]] = {}
    start = 0
    for part, count in sizes.items():
        rows[part] = [[template.format(i=start + i), label, classname]
                      for i in range(count)
                      for label, (template, classname) in ((2, samples[2]), (0, samples[0]),
                                                           (1, samples[1]))]
        start += count
    return rows


def build_split_file_dataset(root: str, name: str, folder: str, image_folder: str,
                             rows: dict[str, list[list]] | None = None) -> dict[str, list[list]]:
    """``root/folder/split_zhou_<name>.json`` and the images it lists; returns the rows."""
    rows = rows or split_rows(name)
    dataset_dir = os.path.join(root, folder)
    for part_rows in rows.values():
        for path, _, _ in part_rows:
            write_image(os.path.join(dataset_dir, image_folder, path))
    os.makedirs(dataset_dir, exist_ok=True)
    with open(os.path.join(dataset_dir, f"split_zhou_{name}.json"), "w") as f:
        json.dump(rows, f)
    return rows


def write_classnames(folder: str, classes=IMAGENET_CLASSES) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "classnames.txt"), "w") as f:
        f.writelines(f"{wnid} {name}\n" for wnid, name in classes)


def build_imagenet(root: str, train: int = 5, val: int = 2) -> None:
    """``imagenet/images/{train,val}/<wnid>/*.JPEG`` and ``classnames.txt``."""
    folder = os.path.join(root, "imagenet")
    write_classnames(folder)
    for wnid, _ in IMAGENET_CLASSES:
        for i in range(train):
            write_image(os.path.join(folder, "images", "train", wnid, f"{wnid}_{i}.JPEG"))
        for i in range(val):
            write_image(os.path.join(folder, "images", "val", wnid,
                                     f"ILSVRC2012_val_{wnid}_{i}.JPEG"))


def build_variant(root: str, folder: str, image_folder: str, class_dirs: list[str],
                  per_class: int = 2, readme: bool = False) -> None:
    """A test-only variant: ``folder/image_folder/<class dir>/*`` and ``classnames.txt``."""
    dataset_dir = os.path.join(root, folder)
    write_classnames(dataset_dir)
    for class_dir in class_dirs:
        for i in range(per_class):
            write_image(os.path.join(dataset_dir, image_folder, class_dir, f"{i}.jpeg"))
    if readme:
        with open(os.path.join(dataset_dir, image_folder, "README.txt"), "w") as f:
            f.write("ImageNet-A/R readme\n")


FGVC_VARIANTS = ["707-320", "A300B4", "Cessna 172"]


def build_fgvc_aircraft(root: str, per_class: dict[str, int] | None = None) -> None:
    """``fgvc_aircraft/``: images/, variants.txt and images_variant_{train,val,test}.txt."""
    per_class = per_class or {"train": 4, "val": 2, "test": 2}
    folder = os.path.join(root, "fgvc_aircraft")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "variants.txt"), "w") as f:
        f.writelines(f"{name}\n" for name in FGVC_VARIANTS)
    number = 1000000
    for part, count in per_class.items():
        lines = []
        for _ in range(count):
            for name in reversed(FGVC_VARIANTS):
                number += 1
                write_image(os.path.join(folder, "images", f"{number}.jpg"))
                lines.append(f"{number} {name}\n")
        with open(os.path.join(folder, f"images_variant_{part}.txt"), "w") as f:
            f.writelines(lines)


def make_cfg(root, name: str, num_shots: int = -1, seed: int = 1, subsample: str = "all",
             **custom):
    """A default config naming dataset ``name`` under ``root``; ``custom`` sets DATASET.CUSTOM."""
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    for key, value in custom.items():
        cfg.DATASET.CUSTOM[key.upper()] = value
    return cfg


def build_tasks(root: str, tasks: dict[str, list[str]],
                sizes: dict[str, int] | None = None) -> None:
    """Split-file benchmarks named by ``tasks`` (registered names, e.g. ``Caltech101``) with
    the given class names (label = position), ``sizes`` images per class and split."""
    from datasets.benchmarks import SPLIT_FILE_BENCHMARKS

    table = {b.name: b for b in SPLIT_FILE_BENCHMARKS}
    sizes = sizes or {"train": 4, "val": 2, "test": 2}
    for name, classnames in tasks.items():
        rows: dict[str, list[list]] = {}
        for part, count in sizes.items():
            rows[part] = [[f"c{label}/{part}_{i}.jpg", label, classname]
                          for i in range(count) for label, classname in enumerate(classnames)]
        benchmark = table[name]
        build_split_file_dataset(root, name, benchmark.folder, benchmark.image_folder, rows)
