"""The jobs of a sweep, what each launcher recorded about them, and where each one stands.

A :class:`Job` is one command (a protocol script, or any command of a ``--jobs`` file) with
the run folder whose log tells when it has finished, the jobs it waits for and its stage (jobs
of one stage go to Slurm as one job array). When a launcher starts a job it writes a
:class:`Record` (``LOG_DIR/state/<job>.json``: launcher, process or Slurm id, log path), so a
later sweep, or ``--status``, can tell a job that is still running from one that died.

:func:`job_status` is the one place that decides whether a job is done, running, pending,
failed or still to do; every launcher and ``--status`` ask it.
"""

from __future__ import annotations

if __name__ == "__main__":  # a module, not a command
    raise SystemExit("scripts/jobs.py is a module of the sweep runner; "
                     "run python scripts/sweep.py --help")

import errno
import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scripts import init_source
from scripts.logparse import Signal, is_finished

# What job_status says about a job.
TODO, PENDING, RUNNING, DONE, FAILED = "todo", "pending", "running", "done", "failed"
INTERRUPTED = "interrupted"  # stopped with its sweep (Ctrl-C, SIGTERM, ...): rerun to resume
STOPPED_WITH_SWEEP = "stopped with the sweep"  # how the local launcher records such a stop


@dataclass
class Job:
    """One command; finished when a log of ``run_dir`` holds a result after ``end_signal``."""

    name: str
    command: list[str] | str  # argv, or a shell command line
    run_dir: Path | None = None
    end_signal: Signal = None
    after: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    stage: str = "jobs"  # jobs of one stage (and dependency depth) form one Slurm array

    def finished(self) -> bool:
        return self.run_dir is not None and is_finished(self.run_dir, self.end_signal) \
            and self.same_start()

    def same_start(self) -> bool:
        """False when the run folder holds a run whose prompts started elsewhere than this
        job's MODEL_DIR (scripts/init_source.py): never this job's result."""
        return "MODEL_DIR" not in self.env or init_source.matches(self.run_dir,
                                                                   self.env["MODEL_DIR"])


def check_graph(jobs: list[Job]) -> dict[str, int]:
    """Each job's depth (0: waits for nothing; else 1 + the deepest job it waits for).

    Exits with a message on duplicate names, unknown dependencies or a cycle."""
    by_name: dict[str, Job] = {}
    for job in jobs:
        if job.name in by_name:
            raise SystemExit(f"error: duplicate job name {job.name!r}")
        by_name[job.name] = job
    for job in jobs:
        missing = [dep for dep in job.after if dep not in by_name]
        if missing:
            raise SystemExit(f"error: job {job.name} waits for unknown jobs {missing}")
    depth: dict[str, int] = {}
    visiting: list[str] = []

    def visit(name: str) -> int:
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name):] + [name])
            raise SystemExit(f"error: the jobs wait for each other in a cycle: {cycle}")
        if name not in depth:
            visiting.append(name)
            depth[name] = 1 + max((visit(dep) for dep in by_name[name].after), default=-1)
            visiting.pop()
        return depth[name]

    for job in jobs:
        visit(job.name)
    return depth


def safe_name(name: str) -> str:
    """A job name as a file name."""
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


# ---------------------------------------------------------------- records


@dataclass
class Record:
    """How a job was last started."""

    launcher: str  # local, submitit-local or slurm
    job_id: str  # process id (local launchers) or Slurm job id (array task: 123_4)
    log: str  # the command's output
    host: str = field(default_factory=socket.gethostname)
    started: float = field(default_factory=time.time)
    process_start: str = ""  # local launchers: when process job_id started (pid reuse)
    scheduler_log: str = ""  # submitit's log of the job (its requeues, its errors)
    ended: str = ""  # filled from the .ended file: "ok", "exit status 3", ...


