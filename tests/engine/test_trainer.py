"""Trainer loop: log lines, checkpoints, resume equivalence, load_model errors."""

from __future__ import annotations

import logging
import os
import re

import pytest
import torch

from engine import build_trainer
from engine.errors import CheckpointError, ConfigError
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


# --------------------------------------------------------------------------- resume every epoch


def test_resume_without_checkpoint_freq_uses_the_epochs_resume_file(toy_cfg, tmp_path, caplog):
    """The papers' configs set no CHECKPOINT_FREQ: a run stopped mid-way still resumes from
    its last finished epoch, and ends with the weights of an uninterrupted run."""
    toy_cfg.TRAIN.CHECKPOINT_FREQ = 0
    reference = _run(toy_cfg).model.state_dict()
    toy_cfg.OUTPUT_DIR = str(tmp_path / "interrupted")
    model_dir = os.path.join(toy_cfg.OUTPUT_DIR, "model")
    with pytest.raises(RuntimeError, match="simulated interruption after epoch 3"):
        _run(toy_cfg, fail_at=3)
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model-resume.pth.tar"]
    caplog.set_level(logging.INFO)
    caplog.clear()
    resumed = _run(toy_cfg)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Previous epoch: 3" in text and "epoch [3/4]" not in text and "epoch [4/4]" in text
    for key, value in reference.items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model.pth.tar-4"]


def test_resume_with_another_schedule_is_refused(toy_cfg):
    with pytest.raises(RuntimeError, match="simulated"):
        _run(toy_cfg, fail_at=1)
    toy_cfg.OPTIM.MAX_EPOCH = 6
    with pytest.raises(ConfigError, match=r"OPTIM.MAX_EPOCH is 4 in the checkpoint, 6 in this"):
        _run(toy_cfg)
    toy_cfg.OPTIM.MAX_EPOCH, toy_cfg.SEED = 4, 2  # another seed would continue seed 1's run
    with pytest.raises(ConfigError, match=r"SEED is 1 in the checkpoint, 2 in this run"):
        _run(toy_cfg)


def test_resume_from_garbage_optimizer_state_names_the_file(toy_cfg):
    with pytest.raises(RuntimeError, match="simulated"):
        _run(toy_cfg, fail_at=1)
    path = os.path.join(toy_cfg.OUTPUT_DIR, "model", "model.pth.tar-1")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["optimizer"]["param_groups"] = checkpoint["optimizer"]["param_groups"] * 2
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=rf"{path}: its optimizer or scheduler state does "
                                              "not fit this run's"):
        _run(toy_cfg)


def test_resume_from_a_missing_folder_is_an_error(toy_cfg, tmp_path):
    toy_cfg.RESUME = str(tmp_path / "no_such_run")
    with pytest.raises(ConfigError, match="--resume .*no_such_run: no such folder"):
        _run(toy_cfg)


# --------------------------------------------------------------------------- bad checkpoints


def test_malformed_checkpoints_name_the_file_and_the_field(toy_cfg, tmp_path):
    toy_cfg.freeze()
    trainer = build_trainer(toy_cfg)
    good = {"state_dict": trainer.model.state_dict(), "epoch": 1, "optimizer": None,
            "scheduler": None}
    nan = {k: v.clone() for k, v in good["state_dict"].items()}
    nan["fc2.bias"][1] = float("nan")
    cases = [([good], "holds a list, not a checkpoint"),
             (torch.zeros(3), "holds a single tensor"),
             ({"epoch": 1}, "has no 'state_dict'"),
             (good["state_dict"], "has no 'state_dict'.*bare state dict"),
             ({**good, "epoch": -1}, "'epoch' is -1"),
             ({**good, "epoch": "3"}, "'epoch' is '3'"),
             ({**good, "optimizer": [1, 2]}, "'optimizer' is a list"),
             ({**good, "scheduler": "cosine"}, "'scheduler' is a str"),
             ({**good, "state_dict": nan}, "tensor 'fc2.bias' holds 1 NaN or infinite")]
    path = tmp_path / "runs" / "model" / "model.pth.tar-1"
    path.parent.mkdir(parents=True)
    for content, message in cases:
        torch.save(content, path)
        with pytest.raises(CheckpointError, match=message) as error:
            trainer.load_model(str(tmp_path / "runs"), epoch=1)
        assert str(path) in str(error.value)


def test_another_configurations_checkpoint_says_what_it_is(toy_cfg, tmp_path):
    toy_cfg.OPTIM.MAX_EPOCH = 1
    _run(toy_cfg)
    toy_cfg.TRAINER.TOY.HIDDEN = 16
    toy_cfg.freeze()
    with pytest.raises(CheckpointError,
                       match=r"does not fit the ToyTrainer model of this run: 3 tensors of other "
                             r"shapes \(fc1.weight \[8, 192\] in the file, \[16, 192\] here.*"
                             r"saved by ToyTrainer too, with other settings"):
        build_trainer(toy_cfg).load_model(toy_cfg.OUTPUT_DIR, epoch=1)


