"""Read results from the logs that train.py writes, in Dassl's format.

A run folder holds ``log.txt`` and, after a resume, ``log.txt-<timestamp>`` files. The result
of a log is the value of the last ``* accuracy: X%`` line after the line that ends training
(``Finish training``; ``Finished training`` in logs of older Dassl versions) or, for
evaluation-only runs, after ``=> result``: the rule of the official ``parse_test_res.py``.
"""

from __future__ import annotations

if __name__ == "__main__":  # a module, not a command
    raise SystemExit("scripts/logparse.py is a module of the sweep runner and the table readers; "
                     "run python scripts/sweep.py --help, python scripts/results.py --help")

import re
from collections.abc import Iterator
from pathlib import Path

TRAIN_END = ("Finish training", "Finished training")
TEST_END = ("=> result",)
Signal = str | tuple[str, ...] | None
METRICS = {
    "accuracy": re.compile(r"\* accuracy: ([\.\deE+-]+)%"),
    "error": re.compile(r"\* error: ([\.\deE+-]+)%"),
}


# one line per task of a multitask evaluation (engine.evaluator.MultiTaskClassification)
TASK_LINE = re.compile(r"\* task: \d+ \((.+)\)\ttotal: [\d,]+\tcorrect: [\d,]+\t"
                       r"accuracy: ([\.\deE+-]+)%")


def log_files(run_dir: str | Path) -> list[Path]:
    """The log files of a run folder, oldest first (``log.txt`` before its resumed copies)."""
    run_dir = Path(run_dir)
    files = [p for p in run_dir.glob("log.txt*") if p.is_file()]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def _lines_after(path: str | Path, end_signal: Signal) -> Iterator[str]:
    """The lines of a log file (right-stripped) from the first ``end_signal`` line on."""
    signals = (end_signal,) if isinstance(end_signal, str) else end_signal
    after = signals is None
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip()
            if signals is not None and line.strip() in signals:
                after = True
            if after:
                yield line


def parse_log(path: str | Path, end_signal: Signal) -> dict[str, float]:
    """Metrics of one log file: the last value of each metric after ``end_signal``.

    ``end_signal`` is a line or a tuple of alternative lines; None reads every line. Returns an
    empty dict when nothing is found.
    """
    found: dict[str, float] = {}
    for line in _lines_after(path, end_signal):
        for name, regex in METRICS.items():
            match = regex.search(line)
            if match:
                found[name] = float(match.group(1))
    return found


def parse_task_accuracies(path: str | Path, end_signal: Signal) -> dict[str, float]:
    """Per-task accuracies (task name -> %) of the last multitask evaluation after
    ``end_signal`` in one log file; empty when there is none."""
    found: dict[str, float] = {}
    for line in _lines_after(path, end_signal):
        if line.strip() == "=> per-task result":
            found = {}
        match = TASK_LINE.search(line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def run_result(run_dir: str | Path, end_signal: Signal) -> tuple[dict[str, float], Path] | None:
    """Metrics of the newest log of ``run_dir`` that holds a result, with that log's path."""
    for path in reversed(log_files(run_dir)):
        metrics = parse_log(path, end_signal)
        if "accuracy" in metrics:
            return metrics, path
    return None


def run_accuracy(run_dir: str | Path, end_signal: Signal) -> float | None:
    """Accuracy (in %) of a run folder, or None when the run has not finished."""
    result = run_result(run_dir, end_signal)
    return None if result is None else result[0]["accuracy"]


def is_finished(run_dir: str | Path, end_signal: Signal) -> bool:
    """True when a log of ``run_dir`` holds a final accuracy."""
    return run_result(run_dir, end_signal) is not None
