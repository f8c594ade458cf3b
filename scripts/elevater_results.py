"""The ELEVATER table of MVLPT's protocol, from the runs of scripts/mvlpt/*_elevater_cut.sh.

A run folder ``.../<Trainer>/<cfg>_<K>shots/<tag>/seed<N>`` counts when its log holds, after
training (``Finish training``) or in an evaluation-only log, ELEVATER result blocks
(``* task: <name>`` then ``* <metric>: X%``, :class:`engine.evaluator.PerTaskMetrics`). A folder
under ``<task>/`` is a single-task run (one block); a joint run has a block per task. Each cell
is the task's metric (accuracy, mean-per-class accuracy or 11-point mAP, in %) averaged over
seeds; the Average column is the mean over the 20 tasks (over those present, marked, when
some are missing). MVLPT's published numbers (``scripts/elevater_published.csv``) are shown in
the rows beside ours.

    python scripts/elevater_results.py OUTPUT     # the ELEVATER tables of OUTPUT, as Markdown

(scripts/results.py prints them with every other table and writes them to results.md/.csv.)
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.logparse import log_files  # noqa: E402
from scripts.tables import Stat, Table, fmt, seed_folders  # noqa: E402
from scripts.tables import csv_row as _csv  # noqa: E402

TASKS = (  # ELEVATER's 20 tasks (datasets/elevater_tasks.py), the columns of the table
    "caltech-101", "cifar-10", "cifar-100", "country211", "dtd", "eurosat_clip", "fer-2013",
    "fgvc-aircraft-2013b-variants102", "food-101", "gtsrb", "hateful-memes", "kitti-distance",
    "mnist", "oxford-flower-102", "oxford-iiit-pets", "patch-camelyon", "rendered-sst2",
    "resisc45_clip", "stanford-cars", "voc-2007-classification",
)
SHORT = {"fgvc-aircraft-2013b-variants102": "fgvc-aircraft",
         "voc-2007-classification": "voc-2007", "oxford-flower-102": "flower-102",
         "oxford-iiit-pets": "pets"}
PUBLISHED = Path(__file__).with_name("elevater_published.csv")
_SHOTS_DIR = re.compile(r"(.+)_(\d+)shots$")
_TASK = re.compile(r"^\* task: (\S+)$")
_METRIC = re.compile(r"^\* (accuracy|mean-per-class|11point_mAP): ([-+.\deE]+)%$")
TRAIN_END = ("Finish training", "Finished training")
TITLES = {"single": "ELEVATER: prompts from CoOp's datasets, fine-tuned per task",
          "scratch": "ELEVATER: prompts trained per task from scratch (MODEL_DIR=none)",
          "other": "ELEVATER: prompts from another model folder (MODEL_DIR), fine-tuned per task",
          "joint": "ELEVATER: one prompt trained on the 20 tasks"}


@dataclass(frozen=True)
class Run:
    """One task's final metric in one run folder."""

    setting: str  # "single" (one task per run) or "joint" (all tasks in one run)
    method: str  # Trainer/cfg[/tag]
    shots: int
    seed: int
    task: str
    metric: str
    value: float


def parse_blocks(path: str | Path) -> dict[str, tuple[str, float]]:
    """task -> (metric, value) of the last result blocks of a log after training (every block
    of an evaluation-only log, which has no training; none of an unfinished training)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f]
    ends = [i for i, line in enumerate(lines) if line in TRAIN_END]
    if not ends and any("epoch [" in line for line in lines):
        return {}  # a training that has not finished: its blocks are validation results
    found: dict[str, tuple[str, float]] = {}
    task = None
    for line in lines[ends[-1] if ends else 0:]:
        match = _TASK.match(line)
        if match:
            task = match.group(1)
            continue
        match = _METRIC.match(line)
        if match and task is not None:
            found[task] = (match.group(1), float(match.group(2)))
            task = None
    return found


def is_elevater_log(path: str | Path) -> bool:
    """True for the log of an ELEVATER run (its results belong to the ELEVATER table only)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return any((match := _TASK.match(line.strip())) and match.group(1) in TASKS
                   for line in f)


def _where(parts: tuple[str, ...]) -> tuple[str, str, int] | None:
    """(setting, method, shots) of a run folder from its path parts below the root."""
    for i, part in enumerate(parts):
        match = _SHOTS_DIR.match(part)
        if match and i >= 1:
            method = "/".join((parts[i - 1], match.group(1), *parts[i + 1:-1]))
            single = i >= 2 and parts[i - 2] in TASKS
            return (_start(method) if single else "joint"), method, int(match.group(2))
    return None


