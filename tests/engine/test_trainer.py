"""Trainer loop: log lines, checkpoints, resume equivalence, load_model errors."""

from __future__ import annotations

import logging
import os
import re

import pytest
import torch

from engine import build_trainer
from engine.utils import set_random_seed, setup_logger


def _run(cfg, fail_at: int = -1):
    cfg = cfg.clone()
    cfg.TRAINER.TOY.FAIL_AT_EPOCH = fail_at
    cfg.freeze()
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    trainer.train()
    return trainer


def test_training_logs_checkpoints_and_tests(toy_cfg, caplog):
    caplog.set_level(logging.INFO)
    trainer = _run(toy_cfg)
    out = toy_cfg.OUTPUT_DIR
    files = sorted(os.listdir(os.path.join(out, "model")))
    assert files == ["checkpoint"] + [f"model.pth.tar-{e}" for e in range(1, 5)]
    with open(os.path.join(out, "model", "checkpoint")) as f:
        assert f.read() == "model.pth.tar-4\n"
    lines = [r.getMessage() for r in caplog.records]
    pattern = re.compile(r"^epoch \[(\d)/4\] batch \[(\d)/4\] time \d+\.\d{3} \(\d+\.\d{3}\) "
                         r"data \d+\.\d{3} \(\d+\.\d{3}\) loss \d+\.\d{4} \(\d+\.\d{4}\) "
                         r"acc \d+\.\d{4} \(\d+\.\d{4}\) "
                         r"lr \d\.\d{4}e[-+]\d{2} eta \d+:\d{2}:\d{2}$")
    logged = [pattern.match(line).groups() for line in lines if pattern.match(line)]
    # 18 images, batch 4, drop_last -> 4 batches; PRINT_FREQ 2 -> batches 2 and 4
    assert logged == [(str(e), str(b)) for e in range(1, 5) for b in (2, 4)]
    assert any(line.startswith("epoch [1/4] batch [2/4]") and "lr 1.0000e-02" in line
               for line in lines)
    assert "=> result" in "\n".join(lines) and trainer.epoch == 3
    assert os.listdir(os.path.join(out, "tensorboard"))


def test_print_every_batch_when_epoch_shorter_than_print_freq(toy_cfg, caplog):
    caplog.set_level(logging.INFO)
    toy_cfg.TRAIN.PRINT_FREQ = 10
    toy_cfg.OPTIM.MAX_EPOCH = 1
    _run(toy_cfg)
    batches = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch [")]
    assert len(batches) == 4


def test_resume_gives_same_weights_as_uninterrupted_run(toy_cfg, tmp_path, caplog):
    reference = _run(toy_cfg).model.state_dict()
    toy_cfg.OUTPUT_DIR = str(tmp_path / "interrupted")
    with pytest.raises(RuntimeError, match="simulated interruption after epoch 2"):
        _run(toy_cfg, fail_at=2)
    assert sorted(os.listdir(os.path.join(toy_cfg.OUTPUT_DIR, "model")))[-1] == "model.pth.tar-2"
    caplog.set_level(logging.INFO)
    caplog.clear()
    resumed = _run(toy_cfg)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "will resume training" in text and "Previous epoch: 2" in text
    assert "epoch [1/4]" not in text and "epoch [3/4]" in text
    for key, value in reference.items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.sched.last_epoch == 1 and resumed.sched.successor.last_epoch == 3


def test_finished_directory_says_so(toy_cfg, caplog):
    toy_cfg.OPTIM.MAX_EPOCH = 1
    _run(toy_cfg)
    caplog.set_level(logging.INFO)
    caplog.clear()
    _run(toy_cfg)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Training already finished" in text and "epoch 1 of 1" in text
    assert "epoch [" not in text


def test_best_val_saves_best_and_keeps_pointer_on_last(toy_cfg):
    toy_cfg.TEST.FINAL_MODEL = "best_val"
    toy_cfg.OPTIM.MAX_EPOCH = 2
    toy_cfg.TRAIN.CHECKPOINT_FREQ = 0
    _run(toy_cfg)
    model_dir = os.path.join(toy_cfg.OUTPUT_DIR, "model")
    assert "model-best.pth.tar" in os.listdir(model_dir)
    with open(os.path.join(model_dir, "checkpoint")) as f:
        assert f.read().strip() == "model.pth.tar-2"
    best = torch.load(os.path.join(model_dir, "model-best.pth.tar"), weights_only=True)
    assert 0.0 <= best["val_result"] <= 100.0


def test_load_model_errors_list_directory(toy_cfg, tmp_path):
    toy_cfg.freeze()
    trainer = build_trainer(toy_cfg)
    empty = tmp_path / "runs"
    (empty / "model").mkdir(parents=True)
    (empty / "model" / "model.pth.tar-3").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"holds: model/model.pth.tar-3"):
        trainer.load_model(str(empty), epoch=5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        trainer.load_model(str(tmp_path / "nowhere"))
    trainer.load_model("")  # no directory: skipped, as in Dassl


def test_load_model_uses_mapping_hook(toy_cfg):
    trainer = _run(toy_cfg)
    saved = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    toy_cfg.defrost()
    other = build_trainer(toy_cfg)
    calls = []
    other.map_checkpoint_state_dict = lambda name, sd: calls.append(name) or sd
    other.load_model(toy_cfg.OUTPUT_DIR, epoch=4)
    assert calls == ["model"]
    for key, value in saved.items():
        assert torch.equal(other.model.state_dict()[key], value)


def test_setup_logger_appends_to_an_existing_log_txt(tmp_path):
    """A resumed run continues log.txt, the file result parsers read."""
    first = setup_logger(str(tmp_path))
    logging.getLogger("engine.test").info("* accuracy: 12.5%")
    second = setup_logger(str(tmp_path))
    logging.getLogger("engine.test").info("* accuracy: 50.0%")
    assert first == second == str(tmp_path / "log.txt")
    with open(first) as f:
        text = f.read()
    assert text.index("* accuracy: 12.5%") < text.index("new run") < text.index("50.0%")
