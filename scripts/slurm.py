"""Sweeps on a Slurm cluster through submitit: job arrays, dependencies, requeue, status.

``sweep.py --launcher slurm`` submits every job that is neither finished nor queued:

- the jobs of one protocol stage that wait for nothing go as one job array;
- a job that waits for others (an evaluation for its training, an average over seeds) gets
  a Slurm dependency on them (``afterok``; ``aftercorr`` between aligned arrays, so the
  evaluations of 33 trainings are one array whose task i waits for training i) and
  ``--kill-on-invalid-dep=yes``: it never starts unless they succeeded;
- each job runs :class:`RunJob`, which submitit requeues on preemption or at the time limit
  (Slurm's signal ``--signal=USR2@90``): the command is stopped and started again in the same
  Slurm job, and train.py resumes from the last checkpoint in its run folder;
- with ``--nodes N`` (or several GPUs per node) the protocol scripts start train.py through
  ``scripts/torchrun.sh``: ``torchrun --nnodes N --nproc_per_node G --rdzv_backend c10d``.

``--launcher submitit-local`` takes the same path through submitit's local executor on this
machine (no dependencies there: a job is started once the jobs it waits for are done).
submitit is imported only by these launchers.
"""

from __future__ import annotations

if __name__ == "__main__":  # a module, not a command
    raise SystemExit("scripts/slurm.py is a module of the sweep runner; "
                     "run python scripts/sweep.py --help")

import contextlib
import fnmatch
import getpass
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from scripts.jobs import (
    DONE,
    FAILED,
    INTERRUPTED,
    PENDING,
    RUNNING,
    TODO,
    Job,
    Record,
    Records,
    Scheduler,
    Status,
    check_graph,
    job_status,
    process_start,
    safe_name,
    statuses,
)
from scripts.local_launcher import STOP_SIGNALS, Failure, Interrupted
from scripts.run_job import RunJob, require_submitit

SUBMITTING = ".submitting"  # the claim a sweep holds while it reads the records and submits

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
MAX_ARRAY = 1000  # tasks per array (Slurm's default MaxArraySize is 1001)
TIMEOUT_REQUEUES = 10  # requeues at the time limit before a job counts as failed


# ---------------------------------------------------------------- resources


