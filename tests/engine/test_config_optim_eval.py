"""Config merge order and errors; learning rates per epoch; evaluator output."""

from __future__ import annotations

import logging
import math
import os
import re
import warnings

import pytest
import torch

import train
from engine.config import CN, get_cfg_default, register_config
from engine.evaluator import Classification, macro_f1_score
from engine.optim import build_lr_scheduler, build_optimizer


def test_defaults_are_dassls_and_commented():
    cfg = get_cfg_default()
    assert (cfg.SEED, cfg.OUTPUT_DIR, cfg.INPUT.INTERPOLATION) == (-1, "./output", "bilinear")
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.ADAM_BETA2) == ("adam", 0.0003, 0.999)
    assert (cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE, cfg.OPTIM.WARMUP_RECOUNT) == (
        -1, "linear", True)
    assert cfg.INPUT.RRCROP_SCALE == (0.08, 1.0) and cfg.TEST.FINAL_MODEL == "last_step"
    import engine.config as module
    with open(module.__file__) as f:
        assignments = [line for line in f if re.match(r"\s+_C\.[A-Z_.]+ = ", line)]
    assert len(assignments) > 80
    assert [line for line in assignments if "#" not in line and "CN()" not in line] == []


def test_register_config_adds_node():
    @register_config
    def add(cfg):
        cfg.TRAINER.UNIT_TEST_NODE = CN()
        cfg.TRAINER.UNIT_TEST_NODE.N_CTX = 4  # test key

    assert get_cfg_default().TRAINER.UNIT_TEST_NODE.N_CTX == 4


def _args(tmp_path, *argv):
    (tmp_path / "ds.yaml").write_text("DATASET:\n  NAME: ToyFolder\nOPTIM:\n  LR: 1.0\n")
    (tmp_path / "m.yaml").write_text("OPTIM:\n  LR: 2.0\n  MAX_EPOCH: 7\nSEED: 5\n")
    return train.build_parser().parse_args(
        ["--dataset-config-file", str(tmp_path / "ds.yaml"), "--config-file",
         str(tmp_path / "m.yaml"), *argv])


def test_merge_order(tmp_path):
    cfg = train.setup_cfg(_args(tmp_path, "--seed", "0", "--root", "R", "OPTIM.MAX_EPOCH", "9"))
    assert (cfg.DATASET.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == ("ToyFolder", 2.0, 9)
    assert cfg.SEED == 0 and cfg.DATASET.ROOT == "R" and cfg.is_frozen()
    assert train.setup_cfg(_args(tmp_path)).SEED == 5  # no --seed: the file's value stays


def test_unknown_keys_name_closest(tmp_path):
    with pytest.raises(KeyError, match=r"OPTIM.MAX_EPOCHS.*OPTIM.MAX_EPOCH"):
        train.setup_cfg(_args(tmp_path, "OPTIM.MAX_EPOCHS", "3"))
    (tmp_path / "bad.yaml").write_text("TEST:\n  SPLITT: val\n")
    cfg = get_cfg_default()
    with pytest.raises(KeyError, match=r"TEST.SPLITT.*bad.yaml.*TEST.SPLIT"):
        cfg.merge_from_file(str(tmp_path / "bad.yaml"))
    with pytest.raises(ValueError, match="Type mismatch"):
        cfg.merge_from_list(["OPTIM.MAX_EPOCH", "'five'"])


def _lrs(max_epoch, lr, **extra):
    cfg = get_cfg_default()
    cfg.merge_from_list(["OPTIM.NAME", "sgd", "OPTIM.LR", str(lr), "OPTIM.MAX_EPOCH",
                         str(max_epoch), *sum(([k, str(v)] for k, v in extra.items()), [])])
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.OPTIM)
    sched = build_lr_scheduler(opt, cfg.OPTIM)
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(max_epoch):
            values.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return values


