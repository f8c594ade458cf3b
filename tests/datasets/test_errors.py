"""Errors name the missing path and the fix; the data-checking command reports per dataset."""

from __future__ import annotations

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
