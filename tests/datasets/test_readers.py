"""Each benchmark reader on a tiny copy of its real layout: items, labels, class names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datasets.benchmarks import ALL_BENCHMARKS, SPLIT_FILE_BENCHMARKS
from engine.config import get_cfg_default
from engine.data.datasets import build_dataset
from engine.registry import DATASET_REGISTRY
from tests.datasets import layouts
from tests.datasets.layouts import make_cfg

REPO = Path(__file__).resolve().parents[2]

# Folder names and image folders as CoOp's DATASETS.md and readers give them.
EXPECTED_LAYOUT = {
    "Caltech101": ("caltech-101", "101_ObjectCategories"),
    "OxfordPets": ("oxford_pets", "images"),
    "StanfordCars": ("stanford_cars", ""),
    "OxfordFlowers": ("oxford_flowers", "jpg"),
    "Food101": ("food-101", "images"),
    "SUN397": ("sun397", "SUN397"),
    "DescribableTextures": ("dtd", "images"),
    "EuroSAT": ("eurosat", "2750"),
    "UCF101": ("ucf101", "UCF-101-midframes"),
}


def test_table_matches_coop_layouts():
    assert {b.name: (b.folder, b.image_folder) for b in SPLIT_FILE_BENCHMARKS} == EXPECTED_LAYOUT
    assert {b.split_file for b in SPLIT_FILE_BENCHMARKS} == {
        f"split_zhou_{name}.json" for name in EXPECTED_LAYOUT}


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYOUT))
def test_split_file_reader(root, name):
    folder, image_folder = EXPECTED_LAYOUT[name]
    rows = layouts.build_split_file_dataset(str(root), name, folder, image_folder)
    dataset = build_dataset(make_cfg(root, name))
    image_dir = os.path.join(os.path.abspath(root), folder, image_folder)
    for part, items in (("train", dataset.train_x), ("val", dataset.val),
                        ("test", dataset.test)):
        assert [(d.impath, d.label, d.classname) for d in items] == [
            (os.path.join(image_dir, path), label, classname)
            for path, label, classname in rows[part]]
        assert all(os.path.isfile(d.impath) for d in items)
    assert dataset.num_classes == 3
    assert dataset.classnames == [c for _, c in layouts.SPLIT_FILE_SAMPLES[name]]
    assert not os.path.exists(os.path.join(root, folder, "split_fewshot"))  # nothing drawn


def test_imagenet(root):
    layouts.build_imagenet(str(root))
    dataset = build_dataset(make_cfg(root, "ImageNet"))
    names = [name for _, name in layouts.IMAGENET_CLASSES]
    assert dataset.classnames == names
    assert len(dataset.train_x) == 4 * 5 and len(dataset.test) == 4 * 2
    assert dataset.val == dataset.test  # the official reader evaluates on val as test
    for item in dataset.train_x:
        wnid = layouts.IMAGENET_CLASSES[item.label][0]
        assert Path(item.impath).parent == root.absolute() / "imagenet/images/train" / wnid
        assert item.classname == names[item.label]
    assert all("/images/val/" in item.impath for item in dataset.test)
    assert (root / "imagenet" / "preprocessed.json").is_file()


def test_imagenet_listing_is_reused(root):
    layouts.build_imagenet(str(root))
    first = build_dataset(make_cfg(root, "ImageNet"))
    os.remove(root / "imagenet" / "classnames.txt")  # not needed once listed
    second = build_dataset(make_cfg(root, "ImageNet"))
    assert second.train_x == first.train_x and second.test == first.test


def test_imagenet_few_shot_and_base_classes(root):
    layouts.build_imagenet(str(root))
    dataset = build_dataset(make_cfg(root, "ImageNet", num_shots=2, subsample="base"))
    assert dataset.classnames == ["tench", "goldfish"]
    assert len(dataset.train_x) == 2 * 2
    assert len(dataset.test) == 2 * 2 and dataset.val == dataset.test  # val is not few-shot


def test_imagenetv2(root):
    layouts.build_variant(str(root), "imagenetv2", "imagenetv2-matched-frequency-format-val",
                          ["0", "1", "2", "3"])
    dataset = build_dataset(make_cfg(root, "ImageNetV2"))
    assert dataset.classnames == [name for _, name in layouts.IMAGENET_CLASSES]
    for item in dataset.test:
        assert os.path.basename(os.path.dirname(item.impath)) == str(item.label)
    assert dataset.train_x == dataset.test and len(dataset.test) == 8


def test_imagenet_sketch(root):
    wnids = [wnid for wnid, _ in layouts.IMAGENET_CLASSES]
    layouts.build_variant(str(root), "imagenet-sketch", "images", wnids[::-1])
    dataset = build_dataset(make_cfg(root, "ImageNetSketch"))
    assert dataset.classnames == [name for _, name in layouts.IMAGENET_CLASSES]
    assert len(dataset.test) == 8


@pytest.mark.parametrize("name,folder,image_folder", [
    ("ImageNetA", "imagenet-adversarial", "imagenet-a"),
    ("ImageNetR", "imagenet-rendition", "imagenet-r")])
def test_imagenet_a_and_r_use_their_classes_with_imagenet_names(root, name, folder,
                                                                  image_folder):
    subset = ["n01491361", "n01443537"]  # a subset of ImageNet's classes, as their 200
    layouts.build_variant(str(root), folder, image_folder, subset, readme=True)
    dataset = build_dataset(make_cfg(root, name))
    assert dataset.classnames == ["goldfish", "tiger shark"]  # sorted WordNet ids, labels 0..1
    assert sorted({item.label for item in dataset.test}) == [0, 1]
    assert all(f"/{image_folder}/n014" in item.impath for item in dataset.test)


def test_fgvc_aircraft(root):
    layouts.build_fgvc_aircraft(str(root))
    dataset = build_dataset(make_cfg(root, "FGVCAircraft"))
    assert dataset.classnames == layouts.FGVC_VARIANTS
    assert [len(dataset.train_x), len(dataset.val), len(dataset.test)] == [12, 6, 6]
    assert dataset.train_x[0].classname == "Cessna 172" and dataset.train_x[0].label == 2
    assert dataset.train_x[0].impath == os.path.join(
        os.path.abspath(root), "fgvc_aircraft", "images", "1000001.jpg")


OFFICIAL_CONFIGS = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DescribableTextures",
    "eurosat": "EuroSAT", "ucf101": "UCF101", "imagenetv2": "ImageNetV2",
    "imagenet_sketch": "ImageNetSketch", "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR"}


@pytest.mark.parametrize("config,name", sorted(OFFICIAL_CONFIGS.items()))
def test_official_dataset_configs(config, name):
    path = REPO / "configs" / "datasets" / f"{config}.yaml"
    assert path.read_text() == f'DATASET:\n  NAME: "{name}"\n'
    cfg = get_cfg_default()
    cfg.merge_from_file(str(path))
    assert cfg.DATASET.NAME == name and name in DATASET_REGISTRY
    assert (config, name) in {(b.config, b.name) for b in ALL_BENCHMARKS}


def test_custom_config_merges():
    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs" / "datasets" / "custom.yaml"))
    assert cfg.DATASET.NAME == "Custom" and tuple(cfg.DATASET.CUSTOM.SPLIT) == (0.5, 0.2, 0.3)


def test_data_manager_loads_a_reader(root):
    from engine.data import DataManager

    layouts.build_split_file_dataset(str(root), "EuroSAT", "eurosat", "2750")
    cfg = make_cfg(root, "EuroSAT", num_shots=2, subsample="base")
    cfg.INPUT.SIZE = (8, 8)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    manager = DataManager(cfg)
    batch = next(iter(manager.train_loader_x))
    assert tuple(batch["img"].shape) == (4, 3, 8, 8)
    assert manager.classnames == ["Annual Crop Land", "Highway or Road"]
