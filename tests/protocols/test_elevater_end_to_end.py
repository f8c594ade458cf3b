"""ELEVATER through MVLPT, end to end on the tiny CLIP: the commands the official scripts
build (scripts/mvlpt/main_*_elevater_cut.sh, read from their dry runs) run train.py on
synthetic tasks in ELEVATER's format; the logs carry each task's ELEVATER metric; a target task
starts from another run's prompts.

The commands run in this process (train.cli) rather than as subprocesses: the scripts' own
argument handling is what is checked here; tests/protocols/test_elevater_scripts.py checks
every branch of the scripts.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

import train
from tests.datasets.elevater_layouts import write_task

REPO = Path(__file__).resolve().parents[2]
TINY = "OPTIM.MAX_EPOCH 1 TRAIN.PRINT_FREQ 1 VERBOSE False"


def script_commands(script: str, *args: str, **env: str) -> list[list[str]]:
    """The train.py argument lists that ``script`` runs (its dry run)."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("EXTRA_OPTS", "MODEL_DIR", "OUTPUT", "DATA", "SEEDS", "TASKS")}
    full_env.update({"DRY_RUN": "1", "PYTHON": "python", "EXTRA_OPTS": TINY, **env})
    result = subprocess.run(["bash", f"scripts/mvlpt/{script}", *args], cwd=REPO, env=full_env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr
    lines = [shlex.split(line[2:]) for line in result.stdout.splitlines()
             if line.startswith("+ ")]
    assert lines and all(words[:2] == ["python", "train.py"] for words in lines)
    return [words[2:] for words in lines]


def run(args: list[str]) -> str:
    train.cli(args)
    out = Path(args[args.index("--output-dir") + 1])
    return (out / "log.txt").read_text()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("elevater")
    write_task(str(root), "voc-2007-classification", train_per_class=3, test_per_class=1)
    write_task(str(root), "cifar-10", train_per_class=3, test_per_class=1, zipped=False)
    return root


def test_single_task_joint_run_and_transfer(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # one task (multi-label: 11-point mAP), MUPT from untrained prompts
    (single,) = script_commands("main_single_elevater_cut.sh", "UPT", "demo_tiny", "2", "2", "1",
                                "voc-2007-classification", str(data), str(out), MODEL_DIR="none")
    log = run(single)
    final = log.split("Finish training")[1]
    assert re.search(r"\* task: voc-2007-classification\n\* total: 20\n\* 11point_mAP: [\d.]+%",
                     final)
    assert "Parameters to be updated" in log and "MVLPT variant: MUPT" in log

    # a target task initialised from that run's prompts (the source → target step)
    source = single[single.index("--output-dir") + 1]
    (target,) = script_commands("main_single_elevater_cut.sh", "UPT", "demo_tiny", "2", "2",
                                "1", "cifar-10", str(data), str(out), MODEL_DIR=source)
    log = run(target)
    assert re.search(r"Initialised prompt_learner from .*voc-2007-classification.*"
                     r"model-best.pth.tar \(epoch 1 of that run\): took ", log)
    assert re.search(r"\* task: cifar-10\n\* total: 10\n\* accuracy: [\d.]+%",
                     log.split("Finish training")[1])

    # one prompt on both tasks jointly: labels in alphabetical task order, each task's metric
    # and their average
    (joint,) = script_commands("main_mt_elevater_cut.sh", "CoOp", "demo_tiny", "2", "2",
                               str(data), str(out / "mt"), SEEDS="1",
                               TASKS="voc-2007-classification,cifar-10")
    final = run(joint).split("Finish training")[1]
    order = re.findall(r"\* task: (\S+)", final)
    assert order == ["cifar-10", "voc-2007-classification"]
    metrics = [float(x) for x in re.findall(r"\* (?:accuracy|11point_mAP): ([\d.]+)%", final)]
    average = float(re.search(r"\* average: ([\d.]+)%", final).group(1))
    assert len(metrics) == 2 and abs(average - sum(metrics) / 2) < 0.01


def test_single_task_training_from_cached_features(data: Path, tmp_path: Path) -> None:
    """ELEVATER's transform draws no random numbers: MCoOp trains from cached image features
    (every epoch after the first, and every epoch of a later run) with the same results."""
    logs = {}
    for name in ("plain", "first", "again"):
        extra = "" if name == "plain" else f" FEATURE_CACHE.DIR {tmp_path / 'cache'}"
        (command,) = script_commands("main_single_elevater_cut.sh", "CoOp", "demo_tiny", "2",
                                     "2", "1", "cifar-10", str(data), str(tmp_path / name),
                                     MODEL_DIR="none",
                                     EXTRA_OPTS=TINY + " OPTIM.MAX_EPOCH 2" + extra)
        logs[name] = run(command)
    results = {name: re.findall(r"\* (?:accuracy|loss|total): [\d.]+", log.split(
        "Finish training")[1]) for name, log in logs.items()}
    assert results["plain"] and results["first"] == results["plain"] == results["again"]
    assert "not used" not in logs["first"]
    losses = {name: re.findall(r"loss [\d.]+ \(", log) for name, log in logs.items()}
    assert losses["plain"] and losses["first"] == losses["plain"] == losses["again"]
    assert re.search(r"Feature cache .*: [1-9]\d* features read, [1-9]\d* computed", logs["first"])
    assert re.search(r"Feature cache .*: [1-9]\d* features read, 0 computed", logs["again"])
