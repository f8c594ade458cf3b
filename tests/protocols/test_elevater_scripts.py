"""scripts/mvlpt/main_{single,mt}_elevater_cut.sh: the official arguments of each branch, the
source prompts loaded in every single-task branch, the output layout, dry runs and skipping.

The scripts run in a copy of scripts/ next to the stand-in train.py of conftest.py, which
records its command line; a dry run prints the commands instead.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from datasets.elevater_tasks import TASK_NAMES
from tests.protocols.conftest import FAKE_TRAIN

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("ImageNet,Caltech101,Food101,StanfordCars,OxfordPets,OxfordFlowers,FGVCAircraft,"
           "SUN397,DescribableTextures,EuroSAT,UCF101")


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", root / "scripts",
                    ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    shutil.copy(REPO / "scripts" / "init_source.py", root / "scripts")  # the run folder's name
    (root / "datasets").mkdir()
    shutil.copy(REPO / "datasets" / "elevater_classnames.json", root / "datasets")
    (root / "train.py").write_text(FAKE_TRAIN)
    config = root / "configs" / "trainers" / "MVLPT" / "vit_b16.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("OPTIM:\n  NAME: sgd\n  MAX_EPOCH: 2\n")
    (tmp_path / "data").mkdir()
    return root


def run(repo: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("EXTRA_OPTS", "MODEL_DIR", "OUTPUT", "DATA", "SEEDS", "TASKS")}
    full_env.update({"PYTHON": "python", **env})
    return subprocess.run(["bash", f"scripts/mvlpt/{script}", *args], cwd=repo, env=full_env,
                          capture_output=True, text=True, timeout=1800)


def commands(result: subprocess.CompletedProcess) -> list[list[str]]:
    assert result.returncode == 0, result.stderr
    return [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]


def option(args: list[str], key: str) -> str | None:
    return args[args.index(key) + 1] if key in args else None


BRANCHES = {  # MVLPT's overrides per branch of the official scripts
    "UPT": {"TRAINER.MVLPT.VPT.N_CTX": "4", "TRAINER.MVLPT.COOP.N_CTX": "4",
            "TRAINER.CUT_CONTEXTLEN": "True"},
    "VPT": {"TRAINER.MVLPT.VPT.N_CTX": "4", "TRAINER.MVLPT.COOP.N_CTX": "0",
            "TRAINER.CUT_CONTEXTLEN": None},
    "CoOp": {"TRAINER.MVLPT.VPT.N_CTX": "0", "TRAINER.MVLPT.COOP.N_CTX": "4",
             "TRAINER.CUT_CONTEXTLEN": "True"},
    "COCOOP": {"TRAINER.MVLPT.COCOOP.N_CTX": "4", "TRAINER.MVLPT.COOP.N_CTX": None},
}


@pytest.mark.parametrize("trainer", list(BRANCHES))
def test_single_task_branches_load_the_source_prompts(repo, trainer):
    data, out = str(repo.parent / "data"), str(repo.parent / "out")
    result = run(repo, "main_single_elevater_cut.sh", trainer, "vit_b16", "4", "5", "2",
                 "oxford-iiit-pets", data, out, DRY_RUN="1")
    [args] = commands(result)
    assert args[:2] == ["python", "train.py"] and option(args, "--root") == data
    assert option(args, "--output-dir") == \
        f"{out}/oxford-iiit-pets/{trainer}/vit_b16_5shots/nctx4_csc_ctp/seed2"
    assert option(args, "--model-dir") == f"{out}/{SOURCES}/{trainer}/vit_b16_5shots/nctx4_csc_ctp"
    assert option(args, "--dataset") == "oxford-iiit-pets" and option(args, "--shots") == "5"
    assert option(args, "--trainer") == "MVLPT" and option(args, "--seed") == "2"
    assert option(args, "--config-file").endswith("configs/trainers/MVLPT/vit_b16.yaml")
    for key, value in BRANCHES[trainer].items():
        assert option(args, key) == value, key
    assert option(args, "TEST.FINAL_MODEL") == "best_val"
    assert option(args, "TEST.EVALUATOR") == "ElevaterClassification"
    assert option(args, "DATALOADER.TEST.BATCH_SIZE") == "64"
    assert option(args, "DATALOADER.TRAIN_X.SAMPLER") is None  # shuffled, as upstream for K > 1


def test_single_task_one_shot_model_dir_and_overrides(repo):
    result = run(repo, "main_single_elevater_cut.sh", "UPT", "vit_b16", "4", "1", "1", "dtd",
                 DATA=str(repo.parent / "data"), DRY_RUN="1", MODEL_DIR="none",
                 EXTRA_OPTS="DATALOADER.TRAIN_X.SAMPLER RandomSampler OPTIM.MAX_EPOCH 3")
    [args] = commands(result)
    assert "--model-dir" not in args
    assert option(args, "--output-dir") == \
        "output/elevater/dtd/UPT/vit_b16_1shots/nctx4_csc_ctp_scratch/seed1"  # not the source's
    samplers = [args[i + 1] for i, a in enumerate(args) if a == "DATALOADER.TRAIN_X.SAMPLER"]
    assert samplers == ["SequentialSampler", "RandomSampler"]  # upstream's, then the user's
    assert args[-2:] == ["OPTIM.MAX_EPOCH", "3"]


def test_joint_run_over_the_twenty_tasks(repo):
    result = run(repo, "main_mt_elevater_cut.sh", "VPT", "vit_b16", "16", "20",
                 str(repo.parent / "data"), DRY_RUN="1")
    runs = commands(result)
    assert [option(args, "--seed") for args in runs] == ["1", "2", "3"]
    for seed, args in enumerate(runs, 1):
        assert option(args, "--output-dir") == \
            f"output/elevater_mt/VPT/vit_b16_20shots/nctx16_csc_ctp/seed{seed}"
        assert sorted(option(args, "--dataset").split(",")) == sorted(TASK_NAMES)
        assert "--multi-task" in args and "--model-dir" not in args
        assert option(args, "DATALOADER.TRAIN_X.BATCH_SIZE") == "64"
        assert option(args, "DATALOADER.TRAIN_X.SAMPLER") == "SequentialSampler"
        assert option(args, "TRAINER.MVLPT.COOP.N_CTX") == "0"


def test_runs_train_py_then_skips_a_finished_run(repo):
    env = {"DATA": str(repo.parent / "data"), "OUTPUT": "runs", "SEEDS": "1",
           "TASKS": "cifar-10,mnist"}
    first = run(repo, "main_mt_elevater_cut.sh", "CoOp", "vit_b16", "4", "5", **env)
    assert first.returncode == 0, first.stderr
    run_dir = repo / "runs" / "CoOp" / "vit_b16_5shots" / "nctx4_csc_ctp" / "seed1"
    [args] = json.loads((run_dir / "calls.json").read_text())
    assert option(args, "--dataset") == "cifar-10,mnist" and args[0] == "--root"
    second = run(repo, "main_mt_elevater_cut.sh", "CoOp", "vit_b16", "4", "5", **env)
    assert "Skip this job" in second.stdout
    assert len(json.loads((run_dir / "calls.json").read_text())) == 1


def test_errors(repo):
    result = run(repo, "main_single_elevater_cut.sh", "UPT", "vit_b16", "4", "5", "1",
                 "cifar10", str(repo.parent / "data"), DRY_RUN="1")
    assert result.returncode == 2 and "'cifar10' is not an ELEVATER task" in result.stderr
    assert "cifar-10" in result.stderr
    result = run(repo, "main_single_elevater_cut.sh", "UPT", "vit_b16", "4", "5", "1", "dtd")
    assert result.returncode == 2 and "DATA is not set" in result.stderr
    result = run(repo, "main_mt_elevater_cut.sh", "UPT", "vit_b16")
    assert result.returncode == 2 and "usage: main_mt_elevater_cut.sh" in result.stderr
    result = run(repo, "main_single_elevater_cut.sh", "UPT", "vit_b99", "4", "5", "1", "dtd",
                 str(repo.parent / "data"))
    assert result.returncode == 2 and "configs/trainers/MVLPT/vit_b99.yaml" in result.stderr
