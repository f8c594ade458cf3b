"""Errors name the missing path and the fix; the data-checking command reports per dataset."""

from __future__ import annotations

import json
import os

import pytest

from datasets.check import main as check_main
from datasets.splits import DatasetFilesError
from engine.data.datasets import build_dataset
from tests.datasets import layouts
from tests.datasets.layouts import make_cfg


def test_missing_dataset_folder(root):
    with pytest.raises(DatasetFilesError) as info:
        build_dataset(make_cfg(root, "Caltech101"))
    message = str(info.value)
    assert os.path.join(str(root.absolute()), "caltech-101") in message
    assert "DATASET.ROOT" in message and "DATASETS.md" in message and "Caltech101" in message


def test_missing_split_file_names_path_and_download(root):
    layouts.build_split_file_dataset(str(root), "OxfordPets", "oxford_pets", "images")
    os.remove(root / "oxford_pets" / "split_zhou_OxfordPets.json")
    with pytest.raises(DatasetFilesError) as info:
        build_dataset(make_cfg(root, "OxfordPets"))
    message = str(info.value)
    assert str(root.absolute() / "oxford_pets" / "split_zhou_OxfordPets.json") in message
    assert "drive.google.com/file/d/1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs" in message
    assert "DATASETS.md" in message


def test_missing_images_reported_together(root):
    rows = layouts.build_split_file_dataset(str(root), "Food101", "food-101", "images")
    image_dir = root / "food-101" / "images"
    gone = [rows["train"][0][0], rows["val"][1][0], rows["test"][2][0]]
    gone += [path for path, _, _ in rows["train"][1:6]]
    for path in gone:
        os.remove(image_dir / path)
    with pytest.raises(DatasetFilesError) as info:
        build_dataset(make_cfg(root, "Food101"))
    message = str(info.value)
    total = sum(len(part) for part in rows.values())
    assert f"{len(gone)} of {total} images" in message and "split_zhou_Food101.json" in message
    assert str(image_dir.absolute() / rows["train"][0][0]) in message
    assert "... and 3 more" in message


def test_missing_image_folder(root):
    layouts.build_split_file_dataset(str(root), "EuroSAT", "eurosat", "2750")
    os.rename(root / "eurosat" / "2750", root / "eurosat" / "EuroSAT_RGB")
    with pytest.raises(DatasetFilesError, match=r"image folder not found: .*eurosat/2750"):
        build_dataset(make_cfg(root, "EuroSAT"))


def test_imagenet_errors(root):
    layouts.build_imagenet(str(root))
    os.remove(root / "imagenet" / "classnames.txt")
    with pytest.raises(DatasetFilesError, match="classnames.txt(.|\n)*drive.google.com"):
        build_dataset(make_cfg(root, "ImageNet"))
    layouts.write_classnames(str(root / "imagenet"), layouts.IMAGENET_CLASSES[:3])
    with pytest.raises(DatasetFilesError, match="n01491361"):
        build_dataset(make_cfg(root, "ImageNet"))


def test_variant_without_classnames(root):
    layouts.build_variant(str(root), "imagenet-adversarial", "imagenet-a", ["n01443537"])
    os.remove(root / "imagenet-adversarial" / "classnames.txt")
    with pytest.raises(DatasetFilesError, match="Copy \\$DATA/imagenet/classnames.txt"):
        build_dataset(make_cfg(root, "ImageNetA"))


def test_imagenetv2_missing_label_folder(root):
    layouts.build_variant(str(root), "imagenetv2", "imagenetv2-matched-frequency-format-val",
                          ["0", "1", "3"])
    with pytest.raises(DatasetFilesError, match=r"1 of the 4 label folders.*\['2'\]"):
        build_dataset(make_cfg(root, "ImageNetV2"))


def test_fgvc_missing_images_and_unknown_variant(root):
    layouts.build_fgvc_aircraft(str(root))
    os.remove(root / "fgvc_aircraft" / "images" / "1000002.jpg")
    with pytest.raises(DatasetFilesError, match="1 of 12 images listed in .*train.txt"):
        build_dataset(make_cfg(root, "FGVCAircraft"))
    layouts.write_image(str(root / "fgvc_aircraft" / "images" / "1000002.jpg"))
    with open(root / "fgvc_aircraft" / "images_variant_test.txt", "a") as f:
        f.write("1000001 Boeing 999\n")
    with pytest.raises(ValueError, match="line 7: variant 'Boeing 999'"):
        build_dataset(make_cfg(root, "FGVCAircraft"))


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows["test"].__setitem__(1, ["a.jpg", 0]),
     r"'test' row 1 \(\['a.jpg', 0\]\): expected \[relative path, label, class name\], got 2"),
    (lambda rows: rows["train"].__setitem__(4, "a.jpg"), r"'train' row 4 .*got str"),
    (lambda rows: rows["val"][0].__setitem__(1, "2"), r"'val' row 0 .*label must be an integer"),
    (lambda rows: rows["val"][0].__setitem__(1, -1), r"'val' row 0 .*label must be an integer"),
    (lambda rows: rows["val"][0].__setitem__(1, 1.5), r"'val' row 0 .*label must be an integer"),
    (lambda rows: rows["train"][2].__setitem__(0, 7), r"'train' row 2 .*path must be a non-empty"),
    (lambda rows: rows["train"][2].__setitem__(2, None), r"'train' row 2 .*class name must be"),
    (lambda rows: rows.__setitem__("val", {"a": 1}), r"'val' must be a list of rows, got a JSON "
                                                      r"dict"),
    (lambda rows: rows["test"][3].__setitem__(2, "tabby"),
     r"label 2 is 'crab_cakes' in 'train' row 0 but 'tabby' in 'test' row 3"),
], ids=["two-items", "not-a-list", "label-str", "label-negative", "label-float", "path-int",
        "classname-none", "split-dict", "two-names"])
