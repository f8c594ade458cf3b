"""ELEVATER tasks read from synthetic files in the exact format: zipped and unzipped images, the
text and COCO index formats, a multi-label task, a task with class-name synonyms, the joint
multitask label space, the loaders and the errors."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, Resize

from datasets.check import main as check_main
from datasets.elevater import (
    build_elevater_dataset,
    build_elevater_loaders,
    build_elevater_transform,
    elevater_task_names,
    evaluation_tasks,
)
from datasets.elevater_sampling import sample_few_shot
from datasets.elevater_tasks import ELEVATER_TASKS, get_task
from datasets.splits import DatasetFilesError
from engine.config import get_cfg_default
from engine.errors import ConfigKeyError
from engine.losses import soft_targets
from tests.datasets.elevater_layouts import colour_of, image_labels, write_task

DOWNLOAD = "github.com/Computer-Vision-in-the-Wild/DataDownload"


def elevater_cfg(root, dataset: str, shots: int = 5, seed: int = 1, multitask: bool = False):
    """A config with the DATASET keys of MVLPT's train.py (registered by its trainer)."""
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.COOP = False
    cfg.DATASET.DATASET = dataset
    cfg.DATASET.NUM_SAMPLES_PER_CLASS = shots
    cfg.DATASET.RANDOM_SEED_SAMPLING = seed
    cfg.DATASET.MULTITASK = multitask
    cfg.DATASET.MULTITASK_EVALKEY = "average"
    cfg.DATASET.CENTER_CROP = False
    cfg.INPUT.SIZE = (16, 16)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.TEST.BATCH_SIZE = 8
    return cfg


def pixel(item) -> tuple[int, int, int]:
    return item.load_image().getpixel((0, 0))


def written_index(item) -> int:
    return int(os.path.basename(item.impath).split()[0])


def test_table_matches_classnames_and_metrics():
    assert len(ELEVATER_TASKS) == 20
    for task in ELEVATER_TASKS:
        assert len(task.classnames) == task.num_classes, task.name
    assert get_task("fer-2013").classnames[3:5] == ["happy", "neutral"]
    assert get_task("fer-2013").synonyms[3] == ["happy", "smiling"]
    metrics = {task.name: task.metric for task in ELEVATER_TASKS if task.metric != "accuracy"}
    assert metrics == {"caltech-101": "mean-per-class", "fgvc-aircraft-2013b-variants102":
                       "mean-per-class", "oxford-flower-102": "mean-per-class",
                       "oxford-iiit-pets": "mean-per-class",
                       "voc-2007-classification": "11point_mAP"}
    with pytest.raises(ConfigKeyError, match="cifar-10, cifar-100"):
        get_task("cifar10")


def test_single_task_few_shot_split_synonyms_and_pixels(root):
    write_task(str(root), "fer-2013", train_per_class=6, test_per_class=2)
    dataset = build_elevater_dataset(elevater_cfg(root, "fer-2013", shots=5, seed=2))
    assert dataset.classnames == get_task("fer-2013").classnames  # first synonyms
    assert dataset.lab2cname[3] == "happy" and dataset.num_classes == 7
    for label in range(7):  # 5 shots: 4 train and 1 val image per class
        assert sum(item.label == label for item in dataset.train_x) == 4
        assert sum(item.label == label for item in dataset.val) == 1
    assert len(dataset.test) == 14 and not set(dataset.train_x) & set(dataset.val)
    # the draw is the sampler's on the index's label list, images read from the zip
    labels = image_labels("fer-2013", "train", 6)
    drawn = sample_few_shot(labels, 7, 5, 2)
    chosen = {written_index(item) for item in dataset.train_x + dataset.val}
    assert chosen == set(drawn)
    item = dataset.train_x[0]
    assert item.labels == labels[written_index(item)]
    assert pixel(item) == colour_of("train", written_index(item))
    again = build_elevater_dataset(elevater_cfg(root, "fer-2013", shots=5, seed=2))
    assert again.train_x == dataset.train_x and again.val == dataset.val


def test_coco_index_one_shot_train_is_val(root):
    write_task(str(root), "kitti-distance", train_per_class=3, test_per_class=2)
    dataset = build_elevater_dataset(elevater_cfg(root, "kitti-distance", shots=1, seed=3))
    assert dataset.train_x == dataset.val and len(dataset.train_x) == 4
    assert sorted(item.label for item in dataset.train_x) == [0, 1, 2, 3]
    # COCO images come in id order whatever the file's order; labels are category positions
    assert [written_index(item) for item in dataset.test] == list(range(8))
    assert [item.label for item in dataset.test] == [i % 4 for i in range(8)]
    assert dataset.classnames[0] == "a photo i took of a car on my left or right side."


