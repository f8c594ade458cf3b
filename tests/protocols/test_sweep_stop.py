"""Jobs never outlive the sweep that started them, and a rerun never starts a second copy of a
running job: SIGHUP, a broken output pipe, SIGTERM to a submitit-local sweep; a second sweep
while the first one runs the job."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts import sweep
from scripts.jobs import Records
from tests.protocols.processes import gone

REPO = Path(__file__).resolve().parents[2]

# Writes its pid, waits while GATE exists (at most 5 minutes), then finishes its run folder.
WAITER = r'''
import os, sys, time
from pathlib import Path
run_dir, gate = Path(sys.argv[1]), Path(sys.argv[2])
run_dir.mkdir(parents=True, exist_ok=True)
with open(run_dir / "starts.txt", "a") as f:
    f.write(f"{os.getpid()}\n")
deadline = time.time() + 1800
while gate.exists() and time.time() < deadline:
    time.sleep(0.02)
(run_dir / "log.txt").write_text("Finish training\n=> result\n* accuracy: 50.00%\n")
'''


def jobs_file(tmp_path: Path, *names: str, gate: Path, quick: str = "") -> Path:
    waiter = tmp_path / "waiter.py"
    waiter.write_text(WAITER)
    jobs = [{"name": n, "command": [sys.executable, str(waiter), str(tmp_path / n), str(gate)],
             "run_dir": str(tmp_path / n), "end_signal": "train"} for n in names]
    if quick:
        jobs.append({"name": quick, "command": "sleep 0.5"})
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(map(json.dumps, jobs)) + "\n")
    return path


def started(run_dir: Path, process: subprocess.Popen, seconds: float = 1800) -> list[int]:
    """The pids the job had, once it started."""
    deadline = time.monotonic() + seconds
    while not (run_dir / "starts.txt").exists() or not (run_dir / "starts.txt").read_text():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    return [int(p) for p in (run_dir / "starts.txt").read_text().split()]


def start_sweep(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / "sweep.py"), *args],
                            cwd=cwd, text=True, **kwargs)


def test_sighup_stops_the_jobs(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.write_text("")
    jobs = jobs_file(tmp_path, "long", gate=gate)
    proc = start_sweep("--jobs", str(jobs), "--log-dir", "logs", "--gpus", "", cwd=tmp_path,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    (pid,) = started(tmp_path / "long", proc)
    proc.send_signal(signal.SIGHUP)
    out, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 128 + signal.SIGHUP, out
    assert gone(pid)
    record = Records(tmp_path / "logs").get("long")
    assert record.ended == "stopped with the sweep"


def test_a_broken_pipe_stops_the_jobs(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.write_text("")
    jobs = jobs_file(tmp_path, "long", gate=gate, quick="quick")
    proc = start_sweep("--jobs", str(jobs), "--log-dir", "logs", "--gpus", "0,1",
                       cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    (pid,) = started(tmp_path / "long", proc)
    proc.stdout.close()  # the reader goes away; "done quick" cannot be written
    assert proc.wait(timeout=1800) == 128 + signal.SIGPIPE
    assert gone(pid)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times: /proc")
def test_a_second_sweep_waits_for_the_running_job(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    gate = tmp_path / "gate"
    gate.write_text("")
    jobs = jobs_file(tmp_path, "long", gate=gate)
    first = start_sweep("--jobs", str(jobs), "--log-dir", "logs", "--gpus", "", cwd=tmp_path,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started(tmp_path / "long", first)
    sort = sweep.Sweep._sort

    def sort_then_release(self: sweep.Sweep) -> list:
        pending = sort(self)  # the second sweep has seen the job running: now let it end
        gate.unlink()
        return pending

    monkeypatch.setattr(sweep.Sweep, "_sort", sort_then_release)
    second = sweep.Sweep(sweep.load_jobs_file(jobs), [], tmp_path / "logs", poll=0.02,
                         recheck=0.05)
    assert second.run() == []
    out = capsys.readouterr().out
    assert "long is running elsewhere (pid" in out and "done long (elsewhere)" in out
    first_out, _ = first.communicate(timeout=1800)
    assert first.returncode == 0, first_out
    assert len((tmp_path / "long" / "starts.txt").read_text().split()) == 1  # started once


def test_sigterm_to_a_submitit_local_sweep_stops_its_jobs(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    gate = tmp_path / "gate"
    gate.write_text("")
    jobs = jobs_file(tmp_path, "long", gate=gate)
    proc = start_sweep("--jobs", str(jobs), "--log-dir", "logs", "--launcher",
                       "submitit-local", cwd=tmp_path, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    (pid,) = started(tmp_path / "long", proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert gone(pid)
    assert Records(tmp_path / "logs").get("long").ended == "cancelled"
