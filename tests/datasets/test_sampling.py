"""Few-shot selection equals Dassl's algorithm; the JSON cache; base/new subsampling."""

from __future__ import annotations

import json
import logging
import random

import pytest

from datasets.sampling import subsample_classes
from engine.data.datasets import Datum, build_dataset, sample_few_shot
from tests.datasets import layouts
from tests.datasets.layouts import make_cfg

FOLDERS = {"DescribableTextures": ("dtd", "images"), "EuroSAT": ("eurosat", "2750"),
           "Caltech101": ("caltech-101", "101_ObjectCategories")}


def dassl_few_shot(items, k):
    """Dassl's generate_fewshot_dataset restated: per label in order of first appearance,
    random.sample(items of that label, k), or all of them when there are fewer."""
    labels, groups = [], {}
    for item in items:
        if item.label not in groups:
            labels.append(item.label)
            groups[item.label] = []
        groups[item.label].append(item)
    out = []
    for label in labels:
        group = groups[label]
        out.extend(random.sample(group, k) if len(group) >= k else group)
    return out


def uneven_rows(name):
    """A split whose classes have different sizes and are interleaved (first label: 2)."""
    rows = layouts.split_rows(name, {"train": 7, "val": 5, "test": 2})
    rows["train"] = [row for row in rows["train"] if not (row[1] == 1 and row[0][-5] in "56")]
    return rows


@pytest.mark.parametrize("name", sorted(FOLDERS))
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 4, 6])
def test_few_shot_equals_dassl(root, name, seed, k):
    folder, image_folder = FOLDERS[name]
    layouts.build_split_file_dataset(str(root), name, folder, image_folder, uneven_rows(name))
    full = build_dataset(make_cfg(root, name))
    random.seed(seed)
    expected_train = dassl_few_shot(full.train_x, k)
    expected_val = dassl_few_shot(full.val, min(k, 4))
    random.seed(seed)  # as train.py does before building the dataset
    dataset = build_dataset(make_cfg(root, name, num_shots=k, seed=seed))
    assert dataset.train_x == expected_train
    assert dataset.val == expected_val
    assert dataset.test == full.test
    assert [item.label for item in dataset.train_x][:min(k, 5)] == [2] * min(k, 5)


def test_more_shots_than_a_class_has_warns_and_samples_as_dassl(root, caplog):
    layouts.build_split_file_dataset(str(root), "EuroSAT", "eurosat", "2750",
                                     uneven_rows("EuroSAT"))
    full = build_dataset(make_cfg(root, "EuroSAT"))
    random.seed(1)
    expected = dassl_few_shot(full.train_x, 6), dassl_few_shot(full.val, 4)
    random.seed(1)
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset(make_cfg(root, "EuroSAT", num_shots=6, seed=1))
    assert (dataset.train_x, dataset.val) == expected
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["1 class has fewer training images than the 6 shots asked for "
                        "('Highway or Road' has 5): all of them are kept"]

    group = items([0, 0, 1])
    with caplog.at_level(logging.WARNING):
        drawn = sample_few_shot(group, 3, repeat=True, rng=random.Random(0))
    rng = random.Random(0)  # Dassl's repeat: random.choices per class, in order
    assert drawn == rng.choices(group[:2], k=3) + rng.choices(group[2:], k=3)
    assert "2 classes have fewer images than the 3 shots asked for ('c0' has 2, 'c1' has 1): " \
           "drawn with replacement" in caplog.text


def test_cache_is_json_and_read_back(root):
    rows = layouts.build_split_file_dataset(str(root), "EuroSAT", "eurosat", "2750")
    (root / "eurosat" / "split_fewshot").mkdir()
    (root / "eurosat" / "split_fewshot" / "shot_2-seed_1.pkl").write_bytes(b"official pickle")
    random.seed(1)
    first = build_dataset(make_cfg(root, "EuroSAT", num_shots=2, seed=1))
    cache = root / "eurosat" / "split_fewshot" / "shot_2-seed_1.json"
    saved = json.loads(cache.read_text())
    assert set(saved) == {"train", "val"}
    assert saved["train"] == [[path, label, name] for path, label, name in
                              ([item.impath.split("/2750/")[1], item.label, item.classname]
                               for item in first.train_x)]
    assert all(row in rows["train"] for row in saved["train"])
    random.seed(12345)
    state = random.getstate()
    second = build_dataset(make_cfg(root, "EuroSAT", num_shots=2, seed=1))
    assert random.getstate() == state  # a cache hit draws nothing
    assert second.train_x == first.train_x and second.val == first.val
    assert (root / "eurosat" / "split_fewshot" / "shot_2-seed_1.pkl").read_bytes() == \
        b"official pickle"


