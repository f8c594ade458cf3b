"""Data loading and transforms; train.py end to end in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

import train
from engine.data import DataManager, build_transform, read_image
from tests.engine import toy  # noqa: F401  (registers ToyTrainer / ToyFolder)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_test_transform_resizes_shorter_side_then_center_crops(toy_cfg, tmp_path):
    toy_cfg.INPUT.SIZE = (4, 4)
    img = Image.new("RGB", (16, 8))
    img.paste((255, 0, 0), (6, 0, 10, 8))  # a red band in the middle columns
    tfm = build_transform(toy_cfg, is_train=False)
    out = tfm(img)  # 16x8 -> 8x4 (shorter side 4) -> centre 4x4 = the red band
    assert out.shape == (3, 4, 4)
    assert "bicubic" in str(tfm.transforms[0]).lower()
    assert build_transform(toy_cfg, is_train=True)(img).shape == (3, 4, 4)
    toy_cfg.INPUT.TRANSFORMS = ("random_rotate",)
    with pytest.raises(ValueError, match="random_rotate"):
        build_transform(toy_cfg)


def test_read_image_names_bad_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(OSError, match="broken.jpg"):
        read_image(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(str(tmp_path / "missing.png"))


def test_data_manager_batches(toy_cfg):
    dm = DataManager(toy_cfg)
    assert dm.num_classes == 3 and dm.classnames == ["class_0", "class_1", "class_2"]
    assert len(dm.train_loader_x) == 4 and dm.train_loader_x.drop_last  # 18 items, batch 4
    assert len(dm.test_loader) == 4 and not dm.test_loader.drop_last
    batch = next(iter(dm.test_loader))
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert batch["img"].shape == (5, 3, 8, 8) and batch["index"].tolist() == [0, 1, 2, 3, 4]
    toy_cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 64  # fewer items than a batch: keep them
    assert len(DataManager(toy_cfg).train_loader_x) == 1


def _train(args, env_extra=None):
    env = dict(os.environ, ENGINE_IMPORTS="tests.engine.toy", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1800)


def test_train_py_end_to_end(image_root, tmp_path):
    out = str(tmp_path / "run")
    common = ["--root", image_root, "--trainer", "ToyTrainer", "--seed", "0",
              "DATASET.NAME", "ToyFolder", "INPUT.SIZE", "(8, 8)", "USE_CUDA", "False",
              "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
              "OPTIM.NAME", "sgd", "OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "2"]
    done = _train(["--output-dir", out, *common])
    assert done.returncode == 0, done.stderr[-2000:]
    with open(os.path.join(out, "log.txt")) as f:
        log = f.read()
    assert "Setting fixed seed: 0" in log and "epoch [2/2] batch [4/4]" in log
    assert log.startswith(f"Run: trainer ToyTrainer, dataset ToyFolder, backbone -, seed 0, "
                          f"output {out} (pid ")  # the config dump comes below
    assert "* accuracy: " in log and "** System info **" in log
    assert os.path.isfile(os.path.join(out, "model", "model.pth.tar-2"))

    evaluation = str(tmp_path / "eval")  # in this process: one subprocess is the point above
    train.cli(["--output-dir", evaluation, "--eval-only", "--model-dir", out, "--load-epoch", "2",
               *common])
    with open(os.path.join(evaluation, "log.txt")) as f:
        log = f.read()
    assert "model.pth.tar-2 to model (epoch=2)" in log and "* accuracy: " in log

    with pytest.raises(FileNotFoundError, match=r"model-best.pth.tar.*model/model.pth.tar-2"):
        train.cli(["--debug", "--output-dir", evaluation, "--eval-only", "--model-dir", out,
                   *common])


def test_unknown_key_on_command_line_fails_clearly(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train.cli(["--output-dir", str(tmp_path), "--trainer", "ToyTrainer",
                   "TRAINER.TOY.HIDEN", "4"])
    assert stop.value.code == 2
    assert "Unknown config key 'TRAINER.TOY.HIDEN'" in capsys.readouterr().err
    with pytest.raises(KeyError, match="TRAINER.TOY.HIDDEN"):
        train.cli(["--debug", "--output-dir", str(tmp_path), "--trainer", "ToyTrainer",
                   "TRAINER.TOY.HIDEN", "4"])
