"""The official readers' pickled caches (few-shot selections, ImageNet's listing) are reused,
read without running code, with paths relocated from the machine that wrote them."""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import sys
import types

import pytest

from datasets.official_cache import OfficialCacheError, read_official_cache
from engine.data.datasets import build_dataset
from tests.datasets import layouts
from tests.datasets.layouts import make_cfg
from tests.datasets.test_sampling import dassl_few_shot

FOREIGN = "/mnt/lab-nfs/DATA"  # where the official run kept its data (another machine)


def official_datum_class():
    """A stand-in for Dassl's Datum under its real module name, so that pickles written with it
    name ``dassl.data.datasets.base_dataset.Datum`` as the official files do."""
    module = types.ModuleType("dassl.data.datasets.base_dataset")

    class Datum:
        def __init__(self, impath="", label=0, domain=0, classname=""):
            self._impath, self._label = impath, label
            self._domain, self._classname = domain, classname

    Datum.__module__ = module.__name__
    Datum.__qualname__ = "Datum"
    module.Datum = Datum
    return module, Datum


def write_official_pickle(path, splits, protocol=pickle.HIGHEST_PROTOCOL):
    """``{split: [(absolute path, label, classname), ...]}`` pickled as the official readers
    do, with the fake Dassl module present only while writing."""
    module, datum = official_datum_class()
    names = ["dassl", "dassl.data", "dassl.data.datasets", module.__name__]
    saved = {name: sys.modules.get(name) for name in names}
    for name in names[:-1]:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[module.__name__] = module
    try:
        data = {name: [datum(impath=p, label=label, classname=c) for p, label, c in rows]
                for name, rows in splits.items()}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value


def foreign_rows(rows, folder, image_folder):
    return [(f"{FOREIGN}/{folder}/{image_folder}/{path}", label, name)
            for path, label, name in rows]


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_official_few_shot_selection_is_used(root, protocol):
    rows = layouts.build_split_file_dataset(str(root), "EuroSAT", "eurosat", "2750")
    # a selection our draw would not make: the last two images of each class, last first
    chosen = {"train": [], "val": []}
    for part in chosen:
        for label in (2, 0, 1):
            chosen[part].extend([r for r in rows[part] if r[1] == label][::-1][:2])
    pkl = root / "eurosat" / "split_fewshot" / "shot_2-seed_1.pkl"
    write_official_pickle(str(pkl), {part: foreign_rows(chosen[part], "eurosat", "2750")
                                     for part in chosen}, protocol)
    assert "dassl" not in sys.modules
    random.seed(1)
    state = random.getstate()
    dataset = build_dataset(make_cfg(root, "EuroSAT", num_shots=2, seed=1))
    assert random.getstate() == state  # as an official cache hit: nothing drawn
    image_dir = str(root / "eurosat" / "2750")
    for part, items in (("train", dataset.train_x), ("val", dataset.val)):
        assert [[os.path.relpath(i.impath, image_dir), i.label, i.classname] for i in items] \
            == chosen[part]
        assert all(os.path.exists(item.impath) for item in items)
    # saved as our JSON too, which later runs read
    saved = json.loads((pkl.parent / "shot_2-seed_1.json").read_text())
    assert saved == chosen
    assert "dassl" not in sys.modules


def test_official_selection_that_does_not_fit_is_not_used(root, caplog):
    rows = layouts.build_split_file_dataset(str(root), "EuroSAT", "eurosat", "2750")
    stranger = [(f"{FOREIGN}/eurosat/2750/Forest/Forest_9999.jpg", 0, "forest")]
    pkl = root / "eurosat" / "split_fewshot" / "shot_1-seed_3.pkl"
    write_official_pickle(str(pkl), {"train": stranger + foreign_rows(rows["train"][:2],
                                                                      "eurosat", "2750"),
                                     "val": foreign_rows(rows["val"][:3], "eurosat", "2750")})
    full = build_dataset(make_cfg(root, "EuroSAT"))
    random.seed(3)
    expected = dassl_few_shot(full.train_x, 1)
    random.seed(3)
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset(make_cfg(root, "EuroSAT", num_shots=1, seed=3))
    assert dataset.train_x == expected
    assert "Forest_9999.jpg" in caplog.text and "drawing the selection" in caplog.text


