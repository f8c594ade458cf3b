"""Check a data folder: which benchmarks are installed, which are broken, and their split sizes.

    python -m datasets.check $DATA                      # all fifteen, and ELEVATER's 20
    python -m datasets.check $DATA Caltech101 EuroSAT   # only these
    python -m datasets.check $DATA cifar-10 dtd         # ELEVATER tasks (MVLPT) by name

Each benchmark is loaded with its reader (all shots, all classes); the report gives one line per
dataset: ``ok`` with the number of classes and of train/val/test images, ``missing`` when its
folder is absent, or ``error`` with the reader's message (missing split file, missing images,
...). The exit status is 1 when a present dataset is broken or a named one is missing.
Loading ImageNet the first time lists its 1.3 million files (and saves the listing).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from datasets.benchmarks import ALL_BENCHMARKS, Benchmark  # the package registers every reader
from datasets.elevater import check_tasks as check_elevater
from datasets.elevater_tasks import TASK_NAMES as ELEVATER_TASKS
from engine.config import get_cfg_default
from engine.registry import DATASET_REGISTRY


@dataclass
class Report:
    name: str
    status: str  # ok, missing or error
    detail: str


def check_benchmark(root: str, benchmark: Benchmark) -> Report:
    """Load one benchmark from ``root`` and describe the result."""
    folder = os.path.join(root, benchmark.folder)
    if not os.path.isdir(folder):
        return Report(benchmark.name, "missing", f"no folder {folder} (see DATASETS.md)")
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = benchmark.name
    try:
        dataset = DATASET_REGISTRY.get(benchmark.name)(cfg)
    except (OSError, ValueError, KeyError) as exc:
        return Report(benchmark.name, "error", str(exc).strip())
    sizes = ", ".join(f"{part} {len(items)}" for part, items in
                      (("train", dataset.train_x), ("val", dataset.val), ("test", dataset.test))
                      if items is not None)
    return Report(benchmark.name, "ok", f"{dataset.num_classes} classes, {sizes}")


def format_report(reports: Sequence[Report]) -> str:
    width = max(len(report.name) for report in reports)
    lines = []
    for report in reports:
        detail = report.detail.replace("\n", "\n" + " " * (width + 11))
        lines.append(f"{report.name:<{width}}  {report.status:<7}  {detail}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="the data folder ($DATA, DATASET.ROOT)")
    parser.add_argument("names", nargs="*", help="benchmarks to check (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    known = {benchmark.name: benchmark for benchmark in ALL_BENCHMARKS}
    unknown = [name for name in args.names if name not in known and name not in ELEVATER_TASKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(known)} or "
                     f"ELEVATER's {', '.join(ELEVATER_TASKS)}")
    chosen = [known[name] for name in args.names if name in known]
    elevater = [name for name in args.names if name in ELEVATER_TASKS]
    if not args.names:
        chosen, elevater = list(ALL_BENCHMARKS), list(ELEVATER_TASKS)
    root = os.path.abspath(os.path.expanduser(args.root))
    reports = [check_benchmark(root, benchmark) for benchmark in chosen]
    reports += [Report(*report) for report in check_elevater(root, elevater)] if elevater else []
    sys.stdout.write(f"Datasets under {root}:\n{format_report(reports)}\n")
    failed = [r for r in reports if r.status == "error" or (args.names and r.status != "ok")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