def test_malformed_split_rows_name_the_file_and_row(root, edit, message):
    rows = layouts.split_rows("Food101")
    edit(rows)
    layouts.build_split_file_dataset(str(root), "Food101", "food-101", "images",
                                     rows=layouts.split_rows("Food101"))
    split = root / "food-101" / "split_zhou_Food101.json"
    split.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="split_zhou_Food101.json.*" + message):
        build_dataset(make_cfg(root, "Food101"))


def test_split_file_that_is_not_an_object_or_not_json(root):
    layouts.build_split_file_dataset(str(root), "Food101", "food-101", "images")
    split = root / "food-101" / "split_zhou_Food101.json"
    split.write_text("[[1, 2, 3]]")
    with pytest.raises(ValueError, match="split_zhou_Food101.json holds a JSON list; expected an "
                                         "object with the lists train, val, test"):
        build_dataset(make_cfg(root, "Food101"))
    split.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="split_zhou_Food101.json is not valid JSON"):
        build_dataset(make_cfg(root, "Food101"))


def test_malformed_few_shot_cache_names_the_file(root):
    layouts.build_split_file_dataset(str(root), "Food101", "food-101", "images")
    cache = root / "food-101" / "split_fewshot" / "shot_2-seed_1.json"
    cache.parent.mkdir()
    cache.write_text(json.dumps({"train": [["apple_pie/1000000.jpg", "0", "apple_pie"]],
                                 "val": []}))
    with pytest.raises(ValueError, match=r"shot_2-seed_1.json, 'train' row 0 .*label"):
        build_dataset(make_cfg(root, "Food101", num_shots=2))


def test_unknown_dataset_name_lists_choices(root):
    with pytest.raises(KeyError, match="Caltech101"):
        build_dataset(make_cfg(root, "Caltech"))


def test_check_command(root, capsys):
    layouts.build_split_file_dataset(str(root), "DescribableTextures", "dtd", "images")
    layouts.build_split_file_dataset(str(root), "EuroSAT", "eurosat", "2750")
    os.remove(root / "eurosat" / "split_zhou_EuroSAT.json")
    layouts.build_fgvc_aircraft(str(root))
    assert check_main([str(root)]) == 1
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]
             if line and not line.startswith(" ")}
    assert len(lines) == 15 + 20  # and ELEVATER's 20 tasks, all missing here
    assert "missing" in lines["voc-2007-classification"]
    assert "ok" in lines["DescribableTextures"]
    assert "3 classes, train 18, val 9, test 6" in lines["DescribableTextures"]
    assert "3 classes, train 12, val 6, test 6" in lines["FGVCAircraft"]
    assert "error" in lines["EuroSAT"] and "split_zhou_EuroSAT.json" in lines["EuroSAT"]
    assert "missing" in lines["ImageNet"]
    assert check_main([str(root), "DescribableTextures", "FGVCAircraft"]) == 0
    assert check_main([str(root), "DescribableTextures", "Caltech101"]) == 1


def test_check_decodes_every_image_in_parallel(root, capsys):
    rows = layouts.build_split_file_dataset(str(root), "DescribableTextures", "dtd", "images")
    image_dir = root / "dtd" / "images"
    truncated, text = image_dir / rows["test"][1][0], image_dir / rows["train"][4][0]
    truncated.write_bytes(truncated.read_bytes()[:40])
    text.write_text("not an image")
    # loading lists the files; only decoding finds that two of them cannot be read
    assert check_main([str(root), "DescribableTextures"]) == 0
    capsys.readouterr()
    assert check_main([str(root), "DescribableTextures", "--decode", "--workers", "2"]) == 1
    captured = capsys.readouterr()
    line = next(line for line in captured.out.splitlines() if "DescribableTextures" in line)
    assert "error" in line and "2 of 33 images cannot be decoded" in line
    assert f"Cannot read image {text}" in captured.out and f"{truncated}" in captured.out
    assert "33/33" in captured.err  # the progress bar
    text.write_bytes(truncated.read_bytes())
    layouts.write_image(str(truncated))
    layouts.write_image(str(text))
    assert check_main([str(root), "DescribableTextures", "--decode", "--workers", "1"]) == 0
    assert "33 images decoded" in capsys.readouterr().out


def test_check_custom_and_other_registered_datasets(root, capsys):
    for name in ("daisy", "rose"):
        for i in range(4):
            layouts.write_image(str(root / "flowers" / "images" / name / f"{i}.jpg"))
    config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "datasets",
                          "custom.yaml")
    assert check_main([str(root), config, "--", "DATASET.CUSTOM.DIR", "flowers"]) == 0
    assert "Custom (" in capsys.readouterr().out
    assert check_main([str(root), "Custom", "--decode", "--", "DATASET.CUSTOM.DIR",
                       "flowers"]) == 0
    out = capsys.readouterr().out
    assert "Custom  ok       2 classes, train 4, val 2, test 2; 8 images decoded" in out
    assert check_main([str(root), "Custom", "--", "DATASET.CUSTOM.DIR", "tulips"]) == 1
    assert "Custom  error    Custom folder not found" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        check_main([str(root), "Flowers"])
    assert "unknown dataset(s) ['Flowers']; choose from" in capsys.readouterr().err