def test_model_dir_at_the_model_subfolder_suggests_its_parent(toy_cfg, tmp_path):
    toy_cfg.OPTIM.MAX_EPOCH = 1
    trainer = _run(toy_cfg)
    sub = os.path.join(toy_cfg.OUTPUT_DIR, "model")
    with pytest.raises(FileNotFoundError, match=rf"--model-dir {re.escape(toy_cfg.OUTPUT_DIR)}$"):
        trainer.load_model(sub, epoch=1)


# --------------------------------------------------------------------------- values, logs


@pytest.mark.parametrize("key, value", [("OPTIM.MAX_EPOCH", 0), ("OPTIM.MAX_EPOCH", -2),
                                        ("DATALOADER.TRAIN_X.BATCH_SIZE", 0),
                                        ("DATALOADER.TEST.BATCH_SIZE", -1),
                                        ("TRAIN.PRINT_FREQ", 0)])
def test_nonsensical_values_are_refused_naming_the_key(toy_cfg, key, value):
    toy_cfg.merge_from_list([key, str(value)])
    toy_cfg.freeze()
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)} is {value}; .* must be >= 1"):
        build_trainer(toy_cfg)


def test_evaluation_progress_bar_only_on_a_terminal(toy_cfg, capsys):
    toy_cfg.freeze()
    trainer = build_trainer(toy_cfg)
    trainer.test()
    assert "eval test" not in capsys.readouterr().err  # stderr is not a terminal here


def test_log_file_holds_no_ansi_codes(tmp_path):
    setup_logger(str(tmp_path))
    logging.getLogger("engine.test").info("\x1b[31mred\x1b[0m done\x1b[A")
    with open(tmp_path / "log.txt") as f:
        assert f.read().endswith("red done\n")


# --------------------------------------------------------------------------- prompt checkpoints


def _coop_cfg(image_root: str, output: str, *opts: str):
    import trainers  # noqa: F401  (registration)
    from engine.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.merge_from_list([
        "DATASET.ROOT", image_root, "DATASET.NAME", "ToyFolder", "TRAINER.NAME", "CoOp",
        "OUTPUT_DIR", output, "MODEL.BACKBONE.NAME", "tiny", "INPUT.SIZE", "(32, 32)",
        "USE_CUDA", "False", "DATALOADER.NUM_WORKERS", "0", "TRAINER.COOP.N_CTX", "4",
        "TRAINER.COOP.PREC", "fp32", "VERBOSE", "False", *opts])
    cfg.freeze()
    return cfg


def test_prompt_checkpoints_record_backbone_and_prompt_settings(image_root, tmp_path,
                                                                 monkeypatch):
    """CoOp's prompts trained on one backbone do not load on another of the same width, nor
    with another class-token position (both used to evaluate silently, at chance)."""
    import sys

    import clip
    run = str(tmp_path / "run")
    build_trainer(_coop_cfg(image_root, run)).save_model(0, run)
    meta = torch.load(os.path.join(run, "prompt_learner", "model.pth.tar-1"),
                      weights_only=True)["meta"]
    assert meta["trainer"] == "CoOp" and meta["backbone"]["name"] == "tiny"
    assert meta["config"]["TRAINER.COOP.N_CTX"] == 4 and "TRAINER.COOP.PREC" not in meta["config"]
    with pytest.raises(CheckpointError, match=r"TRAINER.COOP.CLASS_TOKEN_POSITION is 'end' in the "
                                              r"checkpoint, 'middle' in this run"):
        build_trainer(_coop_cfg(image_root, run, "TRAINER.COOP.CLASS_TOKEN_POSITION",
                                "middle")).load_model(run, epoch=1)
    other = clip.tiny_clip(seed=1)  # same architecture and widths, other weights
    monkeypatch.setattr(sys.modules["clip.tiny"], "tiny_clip", lambda **sizes: other)
    with pytest.raises(CheckpointError, match=rf"trained on the backbone 'tiny' \(weights "
                                              rf"{meta['backbone']['fingerprint']}\), but this "
                                              rf"run loads 'tiny' \(weights "
                                              rf"{other.identity()['fingerprint']}\)"):
        build_trainer(_coop_cfg(image_root, run)).load_model(run, epoch=1)


@pytest.mark.parametrize("trainer, node", [("CoOp", "COOP"), ("CoCoOp", "COCOOP")])
def test_no_context_without_init_words_is_refused(image_root, tmp_path, trainer, node):
    cfg = _coop_cfg(image_root, str(tmp_path), "TRAINER.NAME", trainer,
                    f"TRAINER.{node}.N_CTX", "0")
    with pytest.raises(ConfigError, match=rf"TRAINER.{node}.N_CTX is 0 and CTX_INIT is empty"):
        build_trainer(cfg)
