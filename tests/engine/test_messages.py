"""Failures a user meets say what happened in one line: a full disk, a YAML tag that builds
objects, Ctrl-C, missing weights offline; and warnings reach log.txt on every run."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import engine.checkpoint as ckpt
from engine.checkpoint import load_checkpoint, save_checkpoint, save_resume_checkpoint
from engine.config import get_cfg_default
from engine.data.datasets import build_dataset
from engine.errors import ConfigError
from tests.datasets import layouts
from tests.datasets.layouts import make_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _FullDisk:
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, f, room: int) -> None:
        self._f, self._room = f, room

    def write(self, data) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name: str):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def test_a_full_disk_names_the_file_and_what_was_saved(tmp_path, monkeypatch) -> None:
    state = {"state_dict": {"w": torch.zeros(1000)}, "epoch": 3}
    first = save_resume_checkpoint(dict(state, epoch=2), str(tmp_path))
    opened = os.fdopen
    monkeypatch.setattr(ckpt.os, "fdopen", lambda fd, mode: _FullDisk(opened(fd, mode), 100))
    with pytest.raises(OSError, match=r"could not save the checkpoint of epoch 3 to .*"
                                      r"model.pth.tar-3: No space left on device") as err:
        save_checkpoint(state, str(tmp_path))
    assert err.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match=r"resume checkpoint of epoch 3 to .*model-resume.pth.tar: "
                                      r"No space left on device \(the previous file there is "
                                      r"intact\)"):
        save_resume_checkpoint(state, str(tmp_path))
    monkeypatch.undo()
    assert load_checkpoint(first)["epoch"] == 2
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model-resume.pth.tar"]


def test_yaml_tags_that_build_objects_are_refused_in_one_line(tmp_path) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "evil.yaml"
    config.write_text(f"OPTIM:\n  LR: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"evil.yaml, line 2 is not a plain YAML config "
                                          r"\(could not determine a constructor .*python/object"
                                          r".*\): .*refused") as err:
        get_cfg_default().merge_from_file(str(config))
    assert "\n" not in str(err.value) and not marker.exists()


def test_python_config_files_are_read_as_yaml_not_run(tmp_path) -> None:
    """yacs runs a ``.py`` config file it is given; we read every config as YAML."""
    marker = tmp_path / "ran"
    config = tmp_path / "cfg.py"
    config.write_text(f"open({str(marker)!r}, 'w')\n")
    with pytest.raises(ConfigError, match="cfg.py is not a YAML mapping"):
        get_cfg_default().merge_from_file(str(config))
    assert not marker.exists()


def test_more_shots_than_images_warns_on_every_run(root, caplog) -> None:
    """The second run reads the saved selection: it still warns (log.txt is per run)."""
    layouts.build_split_file_dataset(str(root), "EuroSAT", "eurosat", "2750")
    for _ in range(2):
        caplog.clear()
        random.seed(1)
        with caplog.at_level(logging.WARNING):
            build_dataset(make_cfg(root, "EuroSAT", num_shots=100000, seed=1))
        assert "fewer training images than the 100000 shots asked for" in caplog.text
    assert (root / "eurosat" / "split_fewshot" / "shot_100000-seed_1.json").exists()


@pytest.fixture
def root(tmp_path):
    return tmp_path / "data"


def _toy_command(image_root: str, out: str, epochs: int) -> list[str]:
    return [sys.executable, os.path.join(REPO, "train.py"), "--root", image_root, "--trainer",
            "ToyTrainer", "--seed", "0", "--output-dir", out, "DATASET.NAME", "ToyFolder",
            "INPUT.SIZE", "(8, 8)", "USE_CUDA", "False", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.NAME", "sgd", "OPTIM.LR", "0.05",
            "OPTIM.MAX_EPOCH", str(epochs)]


def test_ctrl_c_says_the_checkpoint_is_intact_and_how_to_resume(image_root, tmp_path) -> None:
    out = str(tmp_path / "run")
    env = dict(os.environ, ENGINE_IMPORTS="tests.engine.toy", PYTHONPATH=REPO)
    # Ctrl-C's default action in the run: a shell starts background jobs (`pytest &`) with
    # SIGINT ignored, and an ignored signal stays ignored through exec
    run = subprocess.Popen(_toy_command(image_root, out, 100000), cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pointer = os.path.join(out, "model", "checkpoint")
    while not os.path.exists(pointer):  # the first epoch's checkpoint
        assert run.poll() is None, run.communicate()[1][-2000:]
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=1800)
    assert run.returncode == 130, err[-2000:]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert err.startswith("train.py: interrupted; its last checkpoint, ")
    assert "is intact" in err and f"--output-dir {out} " in err
    named = err.split("its last checkpoint, ")[1].split(",")[0]
    assert os.path.isfile(named) and load_checkpoint(named)["epoch"] >= 1


def test_missing_open_clip_weights_offline_is_one_line(tmp_path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=REPO,
               CLIP_CACHE_DIR=str(tmp_path / "clip"))
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), "--root", str(tmp_path / "data"),
         "--output-dir", str(tmp_path / "run"), "--trainer", "CoOp", "--dataset-config-file",
         "configs/datasets/demo.yaml", "--config-file", "configs/trainers/CoOp/demo_tiny.yaml",
         "--eval-only", "MODEL.BACKBONE.NAME", "open_clip:ViT-B-32/laion2b_s34b_b79k"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: could not get the weights "
                                                   "of open_clip:ViT-B-32/laion2b_s34b_b79k")