def _start(method: str) -> str:
    """The setting of a single-task run by where its prompts started (the folder suffix of
    scripts/init_source.py): the source prompts, untrained ones, or another folder's."""
    if method.endswith("_scratch"):
        return "scratch"
    return "other" if re.search(r"_from-[0-9a-f]{8}$", method) else "single"


def scan(root: str | Path) -> list[Run]:
    """Every ELEVATER result below ``root``."""
    root = Path(root)
    runs = []
    for dirpath, seed, parts in seed_folders(root):
        where = _where(parts)
        if where is None:
            continue
        for path in reversed(log_files(dirpath)):
            blocks = parse_blocks(path)
            if blocks:
                runs += [Run(*where, seed, task, metric, value)
                         for task, (metric, value) in blocks.items() if task in TASKS]
                break
    return runs


def read_published(path: Path = PUBLISHED) -> dict[tuple[str, str, int], dict[str, float]]:
    """(setting, method, shots) -> task -> MVLPT's published value (the CSV's rows)."""
    table: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
    if not path.exists():
        return table
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            table[(row["setting"], row["method"], int(row["shots"]))][row["task"]] = \
                float(row["value"])
    return table


def paper_method(method: str) -> str:
    """The paper's name of a run's prompt type (the TRAINER of the scripts)."""
    trainer = method.split("/")[0]
    return {"UPT": "MUPT", "VPT": "MVPT", "COCOOP": "MCoCoOp"}.get(trainer, "MCoOp")


def _average(values: dict[str, float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values.values())
    return f"{mean:.2f}" if len(values) == len(TASKS) else f"{mean:.2f} ({len(values)})"


def elevater_tables(root: str | Path, published: Path = PUBLISHED) -> list[Table]:
    """One table per setting (single-task, joint): a row per method and shots (ours, then the
    paper's when published), a column per task and the Average."""
    runs = scan(root)
    paper = read_published(published)
    cells: dict[tuple[str, str, int], dict[str, Stat]] = defaultdict(lambda: defaultdict(Stat))
    for run in runs:
        cells[(run.setting, run.method, run.shots)][run.task].by_seed[run.seed] = run.value
    tables = []
    for setting, title in TITLES.items():
        keys = sorted(key for key in cells if key[0] == setting)
        if not keys:
            continue
        table = Table(title, ["Method", "Shots", *(SHORT.get(t, t) for t in TASKS), "Average"],
                      [], note="Metric of each task as ELEVATER defines it, mean over seeds; "
                               "(n): average over the n tasks present.")
        for key in keys:
            _setting, method, shots = key
            stats = cells[key]
            means = {task: stat.mean for task, stat in stats.items()}
            table.rows.append([method, str(shots), *(fmt(stats.get(t)) for t in TASKS),
                               _average(means)])
            for task, stat in stats.items():
                table.csv_rows.append(_csv(f"elevater_{setting}", method, task,
                                           runs_metric(runs, task), shots, stat))
            if means:
                table.csv_rows.append(_csv(f"elevater_{setting}", method, "average", "average",
                                           shots, statistics.fmean(means.values())))
            published_row = paper.get((setting, paper_method(method), shots))
            if published_row:
                table.rows.append([f"{paper_method(method)} (paper)", str(shots),
                                   *(fmt(published_row.get(t)) for t in TASKS),
                                   _average(published_row)])
        tables.append(table)
    return tables


def runs_metric(runs: list[Run], task: str) -> str:
    return next(run.metric for run in runs if run.task == task)


def plot_elevater(tables: list[Table], path: Path) -> bool:
    """Average over the tasks against shots: ours (solid) and the paper's (dashed)."""
    curves: dict[str, dict[int, float]] = defaultdict(dict)
    for table in tables:
        setting = next(key for key, title in TITLES.items() if title == table.title)
        for row in table.rows:
            value = row[-1].split(" ")[0]
            if value != "–":
                curves[f"{row[0]} ({setting})"][int(row[1])] = float(value)
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, points in sorted(curves.items()):
        shots = sorted(points)
        ax.plot(shots, [points[k] for k in shots], marker="o", label=label,
                linestyle="--" if "(paper)" in label else "-")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(sorted({k for p in curves.values() for k in p}),
                  [str(k) for k in sorted({k for p in curves.values() for k in p})])
    ax.set_xlabel("shots per class")
    ax.set_ylabel("average over tasks (%)")
    ax.set_title("ELEVATER (MVLPT protocol)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    """Print the ELEVATER tables of an output tree."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, default=Path("output"), help="output root")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        raise SystemExit(f"error: {args.root} is not a directory (give the output root)")
    tables = elevater_tables(args.root)
    if not tables:
        raise SystemExit(f"error: no finished ELEVATER run under {args.root} (folders seed<N> "
                         "whose log.txt holds '* task: NAME' result blocks after training)")
    print("\n".join(table.markdown() for table in tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
