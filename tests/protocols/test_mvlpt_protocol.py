"""MVLPT's protocol: the official script names (source, average, target) on the stand-in
train.py, and the per-task results in the tables."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import torch

from engine.config import get_cfg_default
from engine.evaluator import TaskRange, build_evaluator
from scripts import results
from scripts.logparse import TRAIN_END, parse_task_accuracies
from tests.protocols.test_protocol_scripts import calls, run

REPO = Path(__file__).resolve().parents[2]
TASKS = "Caltech101,EuroSAT"
TAG = "UPT/vit_b16_5shots/nctx4_csc_ctp"


def mvlpt_repo(repo: Path) -> Path:
    config = repo / "configs" / "trainers" / "MVLPT" / "vit_b16.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("OPTIM:\n  NAME: sgd\n  MAX_EPOCH: 200\n")
    return repo


def best_checkpoint(run_dir: Path, value: float) -> None:
    folder = run_dir / "prompt_learner"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"ctx": torch.full((4, 8), value)}, "epoch": 150,
                "val_result": value}, folder / "model-best.pth.tar")


def test_source_average_target_scripts(repo: Path, tmp_path: Path) -> None:
    repo = mvlpt_repo(repo)
    data, out = str(tmp_path / "data"), "out"
    env = {"TASKS": TASKS, "DATA": "", "PYTHONPATH": str(REPO)}
    for seed in ("1", "2"):
        result = run(repo, "mvlpt/main_mt_coopdata_cut.sh", "UPT", "vit_b16", "4", "5", seed,
                     data, out, **env)
        assert result.returncode == 0, result.stderr
    source = repo / out / TASKS / TAG
    (args,) = calls(source / "seed1")
    assert args[:4] == ["--root", data, "--seed", "1"]
    assert args[args.index("--trainer") + 1] == "MVLPT"
    assert args[args.index("--config-file") + 1].endswith("configs/trainers/MVLPT/vit_b16.yaml")
    assert args[args.index("--dataset") + 1] == TASKS and "--multi-task" in args
    assert args[args.index("--shots") + 1] == "5" and "--dataset-coop" in args
    assert args[-14:] == ["TRAINER.MVLPT.VPT.N_CTX", "4", "TRAINER.MVLPT.COOP.N_CTX", "4",
                          "TRAINER.MVLPT.COOP.CLASS_TOKEN_POSITION", "middle",
                          "TRAINER.MVLPT.COOP.CSC", "False", "TRAINER.CUT_CONTEXTLEN", "True",
                          "TEST.NO_TEST", "False", "TEST.FINAL_MODEL", "best_val"]

    result = run(repo, "mvlpt/main_single_coopdata_cut.sh", "UPT", "vit_b16", "4", "5", "1",
                 "EuroSAT", data, out, **env)
    assert result.returncode == 2 and "scripts/mvlpt/avg_ckpt.sh" in result.stderr  # no source
    best_checkpoint(source / "seed1", 1.0)
    best_checkpoint(source / "seed2", 3.0)
    result = run(repo, "mvlpt/avg_ckpt.sh", "UPT", "vit_b16", "4", "5", out, SEEDS="1 2", **env)
    assert result.returncode == 0, result.stderr
    averaged = torch.load(source / "prompt_learner" / "model-best.pth.tar", weights_only=True)
    assert torch.equal(averaged["state_dict"]["ctx"], torch.full((4, 8), 2.0))
    assert averaged["epoch"] == 150 and averaged["val_result"] == 2.0

    result = run(repo, "mvlpt/main_single_coopdata_cut.sh", "UPT", "vit_b16", "4", "5", "1",
                 "EuroSAT", data, out, **env)
    assert result.returncode == 0, result.stderr
    (args,) = calls(repo / out / "EuroSAT" / TAG / "seed1")
    assert args[args.index("--model-dir") + 1] == f"{out}/{TASKS}/{TAG}"
    assert args[args.index("--dataset") + 1] == "EuroSAT" and "--multi-task" not in args
    assert "--eval-only" not in args  # the source initialises a training
    result = run(repo, "mvlpt/main_single_coopdata_cut.sh", "UPT", "vit_b16", "4", "5", "2",
                 "EuroSAT", data, out, MODEL_DIR="none", **env)
    (args,) = calls(repo / out / "EuroSAT" / f"{TAG}_scratch" / "seed2")
    assert "--model-dir" not in args  # the single-task baseline, in a folder of its own


def test_bad_variants_and_missing_runs_are_clear_errors(repo: Path) -> None:
    repo = mvlpt_repo(repo)
    result = run(repo, "mvlpt/main_mt_coopdata_cut.sh", "MaPLe", "vit_b16", "4", "5", "1")
    assert result.returncode == 2 and "use CoOp (MCoOp), VPT (MVPT), UPT (MUPT)" in result.stderr
    result = run(repo, "mvlpt/avg_ckpt.sh", "VPT", "vit_b16", "16", "5", SEEDS="1")
    assert result.returncode == 2 and "has not finished" in result.stderr
    result = run(repo, "mvlpt/main_mt_coopdata_cut.sh", "CoOp", "vit_b16", "16")
    assert result.returncode == 2 and "usage: main_mt_coopdata_cut.sh" in result.stderr


def test_zeroshot_script(repo: Path) -> None:
    result = run(repo, "mvlpt/zeroshot.sh", "dtd", "vit_b16")
    assert result.returncode == 0, result.stderr
    (args,) = calls(repo / "output/ZeroshotCLIP/vit_b16/dtd")
    assert "--eval-only" in args and args[args.index("--trainer") + 1] == "ZeroshotCLIP"


def _evaluator_log(accuracies: list[tuple[int, int]]) -> str:
    """What MultiTaskClassification logs for two tasks with (correct, total) images."""
    evaluator = build_evaluator(get_cfg_default(), tasks=[TaskRange("Caltech101", 0, 2),
                                                          TaskRange("EuroSAT", 2, 4)])
    for task, (correct, total) in enumerate(accuracies):
        labels = torch.full((total,), 2 * task)
        logits = torch.zeros(total, 4)
        logits[:correct, 2 * task] = 1
        logits[correct:, 2 * task + 1] = 1
        evaluator.process(logits, labels)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("engine.evaluator")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        evaluator.evaluate()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return stream.getvalue()


def test_per_task_results_reach_the_tables(tmp_path: Path) -> None:
    source = tmp_path / TASKS / "CoOp/vit_b16_5shots/nctx16_csc_ctp"
    for seed, (a, b) in {1: ((8, 10), (5, 10)), 2: ((6, 10), (9, 10))}.items():
        (source / f"seed{seed}").mkdir(parents=True)
        text = ("Evaluate on the *val* set\n" + _evaluator_log([(1, 2), (1, 2)])
                + "Finish training\nEvaluate on the *test* set\n" + _evaluator_log([a, b]))
        (source / f"seed{seed}" / "log.txt").write_text(text)
    assert parse_task_accuracies(source / "seed1" / "log.txt", TRAIN_END) == {
        "Caltech101": 80.0, "EuroSAT": 50.0}
    records = results.scan(tmp_path)
    assert sorted((r.dataset, r.method, r.shots, r.accuracy) for r in records) == [
        (TASKS, "CoOp/vit_b16/nctx16_csc_ctp", 5, 65.0),
        (TASKS, "CoOp/vit_b16/nctx16_csc_ctp", 5, 75.0)]  # the selection values, as logged
    tables = results.build_tables(records)
    assert tables["few_shot"] == []  # a multitask run is not a few-shot row
    (table,) = tables["multitask"]
    assert table.rows == [["Caltech101", "70.00 ± 10.00", "1 2"],
                          ["EuroSAT", "70.00 ± 20.00", "1 2"],
                          ["**Average**", "70.00 ± 5.00", "1 2"]]
    written = results.write_outputs(tables, records, tmp_path / "tables")
    csv_text = written[1].read_text()
    assert "multitask,CoOp/vit_b16/nctx16_csc_ctp,EuroSAT,accuracy,5,70.0,20.0,2" in csv_text
    assert "Multitask prompt tuning" in written[0].read_text()
    assert os.path.basename(written[0]) == "results.md"