class Records:
    """Per job, under ``LOG_DIR/state``: ``<job>.json`` written by the launcher when it starts
    the job, ``<job>.ended`` written by whatever ran the command when it ended (why)."""

    def __init__(self, log_dir: Path):
        self.folder = Path(log_dir) / "state"

    def path(self, name: str, suffix: str = ".json") -> Path:
        return self.folder / f"{safe_name(name)}{suffix}"

    def get(self, name: str) -> Record | None:
        try:
            record = Record(**json.loads(self.path(name).read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as err:
            raise SystemExit(f"error: {self.path(name)} is not a job record ({err}); delete it "
                             "to let the sweep treat the job as never started") from err
        ended = self.path(name, ".ended")
        record.ended = ended.read_text().strip() if ended.exists() else ""
        return record

    def starting(self, name: str) -> None:
        """Forget how the previous start ended (called before the job is started again)."""
        self.path(name, ".ended").unlink(missing_ok=True)

    def put(self, name: str, record: Record) -> None:
        _write_atomic(self.path(name), json.dumps(asdict(record), indent=1))

    def end(self, name: str, why: str) -> None:
        _write_atomic(self.path(name, ".ended"), why + "\n")

    def claim(self, name: str) -> Claim:
        return Claim(self.path(name, ".claim"))

    def claimed(self, name: str) -> str | None:
        """``sweep pid P on host H`` while a sweep holds the job's :class:`Claim`."""
        holder = held_by(self.path(name, ".claim"))
        return None if holder is None else f"the sweep of {holder}"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


# ---------------------------------------------------------------- where a job stands


@dataclass(frozen=True)
class Status:
    state: str  # TODO, PENDING, RUNNING, DONE, FAILED or INTERRUPTED
    detail: str = ""  # the scheduler's word, or why the job failed


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc; "" where unknown)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_status(record: Record) -> Status | None:
    """RUNNING while the process of a record made on this machine lives; None once it ended."""
    if record.host != socket.gethostname():
        return None if record.ended else Status(
            FAILED, f"started on {record.host}; its process cannot be checked from here")
    try:
        os.kill(int(record.job_id), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    if record.process_start and process_start(int(record.job_id)) != record.process_start:
        return None  # the id now belongs to another process
    return Status(RUNNING, f"pid {record.job_id}")


# What the cluster says about a record of one of its jobs: PENDING or RUNNING while queued or
# running; when it ended without a word from the job, DONE (without error) or FAILED (why);
# else None.
Scheduler = Callable[[Record], "Status | None"]


def job_status(job: Job, record: Record | None, scheduler: Scheduler,
               claimed: str | None = None) -> Status:
    """Where ``job`` stands: its log on disk first, then what ran it says.

    A result in the run folder means DONE, whatever launched it. Otherwise the record of the
    last start (None: never started, TODO) is checked with the launcher that made it: a live
    process or a Slurm job still queued or running is RUNNING / PENDING (never start a second
    copy); a job that ended is FAILED unless it ended without error and has no run folder to
    check.
    """
    if job.finished():
        return Status(DONE)
    holder = lock_holder(job.run_dir) if job.run_dir is not None else None
    if holder is not None:  # a live train.py holds the folder, whoever started it
        return Status(RUNNING, f"locked by {holder}")
    live = None
    if record is not None:
        live = scheduler(record) if record.launcher == "slurm" else process_status(record)
        if live is not None and live.state != DONE:
            return live
    if claimed is not None:  # a sweep holds the job's claim: it is starting or ending it
        return Status(RUNNING, f"claimed by {claimed}")
    if record is None:
        return Status(TODO)
    if live is None and record.ended == STOPPED_WITH_SWEEP:
        return Status(INTERRUPTED, "stopped with the sweep; the same command resumes it")
    if live is None and record.ended != "ok":
        return Status(FAILED, record.ended or "ended without saying why (killed?)")
    if job.run_dir is None:  # ended without error, and there is no log to check
        return Status(DONE)
    return Status(FAILED, "exited 0 but its log holds no final accuracy")


RUN_LOCK = "run.lock"  # train.py's output-folder lock (engine/lock.py)


def lock_holder(run_dir: Path) -> str | None:
    """Who holds train.py's lock on ``run_dir`` (``pid P on host H``), or None when nobody
    does. A held ``flock`` is the test (the kernel drops it when its process dies, ``kill -9``
    included), so a stale lock file counts as free. Read here without importing the engine
    (and torch): the sweep and its job processes stay light."""
    return held_by(Path(run_dir) / RUN_LOCK)


def held_by(path: Path) -> str | None:
    """Who holds the ``flock`` of the lock file ``path`` (its JSON record's pid and host), or
    None when nobody does."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return None  # no locking on this filesystem: train.py's record decides there
            try:
                record = json.loads(path.read_text(encoding="utf-8", errors="replace") or "{}")
            except (OSError, json.JSONDecodeError):
                record = {}
            if not isinstance(record, dict):
                record = {}
            return f"pid {record.get('pid', '?')} on host {record.get('host', '?')}"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def statuses(jobs: Iterable[Job], records: Records, scheduler: Scheduler) -> dict[str, Status]:
    return {job.name: job_status(job, records.get(job.name), scheduler, records.claimed(job.name))
            for job in jobs}


class Claim:
    """A sweep's hold on one job while it runs it: an exclusive ``flock`` on
    ``LOG_DIR/state/<job>.claim`` (the kind of lock train.py holds on its run folder), taken
    without waiting before the job starts and kept until it ends. Two sweeps over the same
    jobs cannot both take it, so a job never starts twice; the kernel drops it when the sweep
    dies (``kill -9`` included), so a dead sweep's claim is free."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the claim; False when another process holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.time()}).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with the descriptor; the file stays (a claim
            self._fd = None     # file removed while another sweep opens it would split it)
