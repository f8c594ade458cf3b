"""Two sweeps over the same jobs at once: each job starts once, and the sweep that did not
start a job reports it as run elsewhere, not as failed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from scripts.jobs import Records
from tests.protocols.test_sweep import REPO, script, write_jobs

# Notes its start, waits for the test's gate (a bounded number of polls), writes a result.
GATED = r'''
import os, sys, time
from pathlib import Path
run_dir, gate = Path(sys.argv[1]), Path(sys.argv[2])
run_dir.mkdir(parents=True, exist_ok=True)
with open(run_dir / "starts.txt", "a") as f:
    f.write(f"{os.getpid()}\n")
for _ in range(360000):
    if gate.exists():
        break
    time.sleep(0.005)
(run_dir / "log.txt").write_text("Finished training\n=> result\n* accuracy: 50.00%\n")
'''


def _wait_for(path: Path, text: str, processes: list[subprocess.Popen]) -> None:
    for _ in range(360000):
        if path.exists() and text in path.read_text():
            return
        assert all(p.poll() is None for p in processes), path.read_text()
        time.sleep(0.005)
    raise AssertionError(f"{path} never said {text!r}")


def test_two_sweeps_start_each_job_once(tmp_path: Path) -> None:
    job = script(tmp_path, "gated.py", GATED)
    gate = tmp_path / "go"
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", [
        {"name": f"job{i}", "command": f"{sys.executable} {job} {tmp_path / f'run{i}'} {gate}",
         "run_dir": str(tmp_path / f"run{i}"), "end_signal": "train"} for i in range(3)])
    args = ["--jobs", str(jobs_file), "--gpus", "", "--log-dir", str(tmp_path / "logs")]
    outputs = [tmp_path / "first.out", tmp_path / "second.out"]
    sweeps = []
    for output in outputs:
        with open(output, "w") as out:
            sweeps.append(subprocess.Popen(
                [sys.executable, str(REPO / "scripts" / "sweep.py"), *args], cwd=tmp_path,
                stdout=out, stderr=subprocess.STDOUT))
    for output in outputs:  # both sweeps have read the state and started or claimed a job
        _wait_for(output, " to run", sweeps)
    _wait_for(tmp_path / "run0" / "starts.txt", "\n", sweeps)
    gate.touch()
    for sweep in sweeps:
        sweep.wait(timeout=1800)
    texts = [output.read_text() for output in outputs]
    assert [s.returncode for s in sweeps] == [0, 0], texts
    for i in range(3):
        assert len((tmp_path / f"run{i}" / "starts.txt").read_text().split()) == 1, texts
    assert all("FAILED" not in text for text in texts), texts
    assert any("by another sweep" in text or "running elsewhere" in text for text in texts)
    assert all("All jobs finished." in text for text in texts)


def test_a_claim_is_exclusive_and_dies_with_its_holder(tmp_path: Path) -> None:
    records = Records(tmp_path)
    first, second = records.claim("a/b"), records.claim("a/b")
    assert first.acquire() and not second.acquire()
    assert records.claimed("a/b").startswith("the sweep of pid ")
    first.release()
    assert records.claimed("a/b") is None and second.acquire()
    second.release()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from scripts.jobs import Records; "
        "c = Records(Path(sys.argv[1])).claim('j'); assert c.acquire(); print('held', "
        "flush=True); time.sleep(3600)"), str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
        text=True)
    assert holder.stdout.readline().strip() == "held"
    assert not records.claim("j").acquire()
    holder.kill()
    holder.wait(timeout=1800)
    assert records.claim("j").acquire()  # the kernel dropped the dead sweep's claim
