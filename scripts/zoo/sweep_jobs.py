"""Catalogue entries as a method of scripts/sweep.py (``--methods zoo:maple-b2n``): a download
job (which only checks the files once they are there), then one job per evaluation (dataset,
seed, split), each ``python scripts/zoo/__main__.py eval ...`` writing the run folder where
scripts/results.py reads it, as the method ``zoo:<entry>/<cfg>``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from scripts import layout
from scripts.jobs import Job
from scripts.logparse import TEST_END
from scripts.zoo import catalogue, evaluate, store

DEFAULT_DATASETS = {"base2new": layout.BASE2NEW_DATASETS, "xd": layout.XD_TARGETS,
                    "dg": layout.DG_TARGETS, "few_shot": layout.BASE2NEW_DATASETS}


@dataclass(frozen=True)
class ZooMethod:
    entry: catalogue.Entry

    @property
    def trainer(self) -> str:  # how the sweep names a method in its notes
        return evaluate.method_folder(self.entry)

    def jobs(self, protocol: str, datasets: list[str] | None, seeds: list[int],
             output: Path, opts: list[str], shots: list[int] | None = None) -> list[Job]:
        """The evaluation jobs of ``protocol`` (none when the release does not cover it)."""
        entry = self.entry
        if protocol not in entry.protocols or entry.evaluable():
            return []
        wanted = datasets or list(DEFAULT_DATASETS.get(protocol, ()))
        seeds = [s for s in seeds if not entry.seeds or s in entry.seeds]
        if not seeds:
            return []
        script = Path(__file__).resolve().with_name("__main__.py")
        env = {"ZOO_DIR": str(store.zoo_dir().resolve())}
        # one download (or check) before the evaluations, which would otherwise race for it
        fetch = f"zoo/{entry.name}/download"
        jobs = [Job(fetch, [sys.executable, str(script), "download", entry.name], None, None,
                    (), env, f"zoo/{entry.name}/download")]
        for dataset in (d for d in wanted if d in entry.datasets):
            for run in evaluate.plan(entry, dataset, output, seeds, None, shots):
                args = ["eval", entry.name, "--dataset", dataset, "--seeds", str(run.seed),
                        "--output", str(output), "--shots", str(run.shots)]
                if run.split != "all":
                    args += ["--split", run.split]
                name = f"zoo/{entry.name}/{dataset}/{run.shots}shots/seed{run.seed}/{run.split}"
                command = [sys.executable, str(script), *args, *(["--", *opts] if opts else [])]
                jobs.append(Job(name, command, run.run_dir, TEST_END, (fetch,), env,
                                f"zoo/{entry.name}"))
        return jobs if len(jobs) > 1 else []


def resolve(spec: str) -> ZooMethod | None:
    """``zoo:NAME`` → its method; None for any other spec."""
    if not spec.startswith("zoo:"):
        return None
    try:
        return ZooMethod(catalogue.find(spec[4:]))
    except UserError as err:
        raise SystemExit(f"error: {err}") from err
