"""The official evaluation of a released checkpoint, through train.py, into the run folders of
scripts/layout.py (so scripts/results.py tables them beside our own runs, as the method
``zoo:<entry>/<cfg>``), and its accuracy beside the published one."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from scripts import layout
from scripts.logparse import TEST_END, run_accuracy
from scripts.zoo.catalogue import REPO, Entry


@dataclass(frozen=True)
class Run:
    """One train.py evaluation: a dataset, a seed, a split (base/new/all) and a shot count."""

    dataset: str
    seed: int
    split: str  # base, new (base-to-novel) or all
    shots: int
    run_dir: Path


def method_folder(entry: Entry) -> str:
    """The trainer level of the run folders: ``zoo:<entry>``, apart from our own runs."""
    return f"zoo:{entry.name}"


def protocol_for(entry: Entry, dataset: str) -> str:
    """The protocol under which ``dataset`` is evaluated for ``entry``."""
    if "base2new" in entry.protocols:
        return "base2new"
    if "few_shot" in entry.protocols:
        return "few_shot"
    if dataset in layout.DG_TARGETS and "dg" in entry.protocols:
        return "dg"
    return "xd"


def plan(entry: Entry, dataset: str, output: Path, seeds: list[int] | None = None,
         splits: list[str] | None = None, shots: list[int] | None = None) -> list[Run]:
    """The evaluations of ``entry`` on ``dataset`` (every seed and split it covers unless
    narrowed), with their run folders."""
    why = entry.evaluable()
    if why:
        raise UserError(why)
    if dataset not in entry.datasets:
        raise UserError(f"{entry.name} covers {', '.join(entry.datasets)}; not {dataset!r}")
    seeds = seeds or list(entry.seeds) or [1]
    bad = [s for s in seeds if entry.seeds and s not in entry.seeds]
    if bad:
        raise UserError(f"{entry.name} was released for seeds {list(entry.seeds)}, not {bad}")
    protocol, cfg, folder = protocol_for(entry, dataset), entry.config, method_folder(entry)
    runs = []
    for k in shots or list(entry.shots) or [16]:
        for seed in seeds:
            if protocol == "base2new":
                for split in splits or ["base", "new"]:
                    if split not in ("base", "new"):
                        raise UserError(f"--split is base or new for {entry.name}, not {split!r}")
                    run_dir = layout.base2new_dir(output, f"test_{split}", dataset, k, folder,
                                                  cfg, seed)
                    runs.append(Run(dataset, seed, split, k, run_dir))
            elif protocol == "few_shot":
                run_dir = layout.few_shot_eval_dir(output, dataset, folder, cfg, k, seed)
                runs.append(Run(dataset, seed, "all", k, run_dir))
            else:
                run_dir = layout.evaluation_dir(output, folder, cfg, k, dataset, seed)
                runs.append(Run(dataset, seed, "all", k, run_dir))
    return runs


def train_py_command(entry: Entry, run: Run, model_dir: Path, data: str,
                     opts: list[str] = ()) -> list[str]:
    """The official evaluation command of the release (its reproduce_*.sh), as argv."""
    command = [sys.executable, str(REPO / "train.py"), "--root", data, "--seed", str(run.seed),
               "--trainer", entry.trainer,
               "--dataset-config-file", str(REPO / "configs" / "datasets" / f"{run.dataset}.yaml"),
               "--config-file", str(entry.config_file), "--output-dir", str(run.run_dir),
               "--model-dir", str(model_dir)]
    if entry.load_epoch is not None:
        command += ["--load-epoch", str(entry.load_epoch)]
    command += ["--eval-only", "DATASET.NUM_SHOTS", str(run.shots)]
    if run.split in ("base", "new"):
        command += ["DATASET.SUBSAMPLE_CLASSES", run.split]
    return command + list(opts)


def execute(command: list[str], run: Run, force: bool = False) -> float:
    """Run ``command`` unless ``run`` already holds a result; return its accuracy."""
    if not force:
        done = run_accuracy(run.run_dir, TEST_END)
        if done is not None:
            return done
    status = subprocess.run(command, check=False).returncode  # paths: the caller's
    accuracy = run_accuracy(run.run_dir, TEST_END)
    if status != 0 or accuracy is None:
        raise UserError(f"train.py stopped (exit status {status}) evaluating {run.dataset} "
                        f"seed {run.seed} ({run.split}); see {run.run_dir / 'log.txt'}")
    return accuracy


def harmonic_mean(base: float, new: float) -> float:
    return 2 * base * new / (base + new) if base + new else 0.0


def summary(entry: Entry, results: list[tuple[Run, float]]) -> list[str]:
    """Lines: each run's accuracy, the mean per split (and HM), then the published numbers."""
    lines = [f"{'dataset':<16} {'seed':>4}  {'split':<5} {'ours':>7}  run folder"]
    by_split: dict[str, list[float]] = {}
    for run, acc in results:
        lines.append(f"{run.dataset:<16} {run.seed:>4}  {run.split:<5} {acc:>7.2f}  {run.run_dir}")
        by_split.setdefault(run.split, []).append(acc)
    means = {s: sum(v) / len(v) for s, v in by_split.items()}
    ours = "  ".join(f"{s} {m:.2f}" for s, m in means.items())
    if "base" in means and "new" in means:
        ours += f"  HM {harmonic_mean(means['base'], means['new']):.2f}"
    lines.append(f"ours (mean over seeds): {ours}")
    pub = entry.published
    if pub:
        values = "  ".join(f"{k} {v}" for k, v in pub.items() if k != "over")
        lines.append(f"published ({pub.get('over', 'as released')}): {values}")
    else:
        lines.append(f"published: none in the official files ({entry.repository})")
    return lines
