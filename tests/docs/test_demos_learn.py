"""Every demo learns: configs/trainers/<Trainer>/demo_tiny.yaml, run as scripts/demo.sh runs
it (``tiny-demo``, the tiny CLIP pre-trained on colours; the synthetic Demo dataset, its 4 base
classes), ends well above the accuracy of its untrained prompts; zero-shot CLIP, which trains
nothing, scores well above chance; PromptKD's two-stage demo (scripts/promptkd/demo.sh: a
PromptSRC teacher, then the student distilled on unlabelled images) ends well above its
untrained student on the new half of the classes. The runs share this process (train.cli) and
the PromptSRC run, which is also PromptKD's teacher.

``python -m pytest -s tests/docs/test_demos_learn.py`` prints the rows of README.md's table
(trainer, untrained, trained).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import train

REPO = Path(__file__).resolve().parents[2]
TWO_STAGE = {"PromptKD"}  # scripts/promptkd/demo.sh: its own test below
DEMOS = sorted(p.parent.name for p in (REPO / "configs" / "trainers").glob("*/demo_tiny.yaml")
               if p.parent.name not in TWO_STAGE)
ZERO_SHOT = ("ZeroshotCLIP", "ZeroshotCLIP2")  # scripts/demo.sh: CoOp's demo config
CHANCE = 25.0  # 4 base classes
MARGIN = 15.0  # points above the untrained prompts, and above chance
BASE = ("DATASET.SUBSAMPLE_CLASSES", "base")


def accuracy(folder: Path) -> float:
    found = re.findall(r"^\* accuracy: ([\d.]+)%$", (folder / "log.txt").read_text(), re.M)
    assert found, f"no accuracy in {folder / 'log.txt'}"
    return float(found[-1])


def demo(trainer: str, data: Path, out: Path, *extra: str, config: str = "") -> float:
    """The command of scripts/demo.sh; returns the last accuracy its log reports."""
    config = config or trainer
    train.cli(["--root", str(data), "--trainer", trainer, "--seed", "1",
               "--dataset-config-file", str(REPO / "configs/datasets/demo.yaml"),
               "--config-file", str(REPO / f"configs/trainers/{config}/demo_tiny.yaml"),
               "--output-dir", str(out), *extra])
    return accuracy(out)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo_data")


@pytest.fixture(scope="module")
def trained() -> dict[str, Path]:
    """Trained demo runs by trainer, shared by the tests of this module."""
    return {}


def learns(before: float, after: float) -> bool:
    return after >= before + MARGIN and after >= CHANCE + MARGIN


@pytest.mark.parametrize("trainer", DEMOS)
def test_the_demo_learns(trainer: str, data: Path, tmp_path: Path,
                         trained: dict[str, Path]) -> None:
    before = demo(trainer, data, tmp_path / "untrained", "--eval-only", *BASE)
    trained[trainer] = tmp_path / "trained"
    after = demo(trainer, data, trained[trainer], *BASE)
    print(f"| {trainer} | {before:.1f}% | {after:.1f}% |")  # README's table (pytest -s)
    assert learns(before, after), f"{trainer}: {before}% untrained, {after}% after training"


@pytest.mark.parametrize("trainer", ZERO_SHOT)
def test_zero_shot_demo_is_well_above_chance(trainer: str, data: Path, tmp_path: Path) -> None:
    score = demo(trainer, data, tmp_path, "--eval-only", *BASE, config="CoOp")
    print(f"| {trainer} | {score:.1f}% | – |")
    assert score >= CHANCE + MARGIN, f"{trainer}: {score}% zero-shot (chance {CHANCE}%)"


def test_the_promptkd_demo_learns(data: Path, tmp_path: Path,
                                  trained: dict[str, Path]) -> None:
    """scripts/promptkd/demo.sh: the student (evaluated on the new half of the classes)
    distilled from the PromptSRC demo's run ends well above the untrained student."""
    teacher_run = trained.get("PromptSRC")
    if teacher_run is None:  # this test run alone
        teacher_run = tmp_path / "PromptSRC"
        demo("PromptSRC", data, teacher_run, *BASE)
    teacher = max(teacher_run.glob("VLPromptLearner/model.pth.tar-*"),
                  key=lambda p: int(p.name.rsplit("-", 1)[1]))
    student = ("TRAINER.PROMPTKD.TEACHER_CKPT", str(teacher))
    before = demo("PromptKD", data, tmp_path / "untrained", "--eval-only", *student)
    after = demo("PromptKD", data, tmp_path / "trained", *student)
    print(f"| PromptKD (student, new classes) | {before:.1f}% | {after:.1f}% |")
    assert learns(before, after), f"PromptKD: {before}% untrained, {after}% after distilling"
