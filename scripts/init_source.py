"""Where a run's initial prompts come from: part of its folder's name and recorded in it.

An MVLPT target (scripts/protocols/transfer.sh, scripts/mvlpt/main_single_*_cut.sh) starts
from the source prompts averaged over seeds (``--model-dir``), from another model folder
(MODEL_DIR), or from untrained prompts (MODEL_DIR=none). Those are different runs: each gets
its own folder (:func:`folder_suffix`: none for the protocol's own source, the official
layout; ``_scratch``; ``_from-<hash of the folder>``), and the folder records its source in
``init_source.txt`` (:func:`claim`). A folder whose record (or, for folders older than the
record, whose log's ``model_dir:`` line) names another source is never a finished run of this
one: :func:`claim` refuses it, and a sweep does not count it as done (:func:`matches`).

    python scripts/init_source.py suffix MODEL_DIR DEFAULT   # prints the folder suffix
    python scripts/init_source.py claim RUN_DIR MODEL_DIR    # check, then record (exit 2: refused)
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

RECORD = "init_source.txt"
SCRATCH = "none"
_LOGGED = re.compile(r"^model_dir: ?(.*)$")  # train.py's print_args line
_SOME_FOLDER = "a model folder"  # an old log names a folder we cannot resolve any more


def canonical(model_dir: str | None) -> str:
    """``none`` for no initial prompts, else the absolute real path of the model folder."""
    if not model_dir or model_dir == SCRATCH:
        return SCRATCH
    return os.path.realpath(model_dir)


def folder_suffix(model_dir: str | None, default: str) -> str:
    """The run-folder suffix of a source: ``""`` for ``default`` (the protocol's own source:
    the official layout), ``_scratch`` without a source, ``_from-<8 hex>`` for another."""
    source = canonical(model_dir)
    if source == SCRATCH:
        return "_scratch"
    if source == canonical(default):
        return ""
    return "_from-" + hashlib.sha256(source.encode()).hexdigest()[:8]


def recorded(run_dir: str | Path) -> str | None:
    """The source recorded in ``run_dir``: its ``init_source.txt``; for an older folder, the
    last ``model_dir:`` its logs print (``none`` when empty); None when it says nothing."""
    run_dir = Path(run_dir)
    record = run_dir / RECORD
    if record.is_file():
        with open(record, encoding="utf-8", errors="replace") as f:
            return f.read(4096).strip() or None
    logged = None
    for log in sorted(run_dir.glob("log.txt*")):
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                match = _LOGGED.match(line.rstrip("\n"))
                if match:
                    logged = SCRATCH if not match.group(1).strip() else _SOME_FOLDER
    return logged


def matches(run_dir: str | Path, model_dir: str | None) -> bool:
    """True unless ``run_dir`` holds a run that started from another source."""
    found = recorded(run_dir)
    if found is None:
        return True
    wanted = canonical(model_dir)
    if found == _SOME_FOLDER:
        return wanted != SCRATCH
    return found == wanted


def claim(run_dir: str | Path, model_dir: str | None) -> None:
    """Record ``model_dir`` as the source of ``run_dir``'s run; ``ValueError`` (one line)
    when the folder holds a run from another source."""
    if not matches(run_dir, model_dir):
        raise ValueError(
            f"{run_dir} holds a run that started from {_describe(recorded(run_dir))}, but this "
            f"run starts from {_describe(canonical(model_dir))}: its result is not this run's. "
            "Move that folder away, or give this run another OUTPUT")
    os.makedirs(run_dir, exist_ok=True)
    record = Path(run_dir) / RECORD
    text = canonical(model_dir) + "\n"
    if not record.is_file() or record.read_text(errors="replace") != text:
        tmp = record.with_name(f".{RECORD}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, record)


def _describe(source: str | None) -> str:
    if source == SCRATCH:
        return "untrained prompts (MODEL_DIR=none)"
    return f"the prompts of {source}" if source != _SOME_FOLDER else "another model folder"


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "suffix":
        print(folder_suffix(argv[1], argv[2]))
        return 0
    if len(argv) == 3 and argv[0] == "claim":
        try:
            claim(argv[1], argv[2])
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    usage = "usage: init_source.py suffix MODEL_DIR DEFAULT | claim RUN_DIR MODEL_DIR"
    if argv in (["--help"], ["-h"]):
        print(usage)
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