def test_multilabel_targets_through_the_loader(root):
    write_task(str(root), "voc-2007-classification", train_per_class=3, test_per_class=1)
    cfg = elevater_cfg(root, "voc-2007-classification", shots=2)
    dataset = build_elevater_dataset(cfg)
    two = [item for item in dataset.test if len(item.labels) == 2]
    assert two and two[0].label == min(two[0].labels)
    assert two[0].target_vector().nonzero().flatten().tolist() == list(two[0].labels)
    _, _, test = build_elevater_loaders(cfg, dataset)
    batch = next(iter(test))
    assert batch["img"].shape == (8, 3, 16, 16) and batch["target"].shape == (8, 20)
    expected = torch.stack([item.target_vector() for item in dataset.test[:8]])
    assert torch.equal(batch["target"], expected)
    soft = soft_targets(batch["target"])
    assert torch.allclose(soft.sum(dim=1), torch.ones(8))
    assert set(soft[batch["target"].sum(dim=1) == 2].unique().tolist()) == {0.0, 0.5}


def test_folder_and_zip_read_the_same(tmp_path):
    write_task(str(tmp_path / "zipped"), "mnist", zipped=True)
    write_task(str(tmp_path / "folder"), "mnist", zipped=False)
    zipped = build_elevater_dataset(elevater_cfg(tmp_path / "zipped", "mnist", shots=2))
    folder = build_elevater_dataset(elevater_cfg(tmp_path / "folder", "mnist", shots=2))
    assert "val.zip@" in zipped.test[0].impath and "@" not in folder.test[0].impath
    for a, b in zip(zipped.train_x + zipped.test, folder.train_x + folder.test, strict=True):
        assert (written_index(a), a.labels) == (written_index(b), b.labels)
        assert pixel(a) == pixel(b)


def test_multitask_alphabetical_label_space(root):
    for name in ("mnist", "fer-2013", "voc-2007-classification"):
        write_task(str(root), name, train_per_class=3, test_per_class=1)
    cfg = elevater_cfg(root, "voc-2007-classification,mnist,fer-2013", shots=2, multitask=True)
    dataset = build_elevater_dataset(cfg)
    ranges = {"fer-2013": (0, 7), "mnist": (7, 17), "voc-2007-classification": (17, 37)}
    assert [(t.name, t.start, t.end) for t in dataset.tasks] == \
        [(name, *span) for name, span in ranges.items()]
    assert dataset.tasks == evaluation_tasks(cfg)
    assert dataset.num_classes == 37 and dataset.classnames[7:9] == ["0", "1"]
    for item in dataset.train_x + dataset.val + dataset.test:
        name = dataset.tasks[item.domain].name
        assert all(ranges[name][0] <= label < ranges[name][1] for label in item.labels)
        assert item.target_vector().shape == (37,)
        assert dataset.lab2cname[item.label] == item.classname
    assert len(dataset.test) == 7 + 10 + 20
    train_labels = [(i % 7,) for i in range(21)] + [(7 + i % 10,) for i in range(30)] + \
        [tuple(17 + label for label in image)
         for image in image_labels("voc-2007-classification", "train", 3)]
    drawn = sample_few_shot(train_labels, 37, 2, 1)
    assert sorted(tuple(item.labels) for item in dataset.train_x + dataset.val) == \
        sorted(train_labels[i] for i in drawn)


def test_selection_from_the_config(root):
    cfg = elevater_cfg(root, "cifar-10")
    assert elevater_task_names(cfg) == ["cifar-10"]
    cfg.DATASET.COOP = True
    assert elevater_task_names(cfg) is None
    assert elevater_task_names(get_cfg_default()) is None  # no MVLPT keys: not ELEVATER
    assert elevater_task_names(elevater_cfg(root, "Caltech101,EuroSAT")) is None
    with pytest.raises(ValueError, match="unknown names \\['Caltech101'\\]"):
        elevater_task_names(elevater_cfg(root, "cifar-10,Caltech101"))
    with pytest.raises(ValueError, match="--multi-task"):
        build_elevater_dataset(elevater_cfg(root, "cifar-10,mnist"))


