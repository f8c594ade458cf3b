"""Mean and standard deviation of the test results of the seeds of one experiment.

The official usage, unchanged::

    B2N=output/base2new; EXP=imagenet/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx
    python parse_test_res.py $B2N/train_base/$EXP             # training logs
    python parse_test_res.py $B2N/test_new/$EXP --test-log    # evaluation-only logs
    python parse_test_res.py DIR --ci95        # 95% confidence interval instead of std
    python parse_test_res.py DIR --multi-exp   # DIR/<exp>/seed<N>/, plus the average over exps

Each sub-folder of DIR (one per seed) holds the log.txt of one run. Training logs are read
after the line "Finish training" ("Finished training" with older Dassl), evaluation logs
(--test-log) after "=> result". A run
resumed by train.py continues in log.txt-<timestamp>; the newest log with a result counts.
The standard deviation is numpy's default (population, ddof=0), as in the official script.
For the tables of whole protocols see scripts/results.py.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from scripts.logparse import TEST_END, TRAIN_END, log_files, run_result


def compute_ci95(values: list[float]) -> float:
    """Half-width of the 95% confidence interval of the mean (normal approximation)."""
    return 1.96 * _std(values) / math.sqrt(len(values))


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _subdirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def parse_directory(directory: Path, end_signal: tuple[str, ...], ci95: bool) -> dict[str, float]:
    """Print the results of every seed folder of ``directory`` and their summary."""
    print(f"Parsing files in {directory}")
    if not directory.is_dir():
        raise SystemExit(f"error: {directory} is not a directory")
    per_metric: dict[str, list[float]] = {}
    for subdir in _subdirs(directory):
        result = run_result(subdir, end_signal)
        if result is None:
            after = " or ".join(f"'{signal}'" for signal in end_signal)
            reason = f"no result after {after}" if log_files(subdir) else "no log.txt"
            print(f"warning: skipping {subdir}: {reason}", file=sys.stderr)
            continue
        metrics, path = result
        msg = f"file: {path}. "
        for name, value in metrics.items():
            msg += f"{name}: {value:.2f}%. "
            per_metric.setdefault(name, []).append(value)
        print(msg)
    if not per_metric:
        hint = "" if end_signal == TEST_END else " (evaluation-only logs need --test-log)"
        raise SystemExit(f"error: nothing found in {directory}{hint}")

    summary = {}
    print("===")
    print(f"Summary of directory: {directory}")
    for name, values in per_metric.items():
        mean = sum(values) / len(values)
        spread = compute_ci95(values) if ci95 else _std(values)
        print(f"* {name}: {mean:.2f}% +- {spread:.2f}%")
        summary[name] = mean
    print("===")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="folder holding one sub-folder per seed")
    parser.add_argument("--ci95", action="store_true", help="95%% confidence interval, not std")
    parser.add_argument("--test-log", action="store_true", help="parse evaluation-only logs")
    parser.add_argument("--multi-exp", action="store_true", help="parse several experiments")
    args = parser.parse_args(argv)
    end_signal = TEST_END if args.test_log else TRAIN_END

    if not args.multi_exp:
        parse_directory(args.directory, end_signal, args.ci95)
        return 0
    averages: dict[str, list[float]] = {}
    for exp in _subdirs(args.directory):
        for name, value in parse_directory(exp, end_signal, args.ci95).items():
            averages.setdefault(name, []).append(value)
    print("Average performance")
    for name, values in averages.items():
        print(f"* {name}: {sum(values) / len(values):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