def test_official_listing_with_other_labels_is_not_used(root, caplog):
    rows = layouts.build_split_file_dataset(str(root), "EuroSAT", "eurosat", "2750")
    relabelled = [(path, (label + 1) % 3, name) for path, label, name in rows["train"][:3]]
    write_official_pickle(str(root / "eurosat" / "split_fewshot" / "shot_1-seed_1.pkl"),
                          {"train": foreign_rows(relabelled, "eurosat", "2750"),
                           "val": foreign_rows(rows["val"][:3], "eurosat", "2750")})
    with caplog.at_level(logging.WARNING):
        random.seed(1)
        build_dataset(make_cfg(root, "EuroSAT", num_shots=1, seed=1))
    assert "not in this split with the same label" in caplog.text


def test_imagenet_official_listing_gives_the_order(root):
    layouts.build_imagenet(str(root), train=4, val=2)
    image_dir = root / "imagenet" / "images"
    # the listing order of another machine: each class's images in reverse name order
    listing = {"train": [], "test": []}
    for part, split in (("train", "train"), ("test", "val")):
        for label, (wnid, name) in enumerate(layouts.IMAGENET_CLASSES):
            files = sorted(os.listdir(image_dir / split / wnid), reverse=True)
            listing[part].extend((f"{FOREIGN}/imagenet/images/{split}/{wnid}/{f}", label, name)
                                 for f in files)
    write_official_pickle(str(root / "imagenet" / "preprocessed.pkl"), listing)
    full = build_dataset(make_cfg(root, "ImageNet"))
    relocated = [os.path.relpath(item.impath, image_dir) for item in full.train_x]
    assert relocated == ["/".join(p.split("/")[-3:]) for p, _, _ in listing["train"]]
    assert [item.label for item in full.test] == [label for _, label, _ in listing["test"]]
    saved = json.loads((root / "imagenet" / "preprocessed.json").read_text())
    assert [row[0] for row in saved["train"]] == relocated
    # few-shot draws follow that order
    random.seed(2)
    expected = dassl_few_shot(full.train_x, 2)
    random.seed(2)
    assert build_dataset(make_cfg(root, "ImageNet", num_shots=2, seed=2)).train_x == expected


def test_imagenet_official_listing_of_other_images_is_an_error(root):
    layouts.build_imagenet(str(root), train=2, val=1)
    wnid, name = layouts.IMAGENET_CLASSES[0]
    write_official_pickle(str(root / "imagenet" / "preprocessed.pkl"), {
        "train": [(f"{FOREIGN}/imagenet/images/train/{wnid}/absent.JPEG", 0, name)],
        "test": []})
    with pytest.raises(FileNotFoundError, match="absent.JPEG") as error:
        build_dataset(make_cfg(root, "ImageNet"))
    assert "preprocessed.pkl away" in str(error.value)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_pickle",))


def test_a_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "shot_1-seed_1.pkl"
    path.write_bytes(pickle.dumps({"train": [Exploit()]}))
    with pytest.raises(OfficialCacheError, match="system"):
        read_official_cache(str(path))
    assert not (tmp_path / "pwned_by_pickle").exists()


@pytest.mark.parametrize("payload", [b"not a pickle", pickle.dumps([1, 2]),
                                     pickle.dumps({"train": [1, 2]})])
def test_malformed_caches_are_explained(tmp_path, payload):
    path = tmp_path / "preprocessed.pkl"
    path.write_bytes(payload)
    with pytest.raises(OfficialCacheError, match="delete or move"):
        read_official_cache(str(path))
