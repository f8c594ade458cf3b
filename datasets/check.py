"""Check a data folder: which datasets are installed, which are broken, and their split sizes.

    python -m datasets.check $DATA                       # the fifteen, and ELEVATER's 20
    python -m datasets.check $DATA Caltech101 EuroSAT    # only these
    python -m datasets.check $DATA cifar-10 dtd          # ELEVATER tasks (MVLPT) by name
    python -m datasets.check $DATA --decode              # and decode every image
    python -m datasets.check $DATA configs/datasets/custom.yaml -- DATASET.CUSTOM.DIR pets
    python -m datasets.check $DATA Custom -- DATASET.CUSTOM.DIR pets DATASET.CUSTOM.CSV x.csv

A name is a registered dataset (a benchmark, ``Custom``, ``Demo``, or one of your own imported
through ``ENGINE_IMPORTS=pkg.module``, as for train.py) or a dataset config file; ``KEY VALUE``
pairs after ``--`` are set for every dataset checked. Each dataset is loaded with its reader
(all shots, all classes); the report gives one line per dataset: ``ok`` with the number of
classes and of train/val/test images, ``missing`` when a benchmark's folder is absent, or
``error`` with the reader's message (missing split file, missing images, ...).

ELEVATER's tasks (datasets/elevater.py) are checked by their ELEVATER names: their index
files are read and every listed image is looked up in its archive or folder.

``--decode`` also opens every image of every split as training does (``read_image``), in
``--workers`` processes with a progress bar, and reports the files that cannot be read and why
(truncated, not an image, over PIL's size limit, ...): a run otherwise meets them only when it
reaches them, possibly hours in. The exit status is 1 when a dataset is broken, a named one is
missing, or an image cannot be decoded.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from datasets.benchmarks import ALL_BENCHMARKS  # the package registers every reader
from datasets.elevater import check_tasks as check_elevater
from datasets.elevater_tasks import TASK_NAMES as ELEVATER_TASKS
from engine.config import CfgNode, get_cfg_default
from engine.data.datasets import DatasetBase
from engine.data.read_image import read_image
from engine.registry import DATASET_REGISTRY

MAX_LISTED = 5  # unreadable images quoted per dataset


@dataclass
class Report:
    name: str
    status: str  # ok, missing or error
    detail: str


@dataclass(frozen=True)
class Target:
    """A dataset to check: its config, and for a benchmark its folder under the root."""

    name: str
    cfg: CfgNode
    folder: str | None = None


def load(target: Target) -> tuple[DatasetBase | None, Report]:
    """Load one dataset with its reader and describe the result."""
    if target.folder is not None and not os.path.isdir(target.folder):
        return None, Report(target.name, "missing", f"no folder {target.folder} (see "
                                                    "DATASETS.md)")
    try:
        dataset = DATASET_REGISTRY.get(target.cfg.DATASET.NAME)(target.cfg)
    except (OSError, ValueError, KeyError) as exc:
        return None, Report(target.name, "error", str(exc).strip().strip("'\""))
    sizes = ", ".join(f"{part} {len(items)}" for part, items in
                      (("train", dataset.train_x), ("val", dataset.val), ("test", dataset.test))
                      if items is not None)
    return dataset, Report(target.name, "ok", f"{dataset.num_classes} classes, {sizes}")


def decode_one(path: str) -> str | None:
    """Why ``path`` cannot be read as training reads it, or None."""
    try:
        read_image(path)
    except OSError as exc:
        return str(exc)
    return None


def decode_all(paths: Sequence[str], workers: int, label: str) -> list[tuple[str, str]]:
    """``(path, reason)`` of the images that fail to decode, in ``workers`` processes."""
    if workers <= 1:
        results: Iterable[str | None] = map(decode_one, paths)
        return _failures(paths, tqdm(results, total=len(paths), desc=label, unit="img"))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(decode_one, paths, chunksize=max(1, min(256, len(paths) // workers)))
        return _failures(paths, tqdm(results, total=len(paths), desc=label, unit="img"))


def _failures(paths: Sequence[str], results: Iterable[str | None]) -> list[tuple[str, str]]:
    return [(path, reason) for path, reason in zip(paths, results, strict=True) if reason]


def decode_report(dataset: DatasetBase, report: Report, workers: int) -> Report:
    """``report`` with the outcome of decoding every image of ``dataset``."""
    paths = sorted({item.impath for items in (dataset.train_x, dataset.train_u, dataset.val,
                                                dataset.test) for item in items or []})
    failed = decode_all(paths, workers, report.name)
    if not failed:
        return Report(report.name, "ok", f"{report.detail}; {len(paths)} images decoded")
    listed = "\n".join(reason for _path, reason in failed[:MAX_LISTED])
    more = f"\n... and {len(failed) - MAX_LISTED} more" if len(failed) > MAX_LISTED else ""
    return Report(report.name, "error", f"{report.detail}; {len(failed)} of {len(paths)} images "
                                        f"cannot be decoded:\n{listed}{more}")


def format_report(reports: Sequence[Report]) -> str:
    width = max(len(report.name) for report in reports)
    lines = []
    for report in reports:
        detail = report.detail.replace("\n", "\n" + " " * (width + 11))
        lines.append(f"{report.name:<{width}}  {report.status:<7}  {detail}")
    return "\n".join(lines)


def targets(root: str, names: Sequence[str], opts: Sequence[str]) -> list[Target]:
    """The datasets to check: the benchmarks by default, else the names and config files."""
    folders = {b.name: os.path.join(root, b.folder) for b in ALL_BENCHMARKS}
    chosen = []
    for name in names or list(folders):
        cfg = get_cfg_default()
        if name.endswith((".yaml", ".yml")):
            cfg.merge_from_file(name)
        else:
            cfg.DATASET.NAME = name
        cfg.merge_from_list(list(opts))
        cfg.DATASET.ROOT = root
        label = name if cfg.DATASET.NAME == name else f"{cfg.DATASET.NAME} ({name})"
        chosen.append(Target(label, cfg, folders.get(name)))
    return chosen


def import_plugins() -> None:
    """The modules of ``ENGINE_IMPORTS`` (your own datasets), as train.py imports them."""
    for module in filter(None, (m.strip() for m in os.environ.get("ENGINE_IMPORTS", "")
                                .split(","))):
        importlib.import_module(module)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datasets.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="the data folder ($DATA, DATASET.ROOT)")
    parser.add_argument("names", nargs="*",
                        help="datasets (DATASET.NAME), ELEVATER task names or dataset config "
                             "files (default: the fifteen benchmarks and ELEVATER's 20 tasks)")
    parser.add_argument("--decode", action="store_true",
                        help="decode every image of every split, as training reads them")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes decoding images (default: the CPU count)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = build_parser()
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    import_plugins()
    if len(opts) % 2:
        parser.error(f"the words after -- must be KEY VALUE pairs, got {len(opts)}: {opts}")
    elevater = [n for n in args.names if n in ELEVATER_TASKS]
    names = [n for n in args.names if n not in ELEVATER_TASKS]
    unknown = [n for n in names if not n.endswith((".yaml", ".yml")) and n not in DATASET_REGISTRY]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from "
                     f"{', '.join(sorted(DATASET_REGISTRY))}, ELEVATER's "
                     f"{', '.join(ELEVATER_TASKS)}, or give a dataset config file")
    if not args.names:
        elevater = list(ELEVATER_TASKS)
    root = os.path.abspath(os.path.expanduser(args.root))
    try:
        chosen = targets(root, names, opts) if names or not args.names else []
    except (OSError, KeyError, ValueError) as exc:
        parser.error(str(exc))
    reports = []
    for target in chosen:
        dataset, report = load(target)
        if args.decode and dataset is not None:
            report = decode_report(dataset, report, args.workers)
        reports.append(report)
    reports += [Report(*report) for report in check_elevater(root, elevater)] if elevater else []
    sys.stdout.write(f"Datasets under {root}:\n{format_report(reports)}\n")
    failed = [r for r in reports if r.status == "error" or (args.names and r.status != "ok")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
