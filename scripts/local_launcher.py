"""The default launcher: the jobs of a sweep on this machine, one per GPU slot.

Each job runs in its own process group with its own ``CUDA_VISIBLE_DEVICES``; its output goes
to ``LOG_DIR/<job>.log`` and a record of its process to ``LOG_DIR/state/``. The jobs are
stopped with the sweep: on SIGINT, SIGTERM or SIGHUP, when its output pipe breaks, and when the
sweep itself fails. A job that another sweep (or Slurm) is running is waited for, never started
a second time.
"""

from __future__ import annotations

if __name__ == "__main__":  # a module, not a command
    raise SystemExit("scripts/local_launcher.py is a module of the sweep runner; "
                     "run python scripts/sweep.py --help")

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.jobs import (
    DONE,
    PENDING,
    RUNNING,
    STOPPED_WITH_SWEEP,
    Claim,
    Job,
    Record,
    Records,
    Scheduler,
    Status,
    check_graph,
    job_status,
    process_start,
    safe_name,
)
from scripts.run_job import command_environment

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """A stop signal reached the sweep (its number is the argument)."""


@dataclass
class Failure:
    name: str
    reason: str
    output: Path | None  # the job's stdout and stderr
    run_log: Path | None  # log.txt of its run folder

    @classmethod
    def of(cls, job: Job, reason: str, log_dir: Path) -> Failure:
        """The failure of ``job``, with those of its logs that exist."""
        log = log_dir / f"{safe_name(job.name)}.log"
        run_log = job.run_dir / "log.txt" if job.run_dir is not None else None
        return cls(job.name, reason, log if log.exists() else None,
                   run_log if run_log and run_log.exists() else None)