def parse_minutes(value: str | int) -> int:
    """Slurm's time formats (``MM``, ``HH:MM:SS``, ``D-HH:MM``, ...) in minutes."""
    text = str(value).strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not match:
        raise SystemExit(f"error: time limit {value!r} is not a Slurm time (MINUTES, HH:MM:SS "
                         "or D-HH:MM:SS)")
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if days is None and second is None:
        return first  # minutes
    if third is None and days is None:
        hours, minutes, seconds = 0, first, second  # MM:SS
    else:
        hours, minutes, seconds = first, second or 0, third or 0
    return ((days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


@dataclass
class Resources:
    """What each job asks Slurm for; from ``--slurm-config FILE`` and flags (flags win)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    # GPUs of each job on each node (torchrun runs one process each); None: 1 where the
    # partition has GPUs (sinfo's GRES), else 0
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None  # CPUs of each job on each node
    mem: str | None = None  # memory per node, e.g. 64G
    time: str = "24:00:00"  # time limit of one run (a job hitting it is requeued)
    nodes: int = 1
    max_running: int = 256  # tasks of one array running at once
    sbatch: dict[str, str] = field(default_factory=dict)  # any other sbatch option
    setup: list[str] = field(default_factory=list)  # shell lines before the job (module load)
    stages: dict[str, dict] = field(default_factory=dict)  # stage pattern -> other values

    def for_stage(self, stage: str) -> Resources:
        """These resources with the overrides of every ``stages`` pattern matching ``stage``."""
        result = self
        for pattern, values in self.stages.items():
            if fnmatch.fnmatchcase(stage, pattern):
                allowed = [key for key in RESOURCE_KEYS if key != "stages"]
                result = replace(result, **_checked(values, f"stages: {pattern}", allowed))
        return result

    def executor_parameters(self, name: str) -> dict:
        """Parameters of submitit's SlurmExecutor."""
        params = {"job_name": name, "time": parse_minutes(self.time), "nodes": self.nodes,
                  "ntasks_per_node": 1, "array_parallelism": self.max_running,
                  "stderr_to_stdout": True, "additional_parameters": dict(self.sbatch)}
        if self.setup:
            params["setup"] = list(self.setup)
        for key in ("partition", "account", "qos", "cpus_per_task", "mem"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        return params

    def describe(self) -> str:
        """What these resources ask sbatch for, for an error message."""
        names = {"gpus_per_node": "gpus per node", "cpus_per_task": "cpus per task"}
        asked = [f"{names.get(key, key)} {getattr(self, key)}"
                 for key in ("partition", "account", "qos", "nodes", "gpus_per_node",
                             "cpus_per_task", "mem", "time") if getattr(self, key) is not None]
        asked += [f"--{key}={value}" for key, value in self.sbatch.items()]
        return ", ".join(asked)


def _sinfo(fields: str, partition: str | None) -> list[list[str]]:
    """``sinfo``'s rows of ``fields`` (``%``-codes joined by ``|``), for ``partition`` when
    given; none where sinfo cannot answer."""
    command = ["sinfo", "-h", "-o", fields] + (["-p", partition] if partition else [])
    try:
        text = subprocess.run(command, capture_output=True, text=True, check=True,
                              timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip().split("|") for line in text.splitlines() if line.strip()]


def partition_gpus(partition: str | None) -> int:
    """1 when the nodes of ``partition`` (None: the default partition) have GPUs in their
    GRES (``sinfo``), else 0."""
    return int(any("gpu" in row[0] for row in _sinfo("%G", partition)))


def _slurm_count(text: str) -> int | None:
    """A count as sinfo prints it ("4", "2K"); None for no limit ("infinite", "n/a")."""
    match = re.fullmatch(r"(\d+)([KM]?)", text.strip())
    if not match:
        return None
    return int(match.group(1)) * {"": 1, "K": 1024, "M": 1024 ** 2}[match.group(2)]


def _minutes_text(minutes: int) -> str:
    """Minutes as Slurm writes a time: ``H:MM:SS`` or ``D-HH:MM:SS``."""
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:00" if days else f"{hours}:{minutes:02d}:00"


@dataclass(frozen=True)
class Partition:
    """What sinfo says of a partition: its nodes, and the most nodes and minutes one job may
    ask for (None: no limit)."""

    name: str
    nodes: int
    max_nodes: int | None
    max_minutes: int | None

    def refusal(self, nodes: int, minutes: int | None = None) -> str | None:
        """Why a job asking for ``nodes`` nodes (and ``minutes``) would wait here for ever,
        with what to ask for instead; None when the partition can run it."""
        most = min(self.nodes, self.max_nodes if self.max_nodes is not None else self.nodes)
        if nodes > most:
            size = f"{self.nodes} node{'s' if self.nodes != 1 else ''}" + (
                f", at most {self.max_nodes} per job" if self.max_nodes is not None else "")
            return (f"{nodes} nodes, and partition {self.name} has {size} (Slurm would keep "
                    f"them pending for ever: PartitionNodeLimit); ask for --nodes {most} or "
                    "fewer, or another --partition")
        if minutes is not None and self.max_minutes is not None and minutes > self.max_minutes:
            limit = _minutes_text(self.max_minutes)
            return (f"{_minutes_text(minutes)} each, and partition {self.name} allows at most "
                    f"{limit} (Slurm would keep them pending for ever: PartitionTimeLimit); "
                    f"ask for --time {limit} or less, or another --partition")
        return None


def partition_info(partition: str | None) -> Partition | None:
    """sinfo's word on ``partition`` (None: the default partition); None where it cannot
    tell (no sinfo, no such partition, a format it does not know)."""
    rows = [row for row in _sinfo("%P|%D|%s|%l", partition) if len(row) == 4]
    rows = [row for row in rows if row[0].endswith("*")] if partition is None else \
        [row for row in rows if row[0].rstrip("*") == partition]
    if not rows or not all(row[1].isdigit() for row in rows):
        return None
    name, _nodes, size, limit = rows[0]
    try:
        minutes = parse_minutes(limit)
    except SystemExit:  # "infinite"
        minutes = None
    return Partition(name.rstrip("*"), sum(int(row[1]) for row in rows),
                     _slurm_count(size.rsplit("-", 1)[-1]), minutes)


def partition_refusal(resources: Resources, stage: str,
                      known: dict[str | None, Partition | None]) -> str | None:
    """Why the jobs of ``stage`` would pend for ever in their partition (one line), or None;
    ``known`` keeps what sinfo said of each partition."""
    resources = resources.for_stage(stage)
    if resources.partition not in known:
        known[resources.partition] = partition_info(resources.partition)
    partition = known[resources.partition]
    why = partition and partition.refusal(resources.nodes, parse_minutes(resources.time))
    return f"the jobs of {stage} ask for {why}" if why else None


class SubmissionRefused(Exception):
    """sbatch refused a submission (the message says what it asked for and sbatch's word)."""


RESOURCE_KEYS = [f.name for f in fields(Resources)]


def _checked(values: dict, where: str, allowed: list[str]) -> dict:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise SystemExit(f"error: {where}: unknown key(s) {unknown}; valid keys: "
                         f"{', '.join(allowed)}")
    return values


def load_resources(path: Path | None, flags: dict) -> Resources:
    """Resources from a YAML file (keys of :class:`Resources`) and flags (None: not given)."""
    values: dict = {}
    if path is not None:
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise SystemExit(f"error: cannot read the Slurm settings {path}: {err}") from err
        if not isinstance(values, dict):
            raise SystemExit(f"error: {path} must be a mapping of {', '.join(RESOURCE_KEYS)}")
        _checked(values, str(path), RESOURCE_KEYS)
    values.update({key: value for key, value in flags.items() if value is not None})
    resources = Resources(**values)
    parse_minutes(resources.time)
    return resources


# ---------------------------------------------------------------- arrays and dependencies


@dataclass
class Submission:
    """Jobs submitted together (one array) with one Slurm dependency ("" for none)."""

    stage: str
    jobs: list[Job]
    dependency: str = ""


def _tasks(ids: list[str]) -> dict[str, tuple[str, int]]:
    """Array task id -> (array id, index), for the ids of one array."""
    if len(ids) < 2:
        return {}
    return {task: (task.rsplit("_", 1)[0], int(task.rsplit("_", 1)[1])) for task in ids}


def aligned(stage: str, waiting: dict[tuple[str, ...], list[Job]],
            tasks: dict[str, tuple[str, int]]) -> list[Submission] | None:
    """Arrays whose task i waits for task i of an array (``aftercorr``), when every job waits
    for exactly one task of an array submitted by this sweep; None otherwise."""
    layers: dict[tuple[str, int], dict[int, Job]] = defaultdict(dict)
    for deps, jobs in waiting.items():
        if len(deps) != 1 or deps[0] not in tasks:
            return None
        array, index = tasks[deps[0]]
        for layer, job in enumerate(jobs):
            layers[(array, layer)][index] = job
    subs = []
    for (array, _layer), by_index in layers.items():
        if sorted(by_index) != list(range(len(by_index))):
            return None
        subs.append(Submission(stage, [by_index[i] for i in range(len(by_index))],
                               f"aftercorr:{array}"))
    return subs


def split(stage: str, jobs: list[Job], known: dict[str, str],
          tasks: dict[str, tuple[str, int]]) -> list[Submission]:
    """The submissions of one stage. ``known``: Slurm ids of the jobs not done yet (queued,
    running or just submitted); ``tasks``: the array tasks submitted by this sweep."""
    free: list[Job] = []
    waiting: dict[tuple[str, ...], list[Job]] = defaultdict(list)
    for job in jobs:
        deps = tuple(sorted({known[dep] for dep in job.after if dep in known}))
        (waiting[deps] if deps else free).append(job)
    subs = [Submission(stage, free)] if free else []
    by_set = [Submission(stage, group, "afterok:" + ":".join(deps))
              for deps, group in waiting.items()]
    corr = aligned(stage, waiting, tasks) if waiting else None
    return subs + (corr if corr is not None and len(corr) < len(by_set) else by_set)


# ---------------------------------------------------------------- submitters


@contextlib.contextmanager
def repository_importable() -> Iterator[None]:
    """Submit with this repository on PYTHONPATH: the job processes unpickle :class:`RunJob`
    (sbatch and submitit's local executor pass the environment of the submission on)."""
    before = os.environ.get("PYTHONPATH")
    paths = [p for p in (before or "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *paths])
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


class SlurmSubmitter:
    """Submits arrays with submitit's SlurmExecutor (``sbatch``)."""

    name = "slurm"
    dependencies = True

    def __init__(self, folder: Path, resources: Resources):
        if resources.gpus_per_node is None:
            resources = replace(resources, gpus_per_node=partition_gpus(resources.partition))
        self.folder, self.resources = folder, resources
        self.partitions: dict[str | None, Partition | None] = {}

    def check(self, stage: str) -> None:
        """Refuse, before anything is submitted, jobs of ``stage`` that their partition can
        never run (more nodes than it has, a longer time than it allows), where sinfo tells."""
        why = partition_refusal(self.resources, stage, self.partitions)
        if why:
            raise SystemExit(f"error: {why}. Nothing was submitted.")

    def submit(self, sub: Submission, calls: list[RunJob]) -> list[tuple[str, str]]:
        submitit = require_submitit()
        resources = self.resources.for_stage(sub.stage)
        before = set(self.folder.rglob("*")) if self.folder.exists() else set()
        executor = submitit.SlurmExecutor(self.folder / "%j", max_num_timeout=TIMEOUT_REQUEUES)
        params = resources.executor_parameters(sub.stage)
        if sub.dependency:
            params["dependency"] = sub.dependency
            params["additional_parameters"]["kill-on-invalid-dep"] = "yes"
        executor.update_parameters(**params)
        try:
            with repository_importable(), executor.batch():
                handles = [executor.submit(call) for call in calls]
        except (RuntimeError, OSError) as err:  # submitit's errors carry sbatch's message
            if self.folder.exists():  # the job files submitit wrote for the refused jobs
                for path in sorted(set(self.folder.rglob("*")) - before, reverse=True):
                    path.unlink() if path.is_file() else path.rmdir()
            raise SubmissionRefused(
                f"sbatch refused the jobs of {sub.stage}: {str(err).strip()}\nAsked for: "
                f"{resources.describe()} (flags, --slurm-config). Change what sbatch "
                "rejects and run the same command again.") from err
        return [(handle.job_id, str(handle.paths.stdout)) for handle in handles]


class DryRunSubmitter:
    """Numbers the submissions instead of making them (``--dry-run``); records nothing."""

    name = "dry-run"
    dependencies = True

    def __init__(self, resources: Resources):
        self.resources, self.count = resources, 0
        self.partitions: dict[str | None, Partition | None] = {}

    def check(self, stage: str) -> None:
        """What the real submission would refuse (:meth:`SlurmSubmitter.check`), as a note."""
        why = partition_refusal(self.resources, stage, self.partitions)
        if why:
            print(f"note: {why}; without --dry-run nothing is submitted.", flush=True)

    def submit(self, sub: Submission, calls: list[RunJob]) -> list[tuple[str, str]]:
        self.count += 1
        array = f"<{self.count}>"
        if len(calls) == 1:
            return [(array, "")]
        return [(f"{array}_{i}", "") for i in range(len(calls))]


class LocalSubmitter:
    """Starts jobs with submitit's LocalExecutor, each on one GPU slot (or none)."""

    name = "submitit-local"
    dependencies = False

    def __init__(self, folder: Path, resources: Resources, slots: list[str | None]):
        self.folder, self.resources, self.slots = folder, resources, slots
        self.handles: dict[str, object] = {}  # job name -> submitit job
        self.slot_of: dict[str, int] = {}

    def free_slots(self, running: set[str]) -> list[int]:
        busy = {self.slot_of[name] for name in running if name in self.slot_of}
        return [i for i in range(len(self.slots)) if i not in busy]

    def submit(self, sub: Submission, calls: list[RunJob], slot: int = 0) -> list[tuple[str, str]]:
        submitit = require_submitit()
        executor = submitit.LocalExecutor(self.folder / "%j", max_num_timeout=TIMEOUT_REQUEUES)
        gpu = self.slots[slot]
        gpus = {"visible_gpus": (int(gpu),), "gpus_per_node": 1} if gpu is not None else {}
        executor.update_parameters(timeout_min=parse_minutes(self.resources.time),
                                   stderr_to_stdout=True, **gpus)
        out = []
        for job, call in zip(sub.jobs, calls, strict=True):
            with repository_importable():
                handle = executor.submit(call)
            self.handles[job.name], self.slot_of[job.name] = handle, slot
            out.append((handle.job_id, str(handle.paths.stdout)))
        return out

    def alive(self) -> set[str]:
        """The jobs whose processes still run (asking also reaps the ended ones)."""
        return {name for name, handle in self.handles.items() if handle.state == "RUNNING"}

    def cancel_all(self, grace: float = 15.0) -> None:
        """Stop the running jobs (their commands stop with them) and wait for them."""
        running = [h for h in self.handles.values() if h.state == "RUNNING"]
        for handle in running:
            handle.cancel()
        deadline = time.monotonic() + grace
        while any(h.state == "RUNNING" for h in running) and time.monotonic() < deadline:
            time.sleep(0.1)


Submitter = SlurmSubmitter | DryRunSubmitter | LocalSubmitter


# ---------------------------------------------------------------- the cluster's word


PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                  "CONFIGURING", "SUSPENDED", "PREEMPTED"}


def _run(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True,
                              timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", "") or err
        raise SystemExit(f"error: {command[0]} failed ({str(detail).strip()}); the state of "
                         "Slurm jobs is read on a machine of the cluster") from err


class SlurmQueue:
    """Slurm's word on our records: ``squeue`` (queued and running jobs, one call) and, for a
    job that ended without a word of its own, ``sacct`` (why: TIMEOUT, OUT_OF_MEMORY, ...)."""

    def __init__(self) -> None:
        self._partitions: dict[str, Partition | None] = {}
        self.refresh()

    def refresh(self) -> None:
        """Forget what was read: the next question asks Slurm again."""
        self._queue: dict[str, tuple[str, str]] | None = None
        self._asked: dict[str, tuple[str, str]] = {}  # job id -> (nodes, partition)
        self._accounting: dict[str, str] | None = None

    def queue(self) -> dict[str, tuple[str, str]]:
        """Job id -> (state, reason) of our queued and running jobs."""
        if self._queue is None:
            text = _run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o",
                         "%i|%T|%r|%D|%P"])
            self._queue = {}
            for line in text.splitlines():
                parts = line.strip().split("|") + [""] * 4
                if parts[1]:
                    self._queue[parts[0]] = (parts[1], parts[2])
                    self._asked[parts[0]] = (parts[3], parts[4])
        return self._queue

    def _partition_serves(self, job_id: str) -> bool:
        """True when the partition of queued ``job_id`` has the nodes it asks for, by sinfo
        (its PartitionNodeLimit then means nodes down or drained, which come back)."""
        nodes, partition = self._asked.get(job_id, ("", ""))
        if not nodes.isdigit() or not partition:
            return False
        if partition not in self._partitions:
            self._partitions[partition] = partition_info(partition)
        info = self._partitions[partition]
        return info is not None and info.refusal(int(nodes)) is None

    def accounting(self, job_id: str) -> str:
        """sacct's state of ``job_id`` ("" when unknown), asked by job id (a job cancelled
        before it started has no start time for a time window to find), once per array."""
        array = job_id.split("_", 1)[0]
        if self._accounting is None:
            self._accounting = {}
        if array not in self._accounting:
            try:
                text = _run(["sacct", "-n", "-P", "-X", "-j", array, "-o", "JobID,State"])
            except SystemExit:  # accounting may be off on this cluster
                text = ""
            self._accounting[array] = text
        states = dict(line.strip().split("|", 1) for line in self._accounting[array].splitlines()
                      if "|" in line)
        return states.get(job_id, "").strip()

    def cancel(self, job_id: str) -> None:
        """scancel ``job_id`` (a queued job that is submitted again)."""
        _run(["scancel", job_id])

    def __call__(self, record: Record) -> Status | None:
        state, reason = self.queue().get(record.job_id, ("", ""))
        if state == "PENDING" and reason == "PartitionNodeLimit" \
                and self._partition_serves(record.job_id):
            return Status(PENDING, f"{state} ({reason}: nodes of its partition are down or "
                                   "drained)")
        if state:
            return queued_status(state, reason)
        if record.ended == "ok":
            return None
        why = self.accounting(record.job_id)
        if record.ended:  # the job's own word, with Slurm's where it has one (CANCELLED ...)
            return Status(FAILED, f"{why}, {record.ended}") if why and why != "FAILED" else None
        if why == "COMPLETED":
            return Status(DONE)
        if not why and time.time() - record.started < LISTING_DELAY:
            return Status(PENDING, "submitted; not listed by squeue yet")
        return Status(FAILED, why or "no longer in the queue, and ended without a word")


LISTING_DELAY = 60.0  # seconds a just-submitted job may be absent from squeue and sacct
NEVER = "DependencyNeverSatisfied"  # a job it waits for failed: Slurm drops it, never runs it


# squeue's reasons of a pending job that Slurm never resolves by itself: what the job asks
# for is beyond a limit of its partition, account or QOS (Slurm's job_reason_codes). Other
# reasons (Resources, Priority, Dependency, BeginTime, a hold, a limit on what runs at once:
# AssocGrp*, QOSGrp*, ...PerUser, ...PerAccount, AssocMaxJobsLimit) pass in time.
STUCK = {
    "PartitionNodeLimit": "more nodes than its partition has: ask for fewer --nodes or "
                          "another --partition",
    "PartitionTimeLimit": "more time than its partition allows: ask for less --time or "
                          "another --partition",
    "PartitionConfig": "resources its partition does not have: change them or the "
                       "--partition",
    "BadConstraints": "constraints no node satisfies: change --sbatch constraint=...",
    "InvalidAccount": "an account it may not use: change --account",
    "InvalidQOS": "a QOS it may not use: change --qos",
    "AccountNotAllowed": "an account its partition refuses: change --account or --partition",
    "QOSNotAllowed": "a QOS its partition refuses: change --qos or --partition",
    "MaxMemPerLimit": "more memory than a job may have per CPU or node: ask for less --mem",
    "JobHoldMaxRequeue": "nothing more: it was held after too many requeues (scontrol "
                         "release starts it again)",
}
STUCK_LIMIT = re.compile(r"(QOS|Assoc)Max\w+Per(Job|Node)(Limit)?|QOSMin\w+")
NEVER_STARTS = "pending for ever"  # how the detail of such a job starts


def queued_status(state: str, reason: str) -> Status:
    """PENDING or RUNNING with squeue's state and reason (BeginTime, Priority, ...); FAILED
    for a job that will never run: its dependency can never be satisfied, or it is pending
    for a reason Slurm never resolves by itself (:data:`STUCK`; the job is left queued, and
    the sweep run again cancels it and submits it anew)."""
    if reason == NEVER:
        return Status(FAILED, f"not run: a job it waits for failed or was cancelled ({NEVER})")
    if state == "PENDING" and (reason in STUCK or STUCK_LIMIT.fullmatch(reason)):
        asks = STUCK.get(reason, "more than its QOS or association allows one job: ask for "
                                 "less (--time, --nodes, --gpus-per-node, --cpus-per-task, "
                                 "--mem) or another --qos")
        return Status(FAILED, f"{NEVER_STARTS} ({reason}): it asks for {asks}; it stays "
                              "queued until the sweep runs again, which replaces it")
    detail = f"{state} ({reason})" if reason and reason != "None" else state
    return Status(PENDING if state in PENDING_STATES else RUNNING, detail)


# ---------------------------------------------------------------- the launcher


class SubmititLauncher:
    """Submits the jobs that are neither done nor queued, then waits if asked to."""

    def __init__(self, jobs: list[Job], log_dir: Path, submitter: Submitter,
                 scheduler: Scheduler, poll: float = 60.0):
        self.depth = check_graph(jobs)
        self.jobs, self.by_name = jobs, {job.name: job for job in jobs}
        self.log_dir = log_dir
        self.records = Records(log_dir)
        self.submitter, self.scheduler, self.poll = submitter, scheduler, poll
        self.attempted: set[str] = set()  # submitted (or given up) by this sweep
        self.failures: dict[str, Failure] = {}
        self.submissions: list[tuple[Submission, list[str]]] = []

    def call(self, job: Job) -> RunJob:
        """What the submitit job of ``job`` runs (over the stage's nodes and GPUs on Slurm)."""
        log_dir = self.log_dir.resolve()
        run = RunJob(job.name, job.command, dict(job.env), os.getcwd(),
                     str(log_dir / f"{safe_name(job.name)}.log"), str(log_dir),
                     str(job.run_dir.resolve()) if job.run_dir else None, job.end_signal)
        if isinstance(self.submitter, LocalSubmitter):
            return run
        resources = self.submitter.resources.for_stage(job.stage)
        return replace(run, nodes=resources.nodes, gpus_per_node=resources.gpus_per_node or 0)

    def _ready(self, status: dict[str, Status]) -> list[Job]:
        """The jobs to submit now, in dependency order: not done, not queued, not submitted by
        this sweep yet, and waiting only for jobs done, queued in Slurm or submitted with them
        (for submitit-local: only for jobs done). Gives up the jobs whose dependency failed."""
        ready: dict[str, Job] = {}
        for job in sorted(self.jobs, key=lambda job: self.depth[job.name]):
            # a job queued behind one submitted again (its old dependency failed or was
            # cancelled) is submitted again with it
            behind = status[job.name].state == PENDING and self._in_slurm(job.name, status) \
                and any(d in ready for d in job.after)
            if job.name in self.attempted \
                    or (status[job.name].state not in (TODO, FAILED, INTERRUPTED) and not behind):
                continue
            failed = [d for d in job.after if d in self.attempted and status[d].state == FAILED]
            if failed:
                self.attempted.add(job.name)
                self._fail(job, f"not run: {failed[0]} failed")
                continue
            waits = [d for d in job.after if status[d].state != DONE]
            if not self.submitter.dependencies and waits:
                continue
            outside = [d for d in waits if d not in ready and not self._in_slurm(d, status)]
            if outside and status[outside[0]].state in (PENDING, RUNNING):
                print(f"note: {job.name} waits for {outside[0]}, which runs outside Slurm; "
                      "it is submitted by a sweep started once that has ended", flush=True)
            if not outside:
                ready[job.name] = job
        return list(ready.values())

    def _in_slurm(self, name: str, status: dict[str, Status]) -> bool:
        """Queued or running in Slurm (a dependency can name it)."""
        if status[name].state not in (PENDING, RUNNING):
            return False
        record = self.records.get(name)
        return record is not None and record.launcher == "slurm"

    def _fail(self, job: Job, reason: str) -> None:
        self.failures[job.name] = Failure.of(job, reason, self.log_dir)

    def submit(self, status: dict[str, Status], limit: int | None = None, **where: int) -> int:
        """Submit what is ready, stage by stage in dependency order; returns how many."""
        ready = self._ready(status)[:limit]
        known = {name: self.records.get(name).job_id for name in status
                 if self._in_slurm(name, status)}
        groups: dict[tuple[int, str], list[Job]] = defaultdict(list)
        for job in ready:
            groups[(self.depth[job.name], job.stage)].append(job)
        for _depth, stage in sorted(groups):
            getattr(self.submitter, "check", lambda _stage: None)(stage)
        tasks: dict[str, tuple[str, int]] = {}
        for (_depth, stage), jobs in sorted(groups.items()):
            for sub in split(stage, jobs, known, tasks):
                for start in range(0, len(sub.jobs), MAX_ARRAY):
                    chunk = replace(sub, jobs=sub.jobs[start:start + MAX_ARRAY])
                    ids = self._submit(chunk, **where)
                    known.update(zip([job.name for job in chunk.jobs], ids, strict=True))
                    tasks.update(_tasks(ids))
        return len(ready)

    def _submit(self, sub: Submission, **where: int) -> list[str]:
        record = self.submitter.name != "dry-run"
        for job in sub.jobs:
            if record:
                self._drop_queued(job)
                self.records.starting(job.name)
        calls = [self.call(job) for job in sub.jobs]
        try:
            submitted = self.submitter.submit(sub, calls, **where)
        except SubmissionRefused as err:
            before = sum(len(ids) for _sub, ids in self.submissions)
            raise SystemExit(f"error: {err}\n" + (
                f"{before} job(s) submitted before it are recorded (see --status); the same "
                "command submits the rest." if before else "Nothing was submitted.")) from err
        for job, call, (job_id, scheduler_log) in zip(sub.jobs, calls, submitted, strict=True):
            self.attempted.add(job.name)
            if not record:
                continue
            start = process_start(int(job_id)) if self.submitter.name != "slurm" else ""
            self.records.put(job.name, Record(self.submitter.name, job_id, call.log,
                                              process_start=start,
                                              scheduler_log=scheduler_log))
        ids = [job_id for job_id, _log in submitted]
        self.submissions.append((sub, ids))
        return ids

    def _drop_queued(self, job: Job) -> None:
        """scancel the queued Slurm job of ``job`` before it is submitted again."""
        old = self.records.get(job.name)
        cancel = getattr(self.scheduler, "cancel", None)
        if old is not None and old.launcher == "slurm" and cancel is not None \
                and old.job_id in self.scheduler.queue():
            cancel(old.job_id)

    def run(self, wait: bool) -> list[Failure]:
        """Submit; with ``wait`` (always for submitit-local) stay until every job ended."""
        if not self.submitter.dependencies:
            return self._run_local()
        with self._submitting():
            getattr(self.scheduler, "refresh", lambda: None)()  # what another sweep submitted
            self.submit(statuses(self.jobs, self.records, self.scheduler))
        self.describe()
        getattr(self.scheduler, "refresh", lambda: None)()  # ask again: what was just submitted
        if wait:
            self._wait_all()
        return list(self.failures.values())

    @contextlib.contextmanager
    def _submitting(self) -> Iterator[None]:
        """One sweep at a time reads the records and submits (a :class:`scripts.jobs.Claim` on
        ``LOG_DIR/state/.submitting.claim``): a second sweep over the same jobs waits here, then
        finds them queued instead of submitting them again."""
        if self.submitter.name == "dry-run":
            yield
            return
        claim = self.records.claim(SUBMITTING)
        if not claim.acquire():
            print(f"{self.records.claimed(SUBMITTING)} is submitting these jobs; waiting for it "
                  "to finish", flush=True)
            while not claim.acquire():
                time.sleep(self.poll)
        try:
            yield
        finally:
            claim.release()

    def _run_local(self) -> list[Failure]:
        """submitit's local executor: start jobs as their dependencies end, one per slot."""
        old = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
        try:
            while True:
                alive = self.submitter.alive()  # a job may be done before its process ended
                status = statuses(self.jobs, self.records, self.scheduler)
                free = self.submitter.free_slots(alive)
                if free and self.submit(status, limit=1, slot=free[0]):
                    continue
                if not alive:
                    break
                time.sleep(self.poll)
            self._collect(status)
        finally:
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            self.submitter.cancel_all()
            for sig, previous in old.items():
                signal.signal(sig, previous)
        return list(self.failures.values())

    def _never_run(self, status: dict[str, Status]) -> dict[str, Status]:
        """``status`` with the pending jobs that wait for a job pending for ever (and so on
        down the chain) marked as never starting either."""
        for job in sorted(self.jobs, key=lambda job: self.depth[job.name]):
            stuck = [d for d in job.after if status[d].state == FAILED
                     and status[d].detail.startswith(NEVER_STARTS)]
            if status[job.name].state == PENDING and stuck:
                status[job.name] = Status(FAILED, f"{NEVER_STARTS}: it waits for {stuck[0]}, "
                                                  "which never starts; it stays queued until "
                                                  "the sweep runs again")
        return status

    def _wait_all(self) -> None:
        while True:
            status = self._never_run(statuses(self.jobs, self.records, self.scheduler))
            if not any(status[n].state in (PENDING, RUNNING) for n in self.attempted):
                break
            time.sleep(self.poll)
            getattr(self.scheduler, "refresh", lambda: None)()
        self._collect(status)

    def _collect(self, status: dict[str, Status]) -> None:
        for name in self.attempted:
            if status[name].state != DONE and name not in self.failures:
                self._fail(self.by_name[name], status[name].detail or status[name].state)

    def describe(self) -> None:
        """What was submitted: one line per array."""
        if not self.submissions:
            print("Nothing to submit: every job is finished, queued or running "
                  "(see --status).", flush=True)
            return
        for sub, ids in self.submissions:
            array = ids[0].rsplit("_", 1)[0] if len(ids) > 1 else ids[0]
            what = f"array {array} of {len(ids)} jobs" if len(ids) > 1 else f"job {array}"
            after = f", {sub.dependency}" if sub.dependency else ""
            print(f"{what}: {sub.stage}{after}", flush=True)
        total = sum(len(ids) for _sub, ids in self.submissions)
        print(f"{total} job(s) in {len(self.submissions)} submission(s).", flush=True)


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


# ---------------------------------------------------------------- --status


def print_status(jobs: list[Job], log_dir: Path,
                 scheduler: Callable[[Record], Status | None]) -> None:
    """One line per job: state, Slurm id or process id, name, log; then the counts."""
    records = Records(log_dir)
    counts: dict[str, int] = defaultdict(int)
    rows = []
    for job in jobs:
        record = records.get(job.name)
        status = job_status(job, record, scheduler, records.claimed(job.name))
        counts[status.state] += 1
        log = record.log if record else ""
        rows.append((status.state, record.job_id if record else "-", job.name, log,
                     status.detail if status.state != DONE else "",
                     record.scheduler_log if record and status.state == FAILED else ""))
    width = max([len(r[1]) for r in rows] + [2])
    print(f"{'STATE':8} {'ID':{width}} JOB / LOG")
    for state, job_id, name, log, detail, scheduler_log in rows:
        print(f"{state:8} {job_id:{width}} {name}" + (f"  ({detail})" if detail else ""))
        for path in filter(None, (log, scheduler_log)):
            print(f"{'':8} {'':{width}}   {path}")
    order = (DONE, RUNNING, PENDING, FAILED, INTERRUPTED, TODO)
    print(f"{len(jobs)} jobs: " + ", ".join(f"{counts[s]} {s}" for s in order if counts[s]),
          flush=True)
    sys.stdout.flush()
