"""The custom dataset: class folders or a CSV, split once reproducibly and kept."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from engine.data.datasets import build_dataset
from tests.datasets import layouts
from tests.datasets.layouts import make_cfg

CLASSES = {"cat": 10, "dog": 10, "bird": 5}


def build_folders(folder, classes=CLASSES):
    for name, count in classes.items():
        for i in range(count):
            layouts.write_image(str(folder / "images" / name / f"{name}_{i:02d}.jpg"))


def load(root, **options):
    return build_dataset(make_cfg(root, "Custom", **options))


def test_class_folders(root):
    build_folders(root / "custom")
    (root / "custom" / "images" / "cat" / "notes.txt").write_text("not an image")
    state = random.getstate()
    dataset = load(root)
    assert random.getstate() == state  # the split has its own generator
    assert dataset.classnames == ["bird", "cat", "dog"]
    counts = [(len([d for d in part if d.classname == "cat"]),
               len([d for d in part if d.classname == "bird"]))
              for part in (dataset.train_x, dataset.val, dataset.test)]
    assert counts == [(5, 2), (2, 1), (3, 2)]  # 50/20/30 % of 10 and of 5, CoOp's rounding
    paths = [d.impath for d in dataset.train_x + dataset.val + dataset.test]
    assert len(set(paths)) == 25 and all(p.endswith(".jpg") for p in paths)
    split = json.loads((root / "custom" / "split_custom.json").read_text())
    assert ["cat/cat_00.jpg", 1, "cat"] in split["train"] + split["val"] + split["test"]


def test_split_is_kept_and_reused(root):
    build_folders(root / "custom")
    first = load(root)
    split_file = root / "custom" / "split_custom.json"
    saved = split_file.read_text()
    layouts.write_image(str(root / "custom" / "images" / "cat" / "cat_99.jpg"))
    second = load(root, split_seed=7)  # the kept split wins over a new seed
    assert split_file.read_text() == saved
    assert (second.train_x, second.val, second.test) == (first.train_x, first.val, first.test)


def test_split_is_reproducible(tmp_path):
    rows = {}
    for copy, seed in (("a", 1), ("b", 1), ("c", 2)):
        build_folders(tmp_path / copy / "custom")
        load(tmp_path / copy, split_seed=seed)
        rows[copy] = json.loads((tmp_path / copy / "custom" / "split_custom.json").read_text())
    assert rows["a"] == rows["b"]
    assert rows["a"] != rows["c"]


def test_csv(root):
    folder = root / "photos"
    lines = ["path,label"]
    for i, label in enumerate(["golden retriever", "tabby cat"] * 5):
        layouts.write_image(str(folder / "img" / f"{i}.png"))
        lines.append(f"img/{i}.png,{label}")
    folder.joinpath("labels.csv").write_text("\n".join(lines) + "\n")
    dataset = load(root, dir="photos", image_dir="", csv="labels.csv", split=(0.6, 0.2, 0.2))
    assert dataset.classnames == ["golden retriever", "tabby cat"]
    assert [len(dataset.train_x), len(dataset.val), len(dataset.test)] == [6, 2, 2]
    for item in dataset.train_x:
        index = int(item.impath.rsplit("/", 1)[1].split(".")[0])
        assert item.label == index % 2
    assert (folder / "split_custom.json").is_file()


def test_numeric_csv_labels_sort_as_numbers(root):
    folder = root / "custom"
    lines = []
    for i, label in enumerate(["10", "9", "2"] * 3):
        layouts.write_image(str(folder / "images" / f"{i}.jpg"))
        lines.append(f"{i}.jpg,{label}")
    folder.joinpath("data.csv").write_text("\n".join(lines))
    dataset = load(root, csv="data.csv", split=(0.34, 0.33, 0.33))
    assert dataset.classnames == ["2", "9", "10"]


def test_custom_few_shot_and_base(root):
    build_folders(root / "custom")
    dataset = load(root, num_shots=2, subsample="base")
    assert dataset.classnames == ["bird", "cat"]
    assert len(dataset.train_x) == 4 and len(dataset.val) == 3  # bird has one val image
    assert (root / "custom" / "split_fewshot" / "shot_2-seed_1.json").is_file()


def test_custom_errors(root):
    with pytest.raises(FileNotFoundError, match="DATASET.CUSTOM.DIR(.|\n)*DATASETS.md"):
        load(root)
    build_folders(root / "custom", {"cat": 10, "dog": 2})
    with pytest.raises(ValueError, match=r"too few images.*dog \(2\)"):
        load(root)
    with pytest.raises(ValueError, match="DATASET.CUSTOM.SPLIT"):
        load(root, split=(0.5, 0.5, 0.5))
    (root / "custom" / "bad.csv").write_text("a.jpg,cat,extra\n")
    with pytest.raises(ValueError, match="line 1: expected 2 columns"):
        load(root, csv="bad.csv")


def test_kept_split_with_missing_images(root):
    build_folders(root / "custom")
    load(root)
    shutil.rmtree(root / "custom" / "images" / "dog")
    with pytest.raises(FileNotFoundError, match=r"10 of 25 images listed in .*split_custom.json"):
        load(root)
