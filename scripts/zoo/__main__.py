r"""Released checkpoints by name: list, download, locate and evaluate them.

    python -m scripts.zoo list [--method M] [--protocol P] [--dataset D] [--backbone B]
    python -m scripts.zoo table                       (the catalogue in markdown)
    python -m scripts.zoo download NAME...            (resumable; files checked by sha256)
    python -m scripts.zoo path NAME [--dataset D --seed S [--shots K]]
    python -m scripts.zoo eval NAME --dataset D [--seeds 1 2 3] [--split base new] \
        [--root $DATA] [--output output] [-- KEY VALUE ...]
    python -m scripts.zoo forget NAME                 (accept a file that changed at its source)

Downloads go to $ZOO_DIR (default ./released); see scripts/zoo/store.py for the layout, and
ZOO_MIRROR / ZOO_CATALOGUE for mirrors and extra catalogues.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (the sweep's jobs do)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.errors import UserError  # noqa: E402
from scripts.zoo import catalogue, evaluate, store  # noqa: E402


def _matches(entry: catalogue.Entry, args: argparse.Namespace) -> bool:
    checks = [(args.method, [entry.method, entry.trainer]),
              (args.protocol, list(entry.protocols)), (args.dataset, list(entry.datasets)),
              (args.backbone, [entry.backbone])]
    return all(want is None or any(want.lower() in str(v).lower() for v in have)
               for want, have in checks)


def _quiet(args: argparse.Namespace) -> bool:
    """gdown's progress bars on a terminal (or with -v), not in logs."""
    return not (getattr(args, "verbose", False) or sys.stderr.isatty())


def cmd_list(args: argparse.Namespace) -> int:
    entries = [e for e in catalogue.load().values() if _matches(e, args)]
    root = store.zoo_dir(args.zoo_dir)
    print(f"{'name':<22} {'method':<30} {'protocols':<14} {'backbone':<9} {'HM':>6}  "
          f"{'source':<12} here")
    for e in entries:
        hm = (e.published or {}).get("hm")
        hm = "-" if hm is None else f"{hm:.2f}"
        here = "yes" if store.downloaded(e, root) else "-"
        print(f"{e.name:<22} {e.method[:30]:<30} {','.join(e.protocols):<14} "
              f"{e.backbone:<9} {hm:>6}  {e.source_kind:<12} {here}")
    if args.verbose:
        for e in entries:
            print(f"\n{e.name}: {e.address}\n  config {e.config_file.relative_to(catalogue.REPO)}"
                  f", load epoch {e.load_epoch}, seeds {list(e.seeds)}, licence {e.licence}"
                  f"\n  datasets: {', '.join(e.datasets)}\n  from: {e.origin}"
                  + (f"\n  notes: {e.notes}" if e.notes else ""))
    if not args.method and not args.protocol and not args.dataset and not args.backbone:
        for method, where in catalogue.unreleased().items():
            print(f"(no release: {method}; {where})")
    return 0


def markdown_table(entries: list[catalogue.Entry]) -> str:
    """The catalogue as README.md shows it: one row per release, with its command."""
    lines = ["| release | method | protocols | backbone | published HM | one command |",
             "|---|---|---|---|---|---|"]
    for e in entries:
        hm = (e.published or {}).get("hm")
        dataset = e.datasets[0] if e.datasets else "D"
        command = f"`python -m scripts.zoo eval {e.name} --dataset {dataset}`"
        if e.evaluable() is not None:
            command = f"`python -m scripts.zoo download {e.name}`"
        elif e.layout is None:
            command += " with `--model-dir` (layout not documented)"
        source = " (by hand)" if e.source_kind == "manual" else ""
        lines.append(f"| [{e.name}]({e.address}){source} | {e.method} | "
                     f"{', '.join(e.protocols)} | {e.backbone} | "
                     f"{'not published' if hm is None else f'{hm:.2f}'} | {command} |")
    return "\n".join(lines)