def test_other_seed_other_cache_file(root):
    layouts.build_split_file_dataset(str(root), "DescribableTextures", "dtd", "images")
    selections = {}
    for seed in (1, 2):
        random.seed(seed)
        selections[seed] = build_dataset(make_cfg(root, "DescribableTextures", num_shots=2,
                                                  seed=seed)).train_x
    files = sorted(p.name for p in (root / "dtd" / "split_fewshot").iterdir())
    assert files == ["shot_2-seed_1.json", "shot_2-seed_2.json"]
    assert selections[1] != selections[2]


def items(labels):
    return [Datum(impath=f"{i}.jpg", label=label, classname=f"c{label}")
            for i, label in enumerate(labels)]


def test_subsample_base_and_new():
    train, test = items([4, 0, 3, 1, 2, 0, 4]), items([0, 1, 2, 3, 4])
    base_train, base_test = subsample_classes(train, test, subsample="base")
    assert [(d.impath, d.label, d.classname) for d in base_train] == [
        ("1.jpg", 0, "c0"), ("3.jpg", 1, "c1"), ("4.jpg", 2, "c2"), ("5.jpg", 0, "c0")]
    assert [d.classname for d in base_test] == ["c0", "c1", "c2"]
    new_train, new_test = subsample_classes(train, test, subsample="new")
    assert [(d.impath, d.label, d.classname) for d in new_train] == [
        ("0.jpg", 1, "c4"), ("2.jpg", 0, "c3"), ("6.jpg", 1, "c4")]
    assert [d.label for d in new_test] == [0, 1]


def test_subsample_cuts_the_labels_of_all_splits_and_all_is_identity():
    # val has a label absent from train: the official code cuts the training labels only and
    # drops label 5 silently; here it counts, so the new half keeps it (and DatasetBase then
    # reports that it has no training image)
    train, val = items([0, 1, 2, 3]), items([5, 0, 3])
    base_train, base_val = subsample_classes(train, val, subsample="base")
    assert [d.label for d in base_train] == [0, 1, 2] and [d.label for d in base_val] == [0]
    new_train, new_val = subsample_classes(train, val, subsample="new")
    assert [d.classname for d in new_train] == ["c3"]
    assert [(d.classname, d.label) for d in new_val] == [("c5", 1), ("c3", 0)]
    assert subsample_classes(train, val, subsample="all") == [train, val]
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
        subsample_classes(train, subsample="Base")


def test_reader_base_new_after_few_shot(root):
    layouts.build_split_file_dataset(str(root), "UCF101", "ucf101", "UCF-101-midframes")
    base = build_dataset(make_cfg(root, "UCF101", num_shots=2, subsample="base"))
    new = build_dataset(make_cfg(root, "UCF101", num_shots=2, subsample="new"))
    assert base.classnames == ["Apply_Eye_Makeup", "Baby_Crawling"]
    assert new.classnames == ["Yo_Yo"] and {d.label for d in new.test} == {0}
    assert len(base.train_x) == 4 and len(base.val) == 4 and len(base.test) == 4


def test_imagenet_few_shot_draws_training_images_only(root):
    layouts.build_imagenet(str(root))
    full = build_dataset(make_cfg(root, "ImageNet"))
    random.seed(3)
    expected = dassl_few_shot(full.train_x, 2)
    state_after_train = random.getstate()
    random.seed(3)
    dataset = build_dataset(make_cfg(root, "ImageNet", num_shots=2, seed=3))
    assert dataset.train_x == expected and random.getstate() == state_after_train
    assert dataset.val == full.test == dataset.test


def test_fgvc_aircraft_few_shot_equals_dassl(root):
    layouts.build_fgvc_aircraft(str(root))
    full = build_dataset(make_cfg(root, "FGVCAircraft"))
    random.seed(5)
    expected = (dassl_few_shot(full.train_x, 3), dassl_few_shot(full.val, 3))
    random.seed(5)
    dataset = build_dataset(make_cfg(root, "FGVCAircraft", num_shots=3, seed=5))
    assert (dataset.train_x, dataset.val) == expected


def test_test_only_variants_ignore_shots_and_subsampling(root):
    layouts.build_variant(str(root), "imagenetv2", "imagenetv2-matched-frequency-format-val",
                          ["0", "1", "2", "3"])
    state = random.getstate()
    dataset = build_dataset(make_cfg(root, "ImageNetV2", num_shots=1, subsample="base"))
    assert random.getstate() == state
    assert len(dataset.train_x) == len(dataset.test) == 8 and dataset.num_classes == 4
