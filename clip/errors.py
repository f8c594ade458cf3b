"""The error of a backbone whose weights cannot be had or read."""

from __future__ import annotations

__all__ = ["WeightsError"]


class WeightsError(RuntimeError, ValueError):
    """A backbone name that names nothing, weights that cannot be downloaded (offline, a
    broken link), a file that cannot be read as weights, or an archive refused as unsafe. The
    message names the file or the backbone and says what to do. A ``ValueError`` too: what
    the user gave is at fault, so train.py reports it in one line (exit status 2)."""
