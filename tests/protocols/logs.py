"""Log files in the format train.py writes (Dassl's), for the protocol tests."""

from __future__ import annotations

from pathlib import Path


def result_block(accuracy: float) -> str:
    """Dassl's evaluation block for a given accuracy."""
    return (f"=> result\n* total: 1,000\n* correct: {round(accuracy * 10)}\n"
            f"* accuracy: {accuracy:.2f}%\n* error: {100 - accuracy:.2f}%\n* macro_f1: 50.00%\n")


def write_train_log(run_dir: Path, accuracy: float, name: str = "log.txt",
                    val: float | None = None) -> Path:
    """A finished training: epochs (optionally a validation result), then the final test."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = "Loading trainer: X\nepoch [1/2] batch [1/1] loss 1.0\n"
    if val is not None:
        text += "Evaluate on the *val* set\n" + result_block(val)
    text += "Checkpoint saved to model.pth.tar-2\nFinish training\nEvaluate on the *test* set\n"
    path = run_dir / name
    path.write_text(text + result_block(accuracy) + "Elapsed: 0:00:01\n")
    return path


def write_test_log(run_dir: Path, accuracy: float, name: str = "log.txt") -> Path:
    """An evaluation-only run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    path.write_text("Loading weights to prompt_learner from model.pth.tar-2\n"
                    "Evaluate on the *test* set\n" + result_block(accuracy))
    return path


def write_unfinished_log(run_dir: Path, name: str = "log.txt") -> Path:
    """A training that stopped before its end."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    path.write_text("Loading trainer: X\nepoch [1/2] batch [1/1] loss 1.0\n")
    return path
