"""The papers' tables from an output tree: base-to-novel, cross-dataset, domain
generalization and few-shot, as Markdown (printed and saved), CSV and PNG charts.

    python scripts/results.py output                 # tables of everything under output/
    python scripts/results.py output --out tables/   # where results.md/.csv/*.png go

Conventions (those of the CoCoOp, MaPLe and PromptSRC papers):
- Every number is the accuracy (%) averaged over seeds; "± s" is the standard deviation over
  seeds (population, ddof=0, as the official parse_test_res.py), shown when there are 2+ seeds.
- Base-to-novel: Base is read from test_base/ when present, otherwise from the final test of
  the train_base/ run; Novel from test_new/. The HM of a dataset is the harmonic mean of its
  mean Base and mean Novel (its ± is the std of the per-seed HMs). The Average row averages
  Base and Novel over the datasets that have both, and its HM is the harmonic mean of those
  two averages, not the average of the per-dataset HMs (e.g. MaPLe: HM(82.28, 75.14) = 78.55).
- Cross-dataset / domain generalization: the Average is over the target datasets only; the
  source column is the final test of the training run. The source of an evaluation is the
  training run of the output tree that its log names (as --model-dir); without one (zero-shot
  CLIP, or weights from elsewhere), --source (default imagenet). One table per source.
- Few-shot: one row per dataset and the Average over datasets for each number of shots. A
  training that is only the source of cross-dataset evaluations (a method with no other
  training run) is not a few-shot result.
- Seeds: every table says which seeds its cells average; a cell whose seeds differ from the
  table's usual ones is marked "(seeds ...)" and the table, and the command, warn about it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.elevater_results import elevater_tables, is_elevater_log, plot_elevater  # noqa: E402
from scripts.layout import BASE2NEW_DATASETS, DG_TARGETS, display_name  # noqa: E402
from scripts.logparse import TEST_END, TRAIN_END, parse_task_accuracies, run_result  # noqa: E402
from scripts.tables import (  # noqa: E402
    Stat,
    Table,
    fmt,
    harmonic_mean,
    seed_folders,
    seeds_text,
    usual_seeds,
)
from scripts.tables import csv_row as _csv  # noqa: E402
from scripts.zoo.catalogue import published_base2new  # noqa: E402

# Base / Novel / HM averaged over the 11 datasets, as published (CoCoOp paper for CLIP, CoOp
# and CoCoOp; MaPLe and PromptSRC papers for theirs).
PUBLISHED_BASE2NEW = {
    "ZeroshotCLIP": (69.34, 74.22, 71.70),
    "CoOp": (82.69, 63.22, 71.66),
    "CoCoOp": (80.47, 71.69, 75.83),
    "MaPLe": (82.28, 75.14, 78.55),
    "PromptSRC": (84.26, 76.10, 79.97),
}
_SHOTS_DIR = re.compile(r"(.+)_(\d+)shots$")


@dataclass(frozen=True)
class Record:
    """The final accuracy of one run folder."""

    kind: str  # train_base, test_base, test_new, train, evaluation, few_shot
    dataset: str
    method: str  # Trainer/cfg[/tag]
    shots: int
    seed: int
    accuracy: float
    log: Path
    source: str | None = None  # evaluations: the dataset of the training run evaluated


def _classify(parts: tuple[str, ...]) -> tuple[str, str, str, int] | None:
    """(kind, dataset, method, shots) of a run folder from its path below the root."""
    if parts[0] == "base2new":
        if len(parts) == 7 and parts[1] in ("train_base", "test_base", "test_new") \
                and parts[3].startswith("shots_") and parts[3][6:].isdigit():
            return parts[1], parts[2], f"{parts[4]}/{parts[5]}", int(parts[3][6:])
        return None
    if parts[0] == "evaluation" and len(parts) >= 5:
        trainer, cfg_dir, tag, dataset = parts[1], parts[2], parts[3:-2], parts[-2]
        kind = "evaluation"
    elif parts[0] == "few_shot" and len(parts) >= 5:
        dataset, trainer, cfg_dir, tag, kind = parts[1], parts[2], parts[3], parts[4:-1], "few_shot"
    elif len(parts) >= 4:
        dataset, trainer, cfg_dir, tag, kind = parts[0], parts[1], parts[2], parts[3:-1], "train"
    else:
        return None
    match = _SHOTS_DIR.match(cfg_dir)
    if match is None:
        return None
    return kind, dataset, "/".join((trainer, match.group(1), *tag)), int(match.group(2))


def scan(root: str | Path) -> list[Record]:
    """Every finished run below ``root`` (folders named seed<N> in the official layout)."""
    root = Path(root)
    records = []
    for dirpath, seed, parts in seed_folders(root):
        where = _classify(parts)
        if where is None:
            continue
        kind, dataset, method, shots = where
        end = TRAIN_END if kind in ("train_base", "train") else TEST_END
        result = run_result(dirpath, end)
        if result is not None:
            records.append(Record(kind, dataset, method, shots, seed, result[0]["accuracy"],
                                  result[1]))
    return assign_sources(records, root)


def assign_sources(records: list[Record], root: Path) -> list[Record]:
    """Evaluations with the dataset of the training run (same method, shots and seed) whose
    folder their log names (train.py logs --model-dir and the checkpoint it loads)."""
    trainings: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        if r.kind == "train":
            trainings[(r.method, r.shots, r.seed)].append(r)
    out = []
    for r in records:
        candidates = trainings.get((r.method, r.shots, r.seed), [])
        if r.kind == "evaluation" and candidates:
            text = r.log.read_text(encoding="utf-8", errors="replace")
            named = {c.dataset for c in candidates if _names_folder(text, c.log.parent, root)}
            if len(named) == 1:
                r = dataclasses.replace(r, source=named.pop())
        out.append(r)
    return out


def _names_folder(text: str, folder: Path, root: Path) -> bool:
    """True when ``text`` holds a path ending with ``folder`` (relative to ``root``)."""
    relative = re.escape(folder.relative_to(root).as_posix())
    return re.search(rf"(?:^|[\s\"'/=]){relative}(?=$|[\s\"'/])", text, re.MULTILINE) is not None


def method_label(method: str, shots: int) -> str:
    """A method in a table; the shots when they are not the protocols' 16."""
    return method if shots == 16 else f"{method} ({shots} shots)"