def cmd_table(args: argparse.Namespace) -> int:
    print(markdown_table(list(catalogue.load().values())))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    root = store.zoo_dir(args.zoo_dir)
    for name in args.names:
        entry = catalogue.find(name)
        folder = store.fetch(entry, root, retries=args.retries, quiet=_quiet(args))
        print(f"{entry.name}: downloaded and checked in {folder}")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    entry = catalogue.find(args.name)
    root = store.zoo_dir(args.zoo_dir)
    if args.dataset is None and args.seed is None:
        print(store.entry_dir(entry, root))
        return 0
    layout = entry.layout or ""
    if args.seed is None and "{seed}" in layout:
        raise UserError(f"{entry.name}: give --seed (released: {list(entry.seeds)})")
    shots = args.shots if args.shots is not None else (
        entry.shots[0] if len(entry.shots) == 1 else None)
    if shots is None and "{shots}" in layout:
        raise UserError(f"{entry.name}: give --shots (released: {list(entry.shots)})")
    print(store.locate(entry, root, args.dataset, args.seed, shots))
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    entry = catalogue.find(args.name)
    gone = store.forget(entry, store.zoo_dir(args.zoo_dir))
    print(f"{entry.name}: forgot {len(gone)} recorded files")
    return 0


def cmd_eval(args: argparse.Namespace, opts: list[str]) -> int:
    entry = catalogue.find(args.name)
    root = store.zoo_dir(args.zoo_dir)
    data = args.root or os.environ.get("DATA", "")
    if not data:
        raise UserError("give --root (or set DATA) to the folder that holds the datasets")
    if args.config:
        entry = dataclasses.replace(entry, config=args.config)
    if args.load_epoch is not None:
        entry = dataclasses.replace(entry, load_epoch=args.load_epoch)
    runs = evaluate.plan(entry, args.dataset, Path(args.output), args.seeds, args.split,
                         args.shots)
    here = args.model_dir is not None or store.downloaded(entry, root)
    if not here and not args.dry_run:
        store.fetch(entry, root, retries=args.retries, quiet=_quiet(args))
    results = []
    for run in runs:
        if args.model_dir:
            model_dir = Path(args.model_dir)
        elif args.dry_run and not here:
            model_dir = store.entry_dir(entry, root) / str(entry.layout).format(
                dataset=run.dataset, seed=run.seed, shots=run.shots)
        else:
            model_dir = store.locate(entry, root, run.dataset, run.seed, run.shots)
        command = evaluate.train_py_command(entry, run, model_dir, data, opts)
        print("+ " + shlex.join(command), flush=True)
        if not args.dry_run:
            results.append((run, evaluate.execute(command, run, force=args.force)))
    if results:
        print("\n".join(evaluate.summary(entry, results)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo-dir", default=None,
                        help="where downloads lie (default: $ZOO_DIR, else ./released)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="the catalogue, filtered")
    for flag in ("method", "protocol", "dataset", "backbone"):
        p.add_argument(f"--{flag}", default=None, help=f"keep entries whose {flag} contains this")
    p.add_argument("-v", "--verbose", action="store_true", help="addresses, configs, sources")
    sub.add_parser("table", help="the catalogue as a markdown table (README.md's)")
    p = sub.add_parser("download", help="download, check and unpack entries")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--retries", type=int, default=3, help="resumed retries per file")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="gdown's progress also when stderr is not a terminal")
    p = sub.add_parser("path", help="where an entry (or one of its models) lies")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--dataset")
    p.add_argument("--seed", type=int)
    p.add_argument("--shots", type=int)
    p = sub.add_parser("forget", help="drop an entry's recorded sizes and sha256")
    p.add_argument("name", metavar="NAME")
    p = sub.add_parser("eval", help="the official evaluation, ours beside the published")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--dataset", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--split", nargs="+", default=None, help="base and/or new (base-to-novel)")
    p.add_argument("--shots", type=int, nargs="+", default=None, help="few-shot entries")
    p.add_argument("--root", default=None, help="datasets folder (default: $DATA)")
    p.add_argument("--output", default="output", help="output root (default: output)")
    p.add_argument("--model-dir", default=None, help="evaluate this folder instead")
    p.add_argument("--config", default=None,
                   help="another config of the same trainer (a release holding several)")
    p.add_argument("--load-epoch", type=int, default=None,
                   help="another epoch than the official evaluation script's")
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--force", action="store_true", help="run again when a result exists")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, opts = build_parser().parse_args(argv[:cut]), argv[cut + 1:]
    try:
        if args.command == "eval":
            return cmd_eval(args, opts)
        return {"list": cmd_list, "table": cmd_table, "download": cmd_download,
                "path": cmd_path, "forget": cmd_forget}[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
