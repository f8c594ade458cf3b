"""One run per output folder: ``OUTPUT_DIR/run.lock``.

A run holds an exclusive ``flock`` on ``run.lock`` for its whole life; the file says who holds
it, as one JSON line ``{"host": ..., "pid": ..., "started": ..., "command": ...}``. A second
run in the same folder gets :class:`~engine.errors.RunLocked` naming that holder (train.py
exits with status 75). The kernel drops the lock when its process ends, however it ends
(``kill -9`` included), so a lock file whose lock nobody holds is stale: the next run takes
it over and says so. On NFS the lock is the server's, so this holds across machines.

Where the filesystem cannot lock (``flock`` unsupported), the holder is judged by its record:
a process of this machine that no longer exists is stale; a record from another machine is
respected (delete the file when that run is gone).
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import socket
import sys

from engine.errors import RunLocked

try:
    import fcntl
except ImportError:  # not on POSIX: the record alone decides
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunLock", "describe_holder"]

logger = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def describe_holder(record: dict) -> str:
    """``pid 123 on host node7 (since 2025-01-01 10:00:00: train.py ...)``."""
    text = f"pid {record.get('pid', '?')} on host {record.get('host', '?')}"
    details = [str(record[key]) for key in ("started", "command") if record.get(key)]
    return f"{text} ({': '.join(details)})" if details else text


def _read_record(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        record = json.loads(raw.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError:
        return {"host": "?", "pid": "?", "started": "unreadable lock record"} if raw else {}
    return record if isinstance(record, dict) else {}


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """An exclusive lock on ``directory`` (created if needed). ``acquire()`` raises
    :class:`~engine.errors.RunLocked` when a live run holds it; ``taken_over`` then holds the
    record of a dead run whose lock was stale (None otherwise). Usable as a context manager."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, LOCK_FILE)
        self.taken_over: dict | None = None
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def record(self) -> dict:
        started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else ""
        return {"host": socket.gethostname(), "pid": os.getpid(), "started": started,
                "command": command[:500]}

    def acquire(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                locked = self._lock(fd)
            except BaseException:
                os.close(fd)
                raise
            if locked is None or self._still_at_path(fd):
                break
            os.close(fd)  # a releasing run removed the file under us: lock the new one
        previous = _read_record(fd)
        if previous and locked:  # a record without its kernel lock: its run died
            self.taken_over = previous
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(self.record()) + "\n").encode())
        os.fsync(fd)
        self._fd = fd

    def _lock(self, fd: int) -> bool | None:
        """True when the kernel lock is ours; None when the filesystem cannot lock and the
        record says nobody alive holds the file. Raises RunLocked otherwise."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                self._refuse(_read_record(fd))
            except OSError as exc:
                if exc.errno not in _NO_LOCKING:
                    raise
        record = _read_record(fd)
        same_host = record.get("host") == socket.gethostname()
        if record and record.get("pid") != os.getpid() and (
                not same_host or _pid_alive(record.get("pid"))):
            self._refuse(record, unlockable=True)
        if record and record.get("pid") != os.getpid():
            self.taken_over = record
        return None

    def _refuse(self, record: dict, unlockable: bool = False) -> None:
        hint = (f" This filesystem cannot lock files; if that run is gone, delete {self.path}."
                if unlockable else " Wait for it to finish, stop it, or use another "
                "--output-dir.")
        if not unlockable and record.get("host") == socket.gethostname() and not _pid_alive(
                record.get("pid")):
            hint = (" That process has ended, but processes it started (data-loader workers) "
                    "still hold the lock; stop them or wait for them to exit.")
        raise RunLocked(f"The output folder {self.directory} is in use by another run: "
                        f"{describe_holder(record)}.{hint}")

    def _still_at_path(self, fd: int) -> bool:
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in that order: a run waiting on the old
        file sees it gone and locks a new one)."""
        if self._fd is None:
            return
        try:
            if self._still_at_path(self._fd):
                os.remove(self.path)
        finally:
            os.close(self._fd)
            self._fd = None