def order_datasets(names: set[str] | list[str], known: tuple[str, ...]) -> list[str]:
    """The papers' order first, then the other datasets by name."""
    names = set(names)
    return [d for d in known if d in names] + sorted(names - set(known))


def _cells(records: list[Record]) -> dict[tuple, Stat]:
    cells: dict[tuple, Stat] = defaultdict(Stat)
    for r in records:
        cells[(r.kind, r.method, r.dataset, r.shots)].by_seed[r.seed] = r.accuracy
    return cells


# ---------------------------------------------------------------- tables


@dataclass
class Base2NewRow:
    dataset: str
    base: Stat
    novel: Stat

    @property
    def hm(self) -> float:
        return harmonic_mean(self.base.mean, self.novel.mean)

    @property
    def hm_seeds(self) -> Stat:
        common = set(self.base.by_seed) & set(self.novel.by_seed)
        return Stat({s: harmonic_mean(self.base.by_seed[s], self.novel.by_seed[s])
                     for s in sorted(common)})

    @property
    def seeds(self) -> str:
        """The seeds of the row: one list when Base and Novel average the same seeds."""
        if not self.base or not self.novel or self.base.seeds == self.novel.seeds:
            return seeds_text((self.base or self.novel).seeds)
        return f"Base {seeds_text(self.base.seeds)}; Novel {seeds_text(self.novel.seeds)}"


def base2new_rows(records: list[Record]) -> dict[tuple[str, int], list[Base2NewRow]]:
    """Per (method, shots): one row per dataset with Base and Novel by seed."""
    cells = _cells(records)
    keys = {(m, d, k) for (kind, m, d, k) in cells if kind.startswith(("train_base", "test_"))}
    out: dict[tuple[str, int], list[Base2NewRow]] = defaultdict(list)
    for method, shots in sorted({(m, k) for m, _d, k in keys}):
        datasets = order_datasets({d for m, d, k in keys if (m, k) == (method, shots)},
                                  BASE2NEW_DATASETS)
        for d in datasets:
            base = Stat({**cells.get(("train_base", method, d, shots), Stat()).by_seed,
                         **cells.get(("test_base", method, d, shots), Stat()).by_seed})
            novel = cells.get(("test_new", method, d, shots), Stat())
            out[(method, shots)].append(Base2NewRow(d, base, novel))
    return out


def base2new_average(rows: list[Base2NewRow]) -> tuple[float, float, float, int] | None:
    """(Base, Novel, HM, number of datasets): means over datasets with both; HM of the means."""
    complete = [r for r in rows if r.base and r.novel]
    if not complete:
        return None
    base = statistics.fmean(r.base.mean for r in complete)
    novel = statistics.fmean(r.novel.mean for r in complete)
    return base, novel, harmonic_mean(base, novel), len(complete)


