"""Errors a user can act on, and the exit status train.py gives each kind.

An error in what the user handed over (a flag, a config value, a missing or corrupt file) is
reported by train.py as one message without a traceback (``--debug`` or ``ENGINE_DEBUG=1``
shows it) and written to the run's log.txt. The engine raises :class:`UserError` subclasses;
they also derive from the built-in type that code catching errors expects (``ValueError``,
``KeyError``), so ``except ValueError`` keeps working.

Exit status of train.py: 0 done; 2 refused because of its input (:data:`EXIT_USER_ERROR`,
as argparse exits on a bad flag); 75 the output folder is held by another live run
(:data:`EXIT_LOCKED`, ``EX_TEMPFAIL``: try again later); 1 a crash, with its traceback.
"""

from __future__ import annotations

import pickle
import zipfile

import yaml

__all__ = ["UserError", "ConfigError", "ConfigKeyError", "CheckpointError", "RunLocked",
           "EXIT_USER_ERROR", "EXIT_LOCKED", "exit_status", "is_own_error"]

EXIT_USER_ERROR = 2
EXIT_LOCKED = 75


class UserError(Exception):
    """Something the user gave is wrong; the message says what and how to fix it."""


class ConfigError(UserError, ValueError):
    """A flag or config value that cannot work (the message names the key)."""


class ConfigKeyError(UserError, KeyError):
    """An unknown name: a config key, a trainer, a dataset."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that is damaged, malformed or made for another model (the message
    names the file)."""


class RunLocked(UserError):
    """Another live run holds the output folder."""


# Built-in errors that, at the command line, almost always come from the user's input (a file
# that is missing or unreadable, a value of the wrong kind); their traceback still goes to
# log.txt, since the engine did not word them itself.
_INPUT_ERRORS = (OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
                 yaml.YAMLError)


def exit_status(exc: BaseException) -> int | None:
    """The exit status for ``exc``, or None for a crash (to be shown with its traceback)."""
    if isinstance(exc, RunLocked):
        return EXIT_LOCKED
    if isinstance(exc, (UserError, *_INPUT_ERRORS)):
        return EXIT_USER_ERROR
    return None


def is_own_error(exc: BaseException) -> bool:
    """True for the errors the engine words itself (no traceback needed anywhere)."""
    return isinstance(exc, UserError)
