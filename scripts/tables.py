"""What every table reader shares: run folders, per-seed cells, and Markdown/CSV tables.

scripts/results.py (the papers' protocols) and scripts/elevater_results.py (MVLPT's ELEVATER
table) both build on this module; neither imports the other's internals.
"""

from __future__ import annotations

if __name__ == "__main__":  # a module, not a command
    raise SystemExit("scripts/tables.py is a module of the table readers; "
                     "run python scripts/results.py --help")

import os
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

_SEED = re.compile(r"seed(\d+)$")


def seed_folders(root: Path) -> Iterator[tuple[str, int, tuple[str, ...]]]:
    """(folder, seed, its path parts below ``root``) of every run folder (named seed<N>; the
    walk does not enter them)."""
    for dirpath, dirnames, _files in os.walk(root):
        seed = _SEED.match(os.path.basename(dirpath))
        if seed is not None:
            dirnames[:] = []
            yield dirpath, int(seed.group(1)), Path(dirpath).relative_to(root).parts


# ---------------------------------------------------------------- statistics


@dataclass
class Stat:
    """Accuracies of one cell, by seed."""

    by_seed: dict[int, float] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.by_seed.values())

    @property
    def std(self) -> float:
        return statistics.pstdev(self.by_seed.values())

    @property
    def n(self) -> int:
        return len(self.by_seed)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(self.by_seed))

    def __bool__(self) -> bool:
        return bool(self.by_seed)


def harmonic_mean(a: float, b: float) -> float:
    """Harmonic mean of two accuracies (0 when both are 0)."""
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def seeds_text(seeds: Iterable[int]) -> str:
    return " ".join(map(str, seeds))


def fmt(stat: Stat | float | None, usual: tuple[int, ...] | None = None) -> str:
    """'mean ± std' (2+ seeds), 'mean' (one seed or a plain number), '–' (missing); a Stat
    whose seeds are not ``usual`` (the table's) says which seeds it averages."""
    if stat is None or (isinstance(stat, Stat) and not stat):
        return "–"
    if not isinstance(stat, Stat):
        return f"{stat:.2f}"
    text = f"{stat.mean:.2f} ± {stat.std:.2f}" if stat.n > 1 else f"{stat.mean:.2f}"
    if usual is None or stat.seeds == usual:
        return text
    return f"{text} (seeds {seeds_text(stat.seeds)})"


def usual_seeds(stats: Iterable[Stat]) -> tuple[int, ...] | None:
    """The seed set most cells average (the first such set on a tie), None without cells."""
    counts = Counter(stat.seeds for stat in stats if stat)
    return counts.most_common(1)[0][0] if counts else None


def seed_note(stats: list[Stat]) -> tuple[str, str | None]:
    """A table's note on the seeds of its cells, and a warning when they differ."""
    usual = usual_seeds(stats)
    if usual is None:
        return "", None
    if all(stat.seeds == usual for stat in stats if stat):
        return f"Seeds: {seeds_text(usual)} (every cell).", None
    warning = (f"cells average different seeds: {seeds_text(usual)}, except those marked "
               f"(seeds ...)")
    return f"**Warning**: {warning}.", warning


# ---------------------------------------------------------------- tables


@dataclass
class Table:
    """One table: a title, column names, rows of cells (str), and long-format CSV rows."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    csv_rows: list[dict] = field(default_factory=list)
    note: str = ""
    warnings: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join([":---"] + ["---:"] * (len(self.columns) - 1)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def add_seed_note(self, stats: list[Stat]) -> None:
        note, warning = seed_note(stats)
        self.note = " ".join(filter(None, [self.note, note]))
        if warning:
            self.warnings.append(f"{self.title}: {warning}")


def csv_row(table: str, method: str, dataset: str, metric: str, shots: int,
         stat: Stat | float) -> dict:
    if isinstance(stat, Stat):
        mean, std, n = stat.mean, stat.std, stat.n
        seeds = seeds_text(stat.seeds)
    else:
        mean, std, n, seeds = stat, "", "", ""
    return {"table": table, "method": method, "dataset": dataset, "metric": metric,
            "shots": shots, "mean": round(mean, 4), "std": std if std == "" else round(std, 4),
            "n_seeds": n, "seeds": seeds}