def base2new_method_table(method: str, shots: int, rows: list[Base2NewRow]) -> Table:
    """One method: Base, Novel, HM and the seeds of each dataset, then the average."""
    table = Table(f"Base-to-novel: {method_label(method, shots)}",
                  ["Dataset", "Base", "Novel", "HM", "Seeds"], [])
    for r in rows:
        hm = r.hm_seeds
        hm_cell = "–" if not (r.base and r.novel) else (
            f"{r.hm:.2f} ± {hm.std:.2f}" if hm.n > 1 else f"{r.hm:.2f}")
        table.rows.append([display_name(r.dataset), fmt(r.base), fmt(r.novel), hm_cell, r.seeds])
        for metric, stat in (("base", r.base), ("novel", r.novel)):
            if stat:
                table.csv_rows.append(_csv("base2new", method, r.dataset, metric, shots, stat))
        if r.base and r.novel:
            table.csv_rows.append(_csv("base2new", method, r.dataset, "hm", shots, r.hm))
    table.add_seed_note([stat for r in rows for stat in (r.base, r.novel)])
    average = base2new_average(rows)
    if average is not None:
        base, novel, hm, n = average
        table.rows.append([f"**Average ({n})**", *(f"{v:.2f}" for v in (base, novel, hm)), ""])
        for metric, value in (("base", base), ("novel", novel), ("hm", hm)):
            table.csv_rows.append(_csv("base2new", method, "average", metric, shots, value))
    return table


def base2new_tables(records: list[Record]) -> list[Table]:
    """The summary over methods, then one table per method."""
    per_method = base2new_rows(records)
    if not per_method:
        return []
    summary = Table("Base-to-novel generalization: average over datasets",
                    ["Method", "Datasets", "Base", "Novel", "HM",
                     "Paper, 11 datasets (Base / Novel / HM)"],
                    [], note="HM = harmonic mean of the average Base and average Novel.")
    tables = []
    for (method, shots), rows in per_method.items():
        table = base2new_method_table(method, shots, rows)
        average = base2new_average(rows)
        if average is not None:
            base, novel, hm, n = average
            trainer = method.split("/")[0]  # a release: its catalogue's numbers
            paper = PUBLISHED_BASE2NEW.get(trainer) or published_base2new(trainer)
            mixed = " (mixed seeds)" if table.warnings else ""
            summary.rows.append([method_label(method, shots) + mixed, str(n), f"{base:.2f}",
                                 f"{novel:.2f}", f"{hm:.2f}",
                                 " / ".join(f"{v:.2f}" for v in paper) if paper else "–"])
        tables.append(table)
    return [summary, *tables]


def transfer_table(records: list[Record], targets: list[str], source: str, title: str,
                   name: str) -> Table | None:
    """Methods x (source, targets, average of the targets), for the evaluations of models
    trained on ``source`` (the records' ``source``, or ``source`` where they have none)."""
    records = [r for r in records if r.kind != "evaluation" or (r.source or source) == source]
    cells = _cells(records)
    evaluated = {(m, k) for (kind, m, d, k) in cells if kind == "evaluation" and d in targets}
    if not evaluated:
        return None
    present = order_datasets({d for (kind, _m, d, _k) in cells
                              if kind == "evaluation" and d in targets}, tuple(targets))
    table = Table(title, ["Method", f"Source: {display_name(source)}",
                          *map(display_name, present), "Average"], [])
    grid = []
    for method, shots in sorted(evaluated):
        src = cells.get(("train", method, source, shots)) or \
            cells.get(("evaluation", method, source, shots), Stat())
        grid.append((method, shots, src,
                     [cells.get(("evaluation", method, d, shots), Stat()) for d in present]))
    usual = usual_seeds(stat for _m, _k, src, stats in grid for stat in [src, *stats])
    for method, shots, src, stats in grid:
        done = [s.mean for s in stats if s]
        average = statistics.fmean(done) if done else None
        table.rows.append([method_label(method, shots), fmt(src, usual),
                           *(fmt(s, usual) for s in stats), fmt(average)])
        if src:
            table.csv_rows.append(_csv(name, method, source, "source", shots, src))
        for d, s in zip(present, stats, strict=True):
            if s:
                table.csv_rows.append(_csv(name, method, d, "accuracy", shots, s))
        if average is not None:
            table.csv_rows.append(_csv(name, method, "average", "accuracy", shots, average))
    if len(present) < len(targets):
        table.note = f"Average over the {len(present)} of {len(targets)} targets present."
    table.add_seed_note([stat for _m, _k, src, stats in grid for stat in [src, *stats]])
    return table