def parse_gpus(gpus: str | None) -> list[str]:
    """GPU ids from --gpus or CUDA_VISIBLE_DEVICES; empty when there is none."""
    value = gpus if gpus is not None else os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [g.strip() for g in value.split(",") if g.strip()]
    if any(g in ("-1", "none") for g in ids):
        return []
    return ids


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the process group of ``proc``, SIGKILL after ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Sweep:
    """Runs jobs on slots (one per GPU, or one without GPU) and reports progress."""

    def __init__(self, jobs: list[Job], gpus: list[str], log_dir: Path, poll: float = 0.2,
                 scheduler: Scheduler | None = None, recheck: float = 5.0):
        check_graph(jobs)
        self.jobs = jobs
        self.slots: list[str | None] = list(gpus) or [None]
        self.log_dir = log_dir
        self.records = Records(log_dir)
        self.scheduler = scheduler or (lambda record: None)
        self.poll, self.recheck = poll, recheck
        self.ok: set[str] = set()
        self.failures: dict[str, Failure] = {}
        self.running: dict[str, tuple[subprocess.Popen, int, float]] = {}  # slot index
        self.elsewhere: dict[str, str] = {}  # run by another sweep or Slurm: its state
        self.claims: dict[str, Claim] = {}  # the claims of the jobs this sweep runs
        self.start = time.monotonic()

    def _say(self, message: str) -> None:
        total = len(self.jobs)
        ended = len(self.ok) + len(self.failures)
        print(f"[{ended}/{total} | ok {len(self.ok)} | running {len(self.running)} | failed "
              f"{len(self.failures)} | {duration(time.monotonic() - self.start)}] {message}",
              flush=True)

    def _claim(self, job: Job) -> bool:
        """Take the job's claim (scripts.jobs.Claim) before starting it; a job that another
        sweep claimed, or finished, meanwhile is waited for, or counted, instead."""
        claim = self.records.claim(job.name)
        if not claim.acquire():
            self.elsewhere[job.name] = "claimed by another sweep"
            self._say(f"{job.name} is being run by another sweep "
                      f"({self.records.claimed(job.name)}); waiting for it")
            return False
        status = job_status(job, self.records.get(job.name), self.scheduler)
        if status.state in (DONE, RUNNING, PENDING):  # it ended, or runs, elsewhere
            claim.release()
            if status.state == DONE:
                self.ok.add(job.name)
                self._say(f"done {job.name} (elsewhere)")
            else:
                self.elsewhere[job.name] = status.detail
            return False
        self.claims[job.name] = claim
        return True

    def _launch(self, job: Job, index: int) -> None:
        if not self._claim(job):
            return
        slot = self.slots[index]
        env = command_environment(job.env)
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{safe_name(job.name)}.log"
        self.records.starting(job.name)
        with open(log, "ab") as out:
            proc = subprocess.Popen(job.command, shell=isinstance(job.command, str), env=env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.records.put(job.name, Record("local", str(proc.pid), str(log),
                                          process_start=process_start(proc.pid)))
        self.running[job.name] = (proc, index, time.monotonic())
        resume = " (resuming)" if job.run_dir is not None and job.run_dir.exists() else ""
        where = f"GPU {slot}" if slot is not None else "CPU/default device"
        self._say(f"start {job.name} on {where}{resume}")

    def _status(self, job: Job) -> Status:
        return job_status(job, self.records.get(job.name), self.scheduler,
                          self.records.claimed(job.name))

    def _fail(self, job: Job, reason: str) -> None:
        self.failures[job.name] = Failure.of(job, reason, self.log_dir)

    def _reap(self) -> None:
        by_name = {job.name: job for job in self.jobs}
        for name, (proc, _slot, started) in list(self.running.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.running[name]
            self.records.end(name, "ok" if code == 0 else f"exit status {code}")
            self.claims.pop(name).release()
            job, took = by_name[name], duration(time.monotonic() - started)
            if code != 0:
                self._fail(job, f"exit status {code}")
                self._say(f"FAILED {name} (exit status {code}, {took})")
            elif job.run_dir is not None and not job.finished():
                self._fail(job, "exited 0 but its log holds no final accuracy")
                self._say(f"FAILED {name} (no result in {job.run_dir}, {took})")
            else:
                self.ok.add(name)
                self._say(f"done {name} ({took})")

    def _check_elsewhere(self, pending: list[Job]) -> None:
        """Take over the jobs run elsewhere that ended: done, or to be run here."""
        for job in [job for job in self.jobs if job.name in self.elsewhere]:
            status = self._status(job)
            if status.state in (RUNNING, PENDING):
                continue
            del self.elsewhere[job.name]
            if status.state == DONE:
                self.ok.add(job.name)
                self._say(f"done {job.name} (elsewhere)")
            else:
                pending.append(job)
                self._say(f"{job.name} ended elsewhere without a result ({status.detail}); "
                          "it is run here")

    def _next(self, pending: list[Job]) -> Job | None:
        """First pending job whose dependencies succeeded; fails jobs whose dependency failed."""
        changed = True
        while changed:
            changed = False
            for job in list(pending):
                failed = [dep for dep in job.after if dep in self.failures]
                if failed:
                    pending.remove(job)
                    changed = True
                    self._fail(job, f"not run: {failed[0]} failed")
                    self._say(f"SKIPPED {job.name} ({failed[0]} failed)")
                elif all(dep in self.ok for dep in job.after):
                    pending.remove(job)
                    return job
        return None

    def _stop_all(self) -> None:
        for proc, _slot, _started in self.running.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for name, (proc, _slot, _started) in self.running.items():
            stop_group(proc)
            self.records.end(name, STOPPED_WITH_SWEEP)
        self.running.clear()
        for claim in self.claims.values():
            claim.release()
        self.claims.clear()

    def _sort(self) -> list[Job]:
        """Sort the jobs into finished, run elsewhere and to run (returned)."""
        pending = []
        for job in self.jobs:
            status = self._status(job)
            if status.state == DONE:
                self.ok.add(job.name)
            elif status.state in (RUNNING, PENDING):
                self.elsewhere[job.name] = status.detail
            else:
                pending.append(job)
        return pending

    def run(self) -> list[Failure]:
        """Run every job; returns the failures (empty when all succeeded)."""
        pending = self._sort()
        where = ("one at a time (no GPU)" if self.slots == [None]
                 else f"GPU(s) {','.join(map(str, self.slots))}, one job each")
        self._say(f"{len(self.ok)} finished already (skipped), {len(pending)} to run, {where}")
        for name, detail in self.elsewhere.items():
            self._say(f"{name} is running elsewhere ({detail}); waiting for it")
        old = {sig: signal.signal(sig, _raise_interrupted) for sig in STOP_SIGNALS}
        try:
            self._loop(pending)
        except Interrupted:
            self._say(f"interrupted: stopping {len(self.running)} running job(s); run the same "
                      "command again to resume")
            raise
        finally:  # whatever ends the sweep (a signal, a broken pipe, a bug) ends its jobs
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut this short
            self._stop_all()
            for sig, previous in old.items():
                signal.signal(sig, previous)
        return list(self.failures.values())

    def _loop(self, pending: list[Job]) -> None:
        last_check = time.monotonic()
        while pending or self.running or self.elsewhere:
            busy = {index for _proc, index, _t in self.running.values()}
            free = [i for i in range(len(self.slots)) if i not in busy]
            job = self._next(pending) if free else None
            if job is not None:
                self._launch(job, free[0])
                continue
            if not self.running and not self.elsewhere:  # what is left waits forever
                for job in pending:
                    self._fail(job, "not run: it waits for a job that never ends")
                break
            time.sleep(self.poll)
            self._reap()
            if self.elsewhere and time.monotonic() - last_check >= self.recheck:
                last_check = time.monotonic()
                self._check_elsewhere(pending)


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def report(failures: list[Failure]) -> None:
    """Print the failed jobs with the paths of their logs."""
    if not failures:
        print("All jobs finished.", flush=True)
        return
    print(f"\n{len(failures)} job(s) failed:", flush=True)
    for f in failures:
        print(f"  {f.name}: {f.reason}")
        if f.output is not None:
            print(f"      output:  {f.output}")
        if f.run_log is not None:
            print(f"      run log: {f.run_log}")
    sys.stdout.flush()