def test_loaders_shuffle_like_the_toolkit_and_keep_the_last_batch(root):
    write_task(str(root), "fer-2013", train_per_class=6, test_per_class=3)
    cfg = elevater_cfg(root, "fer-2013", shots=5)
    dataset = build_elevater_dataset(cfg)
    train, val, test = build_elevater_loaders(cfg, dataset)
    assert len(train) == 7 and len(test) == 3  # 28 / 4 and 21 / 8 rounded up: nothing dropped
    # the toolkit's create_dataloader: shuffle=True with a generator seeded 0, per epoch
    toolkit = torch.utils.data.DataLoader(range(28), batch_size=4, shuffle=True,
                                          generator=torch.Generator().manual_seed(0))
    assert [batch_indices(train) for _ in range(2)] == \
        [[int(i) for batch in toolkit for i in batch] for _ in range(2)]
    cfg.DATALOADER.TRAIN_X.SAMPLER = "SequentialSampler"
    train, _, _ = build_elevater_loaders(cfg, dataset)
    assert batch_indices(train) == list(range(28))


def batch_indices(loader) -> list[int]:
    return [int(i) for batch in loader for i in batch["index"]]


def test_transform_bicubic_resize_without_augmentation(root):
    cfg = elevater_cfg(root, "fer-2013")
    image = Image.fromarray(np.arange(720, dtype=np.uint8).reshape(12, 20, 3) * 7)
    tensor = build_elevater_transform(cfg)(image)
    mean = torch.tensor(cfg.INPUT.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.INPUT.PIXEL_STD).view(3, 1, 1)
    resized = Resize((16, 16), interpolation=InterpolationMode.BICUBIC)(image)
    pixels = torch.tensor(np.asarray(resized), dtype=torch.float32).permute(2, 0, 1)
    expected = (pixels / 255 - mean) / std
    assert torch.allclose(tensor, expected, atol=1e-6)
    cfg.DATASET.CENTER_CROP = True  # shorter side to 16, then the centre 16 x 16
    assert build_elevater_transform(cfg)(image).shape == (3, 16, 16)


def test_missing_folder_names_task_files_and_source(root):
    with pytest.raises(DatasetFilesError) as info:
        build_elevater_dataset(elevater_cfg(root, "dtd"))
    message = str(info.value)
    assert "dtd" in message and str(root / "classification" / "dtd_20211007") in message
    assert DOWNLOAD in message and "DATASETS.md" in message and "DATASET.ROOT" in message


def test_missing_and_incomplete_files(root):
    folder = write_task(str(root), "eurosat_clip")
    os.remove(os.path.join(folder, "labels.txt"))
    os.remove(os.path.join(folder, "2750.zip"))
    with pytest.raises(DatasetFilesError) as info:
        build_elevater_dataset(elevater_cfg(root, "eurosat_clip"))
    message = str(info.value)
    assert os.path.join(folder, "labels.txt") in message and os.path.join(folder, "2750.zip") \
        in message
    assert "train.txt, test.txt, labels.txt, 2750.zip" in message and DOWNLOAD in message
    write_task(str(root), "eurosat_clip")
    with zipfile.ZipFile(os.path.join(folder, "2750.zip")) as z:
        kept = [(name, z.read(name)) for name in z.namelist() if not name.endswith("0003 img.png")]
    with zipfile.ZipFile(os.path.join(folder, "2750.zip"), "w") as z:
        for name, data in kept:
            z.writestr(name, data)
    with pytest.raises(DatasetFilesError, match="1 of 40 images of the train index") as info:
        build_elevater_dataset(elevater_cfg(root, "eurosat_clip"))
    assert "2750.zip@train/0003 img.png" in str(info.value)


def test_wrong_label_map_and_bad_lines(root):
    folder = write_task(str(root), "rendered-sst2")
    with open(os.path.join(folder, "labels.txt"), "a") as f:
        f.write("a third class\n")
    with pytest.raises(ValueError, match="has 3 classes, ELEVATER's task has 2"):
        build_elevater_dataset(elevater_cfg(root, "rendered-sst2"))
    write_task(str(root), "rendered-sst2")
    with open(os.path.join(folder, "labels.txt"), "w") as f:
        f.write("negative\npositive\n")
    with open(os.path.join(folder, "test.txt"), "a") as f:
        f.write("test.zip@x.png 5\n")
    with pytest.raises(ValueError, match="test.txt, line 5: label 5 is outside"):
        build_elevater_dataset(elevater_cfg(root, "rendered-sst2"))


def test_data_check_reports_elevater_tasks(root, capsys):
    write_task(str(root), "fer-2013")
    assert check_main([str(root), "fer-2013"]) == 0
    out = capsys.readouterr().out
    assert "fer-2013" in out and "ok" in out and "7 classes, train 28, test 14" in out
    assert check_main([str(root), "fer-2013", "dtd"]) == 1
    assert "dtd_20211007" in capsys.readouterr().out
