"""What train.py says when it is interrupted (Ctrl-C): one line, not a traceback."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from engine.checkpoint import POINTER_FILE, latest_checkpoint_path
from engine.errors import CheckpointError

__all__ = ["EXIT_INTERRUPTED", "interrupted_message"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C


def _output_dir(output_dir: str, opts: Sequence[str] | None) -> str:
    """``--output-dir``, or OUTPUT_DIR among the command line's KEY VALUE pairs."""
    pairs = list(opts or [])
    for key, value in zip(pairs[0::2], pairs[1::2], strict=False):
        if key == "OUTPUT_DIR":
            output_dir = value
    return output_dir


def _latest_checkpoints(output_dir: str) -> list[str]:
    """The checkpoint each model folder's pointer names (a few at most)."""
    if not output_dir or not os.path.isdir(output_dir):
        return []
    found = []
    for entry in sorted(os.scandir(output_dir), key=lambda e: e.name)[:64]:
        if entry.is_dir(follow_symlinks=False) and os.path.isfile(
                os.path.join(entry.path, POINTER_FILE)):
            try:
                path = latest_checkpoint_path(entry.path)
            except (CheckpointError, OSError, UnicodeDecodeError):
                continue
            if path and os.path.isfile(path):
                found.append(path)
    return found


def interrupted_message(script: str, argv: Sequence[str], output_dir: str,
                        opts: Sequence[str] | None) -> str:
    """One line: the run was interrupted, which checkpoint is intact, the command that
    resumes it (the same command: a run resumes from the last checkpoint of its folder)."""
    command = shlex.join(["python", script, *argv])
    folder = _output_dir(output_dir, opts)
    latest = _latest_checkpoints(folder)
    if latest:
        saved = (f"its last checkpoint, {', '.join(latest[:3])}, is intact (checkpoints are "
                 "written whole or not at all); resume from it with the same command")
    elif folder:
        saved = f"no checkpoint was saved in {folder} yet; the same command starts it again"
    else:
        saved = "the same command starts it again"
    return f"train.py: interrupted; {saved}: {command}"
