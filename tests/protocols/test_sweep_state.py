"""job_status, the one place that says whether a job is done, running, failed or to do."""

from __future__ import annotations

import os
from pathlib import Path

from scripts import jobs
from scripts.jobs import Job, Record, Records, Status, job_status, process_start
from tests.protocols.logs import write_train_log


def no_cluster(record: Record) -> Status | None:
    raise AssertionError("only Slurm records are asked to the cluster")


def test_what_decides_the_state(tmp_path: Path) -> None:
    records = Records(tmp_path)
    run = Job("run", "x", run_dir=tmp_path / "run", end_signal="Finish training")
    plain = Job("plain", "x")  # no run folder: its exit status decides
    assert job_status(run, None, no_cluster) == Status(jobs.TODO)

    me = Record("local", str(os.getpid()), "log", process_start=process_start(os.getpid()))
    records.put("run", me)
    assert job_status(run, records.get("run"), no_cluster).state == jobs.RUNNING
    reused = Record("local", str(os.getpid()), "log", process_start="1")  # pid of another
    assert job_status(run, reused, no_cluster).state == jobs.FAILED

    dead = Record("submitit-local", str(2 ** 22 + 7), "log")  # above any pid
    records.put("plain", dead)
    assert job_status(plain, records.get("plain"), no_cluster) == Status(
        jobs.FAILED, "ended without saying why (killed?)")
    records.end("plain", jobs.STOPPED_WITH_SWEEP)  # Ctrl-C of the sweep: not a failure
    assert job_status(plain, records.get("plain"), no_cluster).state == jobs.INTERRUPTED
    records.end("plain", "exit status 3")
    assert job_status(plain, records.get("plain"), no_cluster).detail == "exit status 3"
    records.end("plain", "ok")
    assert job_status(plain, records.get("plain"), no_cluster) == Status(jobs.DONE)
    records.put("run", dead)
    records.end("run", "ok")
    assert job_status(run, records.get("run"), no_cluster).detail == (
        "exited 0 but its log holds no final accuracy")
    records.starting("run")  # a new start forgets how the last one ended
    assert records.get("run").ended == ""

    elsewhere = Record("local", "1", "log", host="another-host")
    assert "started on another-host" in job_status(run, elsewhere, no_cluster).detail

    queued, slurm = Record("slurm", "12_3", "log"), lambda r: Status(jobs.PENDING, "PENDING")
    assert job_status(run, queued, slurm).state == jobs.PENDING
    write_train_log(tmp_path / "run", 70.0)  # a result on disk wins over any record
    assert job_status(run, queued, slurm) == Status(jobs.DONE)


def test_a_run_folder_locked_by_train_py_is_running_whoever_started_it(tmp_path: Path) -> None:
    """train.py's output-folder lock (engine/lock.py) makes a job RUNNING even with no record
    of this sweep: a run started by hand, or by another sweep, is never started twice. A lock
    file nobody holds (its run was killed) is stale and does not count."""
    from engine.lock import RunLock

    run = Job("run", "x", run_dir=tmp_path / "run", end_signal="Finish training")
    with RunLock(str(tmp_path / "run")):
        status = job_status(run, None, no_cluster)
        assert status.state == jobs.RUNNING
        assert status.detail.startswith(f"locked by pid {os.getpid()} on host ")
    assert job_status(run, None, no_cluster) == Status(jobs.TODO)