def is_multitask(record: Record) -> bool:
    """A run on several tasks at once (MVLPT's source): its dataset folder lists them."""
    return "," in record.dataset


def multitask_tables(records: list[Record]) -> list[Table]:
    """MVLPT's source runs: for each method and task list, every task's accuracy (among its own
    classes) and the average over tasks (the value used for model selection), over seeds."""
    groups: dict[tuple[str, int, str], dict[str, Stat]] = defaultdict(lambda: defaultdict(Stat))
    for r in records:
        if r.kind != "train" or not is_multitask(r):
            continue
        cells = groups[(r.method, r.shots, r.dataset)]
        for task, accuracy in parse_task_accuracies(r.log, TRAIN_END).items():
            cells[task].by_seed[r.seed] = accuracy
        cells["average"].by_seed[r.seed] = r.accuracy
    tables = []
    for (method, shots, dataset), cells in sorted(groups.items()):
        tasks = dataset.split(",")
        table = Table(f"Multitask: {method} ({shots} shots, {len(tasks)} tasks)",
                      ["Task", "Accuracy", "Seeds"], [],
                      note="Each task among its own classes; Average: the mean over the tasks "
                           "(DATASET.MULTITASK_EVALKEY average), as logged.")
        for task in [t for t in tasks if t in cells] + ["average"]:
            stat = cells[task]
            label = "**Average**" if task == "average" else display_name(task)
            table.rows.append([label, fmt(stat), " ".join(map(str, sorted(stat.by_seed)))])
            table.csv_rows.append(_csv("multitask", method, task, "accuracy", shots, stat))
        tables.append(table)
    return tables


def few_shot_records(records: list[Record], source: str) -> list[Record]:
    """The few-shot results: trainings on all classes, except those of a method whose every
    training is a source of evaluations (cross-dataset models, not few-shot runs), and the
    evaluations of published few-shot weights."""
    sources = {(r.method, r.source or source, r.shots) for r in records
               if r.kind == "evaluation"}
    trainings = [r for r in records if r.kind == "train"]
    only_sources = {r.method for r in trainings} - {
        r.method for r in trainings if (r.method, r.dataset, r.shots) not in sources}
    return [r for r in records if not is_multitask(r) and (
        r.kind == "few_shot" or (r.kind == "train" and r.method not in only_sources))]


def few_shot_tables(records: list[Record], source: str = "imagenet"
                    ) -> tuple[list[Table], dict[str, dict[str, dict]]]:
    """One table per method (datasets x shots, plus the average); and the curves to plot."""
    curves: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    cells = _cells(few_shot_records(records, source))
    tables = []
    for method in sorted({m for (_kind, m, _d, _k) in cells}):
        stats: dict[tuple[str, int], Stat] = {}
        for (_kind, m, d, k), stat in cells.items():
            if m == method:
                stats[(d, k)] = Stat({**stats.get((d, k), Stat()).by_seed, **stat.by_seed})
        shots = sorted({k for _d, k in stats})
        datasets = order_datasets({d for d, _k in stats}, BASE2NEW_DATASETS)
        usual = usual_seeds(stats.values())
        table = Table(f"Few-shot: {method}", ["Dataset", *(f"{k} shots" for k in shots)], [])
        for d in datasets:
            table.rows.append([display_name(d), *(fmt(stats.get((d, k)), usual) for k in shots)])
            for k in shots:
                if (d, k) in stats:
                    curves[method][d][k] = stats[(d, k)].mean
                    table.csv_rows.append(_csv("few_shot", method, d, "accuracy", k, stats[(d, k)]))
        averages = []
        for k in shots:
            means = [stats[(d, k)].mean for d in datasets if (d, k) in stats]
            averages.append(statistics.fmean(means))
            curves[method]["average"][k] = averages[-1]
            table.csv_rows.append(_csv("few_shot", method, "average", "accuracy", k, averages[-1]))
        if len(datasets) > 1:
            table.rows.append(["**Average**", *(f"{a:.2f}" for a in averages)])
        table.add_seed_note(list(stats.values()))
        tables.append(table)
    return tables, curves


# ---------------------------------------------------------------- charts