@pytest.mark.parametrize("max_epoch, lr", [(5, 0.0035), (50, 0.002), (20, 0.0025)])
def test_cosine_with_constant_warmup(max_epoch, lr):
    # Dassl: epoch 0 at WARMUP_CONS_LR, then cosine restarted at 0 (WARMUP_RECOUNT=True)
    expected = [1e-5] + [0.5 * lr * (1 + math.cos(math.pi * (e - 1) / max_epoch))
                         for e in range(1, max_epoch)]
    got = _lrs(max_epoch, lr, **{"OPTIM.LR_SCHEDULER": "cosine", "OPTIM.WARMUP_EPOCH": 1,
                                  "OPTIM.WARMUP_TYPE": "constant", "OPTIM.WARMUP_CONS_LR": 1e-5})
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_linear_warmup_and_step_schedules():
    got = _lrs(6, 0.1, **{"OPTIM.LR_SCHEDULER": "single_step", "OPTIM.STEPSIZE": "(2,)",
                          "OPTIM.WARMUP_EPOCH": 2, "OPTIM.WARMUP_TYPE": "linear",
                          "OPTIM.WARMUP_MIN_LR": 1e-4})
    assert got == pytest.approx([1e-4, 0.05, 0.1, 0.1, 0.01, 0.01])
    got = _lrs(5, 0.1, **{"OPTIM.LR_SCHEDULER": "multi_step", "OPTIM.STEPSIZE": "(1, 3)"})
    assert got == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])


def test_optimizer_options():
    cfg = get_cfg_default()
    cfg.merge_from_list(["OPTIM.NAME", "sgd", "OPTIM.SGD_NESTEROV", "True",
                         "OPTIM.MOMENTUM", "0.8"])
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.OPTIM)
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD)
    assert (group["nesterov"], group["momentum"], group["dampening"]) == (True, 0.8, 0)
    cfg.OPTIM.NAME = "adamw"
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.OPTIM)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["betas"] == (0.9, 0.999)
    cfg.OPTIM.NAME = "lion"
    with pytest.raises(ValueError, match="lion"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.OPTIM)


def test_macro_f1_by_hand():
    # labels 0,1,2; TP/FP/FN: 0 -> 2/1/0, 1 -> 1/0/1, 2 -> 0/0/0 but 2 absent from truth
    y_true, y_pred = [0, 0, 1, 1], [0, 0, 0, 1]
    f1_0, f1_1 = 2 * 2 / (2 * 2 + 1 + 0), 2 * 1 / (2 * 1 + 0 + 1)
    assert macro_f1_score(y_true, y_pred) == pytest.approx((f1_0 + f1_1) / 2)
    assert macro_f1_score([0, 1], [2, 2]) == 0.0


def test_macro_f1_equals_its_definition_on_random_labels():
    def by_definition(y_true, y_pred):
        scores = []
        for label in sorted(set(y_true)):
            pairs = list(zip(y_true, y_pred, strict=True))
            tp = sum(t == label and p == label for t, p in pairs)
            fp = sum(t != label and p == label for t, p in pairs)
            fn = sum(t == label and p != label for t, p in pairs)
            scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        return sum(scores) / len(scores)

    gen = torch.Generator().manual_seed(0)
    for n, k in ((1, 1), (40, 3), (500, 60)):
        y_true = torch.randint(k, (n,), generator=gen).tolist()
        y_pred = torch.randint(k + 2, (n,), generator=gen).tolist()  # some never true
        assert macro_f1_score(y_true, y_pred) == pytest.approx(by_definition(y_true, y_pred),
                                                               abs=1e-12)
    with pytest.raises(ValueError, match="2 labels but 1"):
        macro_f1_score([0, 1], [0])


def test_evaluator_block_per_class_and_cmat(tmp_path, caplog):
    cfg = get_cfg_default()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TEST.PER_CLASS_RESULT = True
    cfg.TEST.COMPUTE_CMAT = True
    evaluator = Classification(cfg, lab2cname={0: "cat", 1: "dog"})
    logits = torch.tensor([[2.0, 0.0], [3.0, 1.0], [5.0, 0.0], [0.0, 1.0]])
    caplog.set_level(logging.INFO)
    evaluator.process(logits[:2], torch.tensor([0, 0]))
    evaluator.process(logits[2:], torch.tensor([1, 1]))
    results = evaluator.evaluate()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert ("=> result\n* total: 4\n* correct: 3\n* accuracy: 75.0%\n* error: 25.0%\n"
            "* macro_f1: 73.3%") in text
    assert "* class: 1 (dog)\ttotal: 2\tcorrect: 1\tacc: 50.0%" in text
    assert "* average: 75.0%" in text
    assert list(results)[0] == "accuracy" and results["accuracy"] == 75.0
    cmat = torch.load(os.path.join(tmp_path, "cmat.pt"), weights_only=True)
    assert torch.equal(cmat, torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64))
