"""Process helpers for the sweep tests (Linux /proc)."""

from __future__ import annotations

import time
from pathlib import Path


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, ended but not yet collected, does not)."""
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return False


def gone(pid: int, seconds: float = 1800) -> bool:
    """Wait up to ``seconds`` for process ``pid`` to end; True once it has."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
