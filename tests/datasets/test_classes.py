"""The label space comes from all splits: a class without training images is an error naming
it (or, where a protocol allows it, a warning), never a silently smaller or shifted one."""

from __future__ import annotations

import json
import logging

import pytest

from engine.data.datasets import DatasetBase, Datum, build_dataset
from tests.datasets import layouts
from tests.datasets.layouts import make_cfg

# Food101 in layouts: labels 0 apple_pie, 1 baby_back_ribs, 2 crab_cakes


def without_training_images(root, label: int) -> None:
    rows = layouts.split_rows("Food101")
    rows["train"] = [row for row in rows["train"] if row[1] != label]
    layouts.build_split_file_dataset(str(root), "Food101", "food-101", "images", rows=rows)


@pytest.mark.parametrize("label, name", [(2, "crab_cakes"), (1, "baby_back_ribs")],
                         ids=["last-label", "middle-label"])
def test_a_class_without_training_images_is_an_error_naming_it(root, label, name):
    # before: the last label gave a 2-class model scored on 3 classes (silently wrong
    # metrics), another label "Target 2 is out of bounds" in the loss
    without_training_images(root, label)
    with pytest.raises(ValueError, match=rf"Food101: 1 of 3 classes have no training image.*"
                                         rf"{label} '{name}' \(in val and test\)"):
        build_dataset(make_cfg(root, "Food101"))


def test_few_shot_selection_without_a_class_is_an_error(root):
    rows = layouts.build_split_file_dataset(str(root), "Food101", "food-101", "images")
    cache = root / "food-101" / "split_fewshot" / "shot_1-seed_1.json"
    cache.parent.mkdir()
    cache.write_text(json.dumps({"train": [r for r in rows["train"] if r[1] != 0][:2],
                                 "val": rows["val"][:3]}))
    with pytest.raises(ValueError, match=r"0 'apple_pie' \(in val and test\).*split_fewshot"):
        build_dataset(make_cfg(root, "Food101", num_shots=1))


def test_base_new_split_counts_classes_of_every_split(root):
    # the new half of {0, 1, 2} is {2}: with no training image of it, an error (the official
    # cut of the training labels {0, 1} would have made class 1 "new" and dropped class 2)
    without_training_images(root, 2)
    with pytest.raises(ValueError, match=r"1 of 1 classes .*0 'crab_cakes' \(in val and test\)"):
        build_dataset(make_cfg(root, "Food101", subsample="new"))


def items(labels: list[int], prefix: str) -> list[Datum]:
    return [Datum(impath=f"{prefix}{i}.jpg", label=label, classname=f"c{label}")
            for i, label in enumerate(labels)]


class OpenSet(DatasetBase):
    allow_untrained_classes = True


def test_test_only_classes_when_a_protocol_allows_them(caplog):
    with caplog.at_level(logging.WARNING):
        dataset = OpenSet(train_x=items([0, 1, 0], "t"), test=items([2, 1, 3], "e"))
    assert dataset.num_classes == 4
    assert dataset.classnames == ["c0", "c1", "c2", "c3"]
    assert dataset.lab2cname == {0: "c0", 1: "c1", 2: "c2", 3: "c3"}
    assert "OpenSet: 2 of 4 classes have no training image" in caplog.text
    assert "2 'c2' (in test), 3 'c3' (in test)" in caplog.text


def test_label_space_errors():
    with pytest.raises(ValueError, match=r"labels must be 0..n-1.*labels \[1\]"):
        DatasetBase(train_x=items([0, 2], "t"), test=items([0, 2], "e"))
    mixed = items([0, 1], "t") + [Datum(impath="x.jpg", label=1, classname="other")]
    with pytest.raises(ValueError, match=r"label 1 is 'c1' in train_x but 'other' in test"):
        DatasetBase(train_x=mixed[:2], test=mixed[2:])
    # a test-only dataset (no train_x, or the test list itself) needs nothing more
    assert DatasetBase(test=items([1, 0], "e")).classnames == ["c0", "c1"]
    with pytest.raises(ValueError, match="2 of 2 classes have no training image"):
        DatasetBase(train_x=[], test=items([1, 0], "e"))