def plot_base2new(tables: list[Table], path: Path) -> bool:
    """Grouped bars of the average Base, Novel and HM of each method."""
    rows = tables[0].rows if tables else []
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    width = 0.27
    for i, metric in enumerate(("Base", "Novel", "HM")):
        values = [float(row[2 + i]) for row in rows]
        ax.bar([x + (i - 1) * width for x in range(len(rows))], values, width, label=metric)
    names = [row[0].split("/")[0] for row in rows]  # trainer names, unless two share one
    ax.set_xticks(range(len(rows)), names if len(set(names)) == len(names) else
                  [row[0] for row in rows], fontsize="small")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Base-to-novel generalization (average over datasets)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_few_shot(curves: dict[str, dict[str, dict[int, float]]], path: Path) -> bool:
    """Accuracy against shots: the average over datasets, then one panel per dataset."""
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ["average"] + order_datasets({d for c in curves.values() for d in c} - {"average"},
                                          BASE2NEW_DATASETS)
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for method, by_dataset in curves.items():
            points = sorted(by_dataset.get(panel, {}).items())
            if points:
                ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_title("Average" if panel == "average" else display_name(panel))
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ---------------------------------------------------------------- command line


def build_tables(records: list[Record], source: str = "imagenet") -> dict[str, list[Table]]:
    """Every table that the records support, by protocol; one transfer table per source."""
    evaluations = [r for r in records if r.kind == "evaluation"]
    sources = order_datasets({r.source or source for r in evaluations}, BASE2NEW_DATASETS)
    xd, dg = [], []
    for src in sources:
        suffix = f" (source: {display_name(src)})" if len(sources) > 1 else ""
        targets = order_datasets({r.dataset for r in evaluations if (r.source or source) == src}
                                 - set(DG_TARGETS) - {src}, BASE2NEW_DATASETS)
        xd.append(transfer_table(records, targets, src, "Cross-dataset transfer" + suffix, "xd"))
        dg.append(transfer_table(records, list(DG_TARGETS), src,
                                 "Domain generalization" + suffix, "dg"))
    few, _curves = few_shot_tables(records, source)
    return {"base2new": base2new_tables(records), "xd": [t for t in xd if t],
            "dg": [t for t in dg if t], "few_shot": few,
            "multitask": multitask_tables(records)}


def write_outputs(tables: dict[str, list[Table]], records: list[Record], out: Path,
                  source: str = "imagenet") -> list[Path]:
    """results.md, results.csv and the PNG charts in ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.md", out / "results.csv"]
    written[0].write_text(render(tables))
    with open(written[1], "w", newline="") as f:
        writer = csv.DictWriter(f, ["table", "method", "dataset", "metric", "shots", "mean", "std",
                                    "n_seeds", "seeds"])
        writer.writeheader()
        for group in tables.values():
            for table in group:
                writer.writerows(table.csv_rows)
    if plot_base2new(tables["base2new"], out / "base2new.png"):
        written.append(out / "base2new.png")
    if plot_few_shot(few_shot_tables(records, source)[1], out / "few_shot.png"):
        written.append(out / "few_shot.png")
    if plot_elevater(tables.get("elevater", []), out / "elevater.png"):
        written.append(out / "elevater.png")
    return written


def render(tables: dict[str, list[Table]]) -> str:
    """All tables as one Markdown document."""
    titles = {"base2new": "Base-to-novel generalization", "xd": "Cross-dataset transfer",
              "dg": "Domain generalization", "few_shot": "Few-shot learning",
              "multitask": "Multitask prompt tuning (MVLPT source tasks)",
              "elevater": "ELEVATER (MVLPT's protocol)"}
    parts = []
    for key, group in tables.items():
        if group:
            parts.append(f"## {titles[key]}\n")
            parts += [table.markdown() for table in group]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, default=Path("output"), help="output root")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for results.md, results.csv and charts (default: ROOT/tables)")
    parser.add_argument("--source", default="imagenet",
                        help="training dataset of the xd and dg evaluations whose logs name no "
                             "training run of ROOT (zero-shot CLIP, downloaded weights)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        raise SystemExit(f"error: {args.root} is not a directory (give the output root)")
    records = [record for record in scan(args.root) if not is_elevater_log(record.log)]
    elevater = elevater_tables(args.root)
    if not records and not elevater:
        raise SystemExit(f"error: no finished run under {args.root} (folders seed<N> whose "
                         "log.txt holds a final '* accuracy: X%' line)")
    tables = {**build_tables(records, args.source), "elevater": elevater}
    print(render(tables))
    for group in tables.values():
        for table in group:
            for warning in table.warnings:
                print(f"warning: {warning}", file=sys.stderr)
    written = write_outputs(tables, records, args.out or args.root / "tables", args.source)
    print("Wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
