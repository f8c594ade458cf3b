"""The submitit path of the sweep with real jobs, through submitit's local executor (real
subprocesses, no Slurm): the job graph and its dependencies, --status and resubmission, and a
training preempted mid-epoch that is requeued, resumes and ends with the weights of an
uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from datasets import demo
from engine.checkpoint import load_checkpoint
from scripts import sweep
from scripts.jobs import Records
from tests.protocols.processes import gone

pytest.importorskip("submitit")

REPO = Path(__file__).resolve().parents[2]

# Records when it ran (and how often), fails with status 3 while FAIL_UNLESS does not exist,
# then writes a finished log in its run folder.
STAND_IN = r'''
import os, sys, time
from pathlib import Path
run_dir, fail_unless = Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None
run_dir.mkdir(parents=True, exist_ok=True)
start = time.time()
time.sleep(0.1)
with open(run_dir / "runs.txt", "a") as f:
    f.write(f"{start} {time.time()}\n")
if fail_unless and not Path(fail_unless).exists():
    sys.exit(3)
(run_dir / "log.txt").write_text("Finish training\n=> result\n* accuracy: 50.00%\n")
'''


def run_sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "sweep.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=1800)


def runs(run_dir: Path) -> list[tuple[float, float]]:
    return [tuple(map(float, line.split())) for line in (run_dir / "runs.txt").read_text()
            .splitlines()]


def test_graph_dependencies_status_and_resubmission(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    stand_in = tmp_path / "stand_in.py"
    stand_in.write_text(STAND_IN)
    fixed = tmp_path / "fixed"

    def job(name: str, *after: str, fail: bool = False) -> dict:
        command = [sys.executable, str(stand_in), str(tmp_path / name)]
        return {"name": name, "command": command + ([str(fixed)] if fail else []),
                "run_dir": str(tmp_path / name), "end_signal": "train", "after": list(after)}

    jobs = [job("a"), job("b", "a"), job("c", fail=True), job("d", "c")]
    (tmp_path / "jobs.jsonl").write_text("\n".join(map(json.dumps, jobs)) + "\n")
    args = ["--jobs", "jobs.jsonl", "--log-dir", "logs", "--launcher", "submitit-local",
            "--gpus", "0,1"]
    first = run_sweep(*args, cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "c: exit status 3" in first.stdout and "d: not run: c failed" in first.stdout
    (a_start, a_end), = runs(tmp_path / "a")
    (b_start, _b_end), = runs(tmp_path / "b")
    assert b_start >= a_end  # b waited for a
    assert not (tmp_path / "d").exists()

    monkeypatch.chdir(tmp_path)

    def status() -> str:
        capsys.readouterr()
        assert sweep.main([*args, "--status"]) == 0
        return capsys.readouterr().out

    listing = status()
    for state, name in [("done", "a"), ("done", "b"), ("failed", "c"), ("todo", "d")]:
        assert re.search(rf"^{state} +(\d+|-) +{name}\b", listing, re.M), listing
    assert "c  (exit status 3)" in listing
    assert "4 jobs: 2 done, 1 failed, 1 todo" in listing
    records = Records(tmp_path / "logs")
    assert Path(records.get("c").log).exists()
    assert Path(records.get("a").scheduler_log).exists()  # submitit's log of the job

    fixed.write_text("")
    second = run_sweep(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert [len(runs(tmp_path / n)) for n in "abcd"] == [1, 1, 2, 1]  # only c and d again
    assert "4 jobs: 4 done" in status()


def worker_of(controller: int) -> int:
    """The process submitit's local controller started for the job (the Slurm task's twin)."""
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    return int(children[0])


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 1800) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            out, _ = process.communicate()
            pytest.fail(f"{path} never appeared; the sweep said:\n{out}")
        time.sleep(0.02)


@pytest.mark.slow
def test_preempted_training_resumes_and_ends_as_uninterrupted(tmp_path: Path) -> None:
    """Two trainings (tiny CLIP, demo data, 3 epochs): one is preempted in the middle of its
    second epoch (SIGUSR2 to its job, as Slurm sends), requeued by submitit and resumed by
    train.py from the checkpoint of epoch 1; the other runs through. Same final weights.

    No TRAIN.CHECKPOINT_FREQ: the papers' configs keep only the last epoch's file, and the
    epochs before it are resumable through the one file train.py replaces every epoch."""
    demo.generate(tmp_path / "data")  # not by both trainings at once
    gate = tmp_path / "gate"
    gate.write_text("")

    def training(name: str, **env: str) -> dict:
        command = [sys.executable, str(REPO / "train.py"), "--root", str(tmp_path / "data"),
                   "--seed", "1", "--trainer", "CoOp", "--output-dir", str(tmp_path / name),
                   "--dataset-config-file", str(REPO / "configs/datasets/demo.yaml"),
                   "--config-file", str(REPO / "configs/trainers/CoOp/demo_tiny.yaml"),
                   "DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "3"]
        return {"name": name, "command": command, "run_dir": str(tmp_path / name),
                "end_signal": "train",
                "env": {"ENGINE_IMPORTS": "tests.protocols.train_hooks", **env}}

    jobs = [training("preempted", SWEEP_TEST_GATE=f"{gate}:1:1"), training("uninterrupted")]
    (tmp_path / "jobs.jsonl").write_text("\n".join(map(json.dumps, jobs)) + "\n")
    sweep = subprocess.Popen([sys.executable, str(REPO / "scripts" / "sweep.py"), "--jobs",
                              "jobs.jsonl", "--log-dir", "logs", "--launcher", "submitit-local",
                              "--gpus", "0,1"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    wait_for(Path(f"{gate}.reached"), sweep)  # epoch 2, second step: epoch 1 is saved
    training = int(Path(f"{gate}.reached").read_text())
    record = Records(tmp_path / "logs").get("preempted")
    os.kill(worker_of(int(record.job_id)), signal.SIGUSR2)
    assert gone(training, 1800), "the preempted training was not stopped (at the gate)"
    gate.unlink()
    out, _ = sweep.communicate(timeout=1800)
    assert sweep.returncode == 0, out

    assert "Requeued job" in Path(record.scheduler_log).read_text()
    log = (tmp_path / "preempted" / "log.txt").read_text()
    assert log.count("will resume training") == 1 and log.count("Finish training") == 1
    # epoch 1 trained once; epoch 2 was cut short and trained again from the checkpoint
    assert len(re.findall(r"epoch \[1/3\] batch \[2/2\]", log)) == 1
    assert len(re.findall(r"epoch \[2/3\] batch \[1/2\]", log)) == 2
    resumed, straight = (load_checkpoint(str(tmp_path / run / "prompt_learner" /
                                             "model.pth.tar-3"))
                         for run in ("preempted", "uninterrupted"))
    for key, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
