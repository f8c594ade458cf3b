"""The Slurm launcher where the cluster's word lags or is terse: --wait right after a
submission, a CPU-only cluster, a cancelled training's evaluation, and the reasons --status
gives. sbatch, squeue, sacct, sinfo and scancel are stand-ins (tests/protocols/
test_sweep_slurm.py); tests/protocols/test_slurm_cluster.py runs a real one-node cluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts import slurm, sweep
from scripts.jobs import Job, Records
from tests.protocols.test_sweep_slurm import base2new, fake_slurm, sbatch_options  # noqa: F401

pytest.importorskip("submitit")


def tool(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text("#!/bin/bash\n" + body)
    (folder / name).chmod(0o755)


def test_wait_right_after_submitting_does_not_call_new_jobs_failed(
        tmp_path: Path, fake_slurm: Path) -> None:  # noqa: F811
    """A re-run reads the queue before it submits; the jobs it submits are not in that
    reading, and squeue may not list them yet: they are pending, not failed."""
    log_dir = tmp_path / "logs"
    jobs = [Job("a", "true", stage="s"), Job("b", "true", stage="s")]
    Records(log_dir).put("a", slurm.Record("slurm", "99", "log"))  # an earlier run's job
    (fake_slurm / "sacct.txt").write_text("99|FAILED\n")
    # squeue: empty at first (before and just after the submission), then both listed,
    # then none, with both ended well
    tool(fake_slurm, "squeue", f"""n=$(cat "$FAKE_SLURM/calls" 2>/dev/null || echo 0)
echo $((n + 1)) > "$FAKE_SLURM/calls"
case $n in
  0|1) ;;
  2) printf '100_0|PENDING|Priority\\n100_1|PENDING|Priority\\n' ;;
  *) echo ok > {log_dir}/state/a.ended; echo ok > {log_dir}/state/b.ended ;;
esac
""")
    launcher = slurm.SubmititLauncher(jobs, log_dir, slurm.SlurmSubmitter(
        log_dir / "submitit", slurm.Resources()), slurm.SlurmQueue(), poll=0.01)
    assert launcher.run(wait=True) == []
    assert int((fake_slurm / "calls").read_text()) >= 4


def test_a_cpu_only_cluster_gets_no_gpu_request(tmp_path: Path, fake_slurm: Path) -> None:  # noqa: F811
    tool(fake_slurm, "sinfo", 'echo "(null)"\n')  # the partition's nodes have no GRES
    assert sweep.main(base2new(tmp_path / "out")) == 0
    assert not any("gpu" in key for key in sbatch_options(fake_slurm / "sbatch_100.sh"))
    tool(fake_slurm, "sinfo", 'echo "gpu:4(S:0-1)"\n')
    assert sweep.main(base2new(tmp_path / "out2")) == 0
    assert sbatch_options(fake_slurm / "sbatch_102.sh")["gpus-per-node"] == "1"


def test_a_refused_submission_names_what_was_asked_and_leaves_nothing(
        tmp_path: Path, fake_slurm: Path) -> None:  # noqa: F811
    message = "sbatch: error: Invalid generic resource (gres) specification"
    tool(fake_slurm, "sbatch", f"echo '{message}' >&2\nexit 1\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        sweep.main(base2new(out, "--partition", "debug", "--gpus-per-node", "1"))
    text = str(stop.value)
    assert "Invalid generic resource" in text and "Nothing was submitted." in text
    assert "Asked for: partition debug, nodes 1, gpus per node 1" in text
    assert "recorded" not in text
    submitit_dir = out / "sweep_logs" / "submitit"
    assert not [p for p in submitit_dir.rglob("*") if p.is_file()] if submitit_dir.exists() \
        else True
    assert not list((out / "sweep_logs" / "state").glob("*.json"))


def test_status_gives_slurms_reasons(tmp_path: Path, fake_slurm: Path,  # noqa: F811
                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert sweep.main(base2new(out)) == 0  # trainings 100_0, 100_1; evaluations 101_0, 101_1
    (fake_slurm / "squeue.txt").write_text(
        "100_0|PENDING|PartitionNodeLimit\n101_0|PENDING|Dependency\n"
        "101_1|PENDING|DependencyNeverSatisfied\n")
    # sacct answers only when asked by job id (a job cancelled before it started has no
    # start time for a time window to find)
    tool(fake_slurm, "sacct", 'case "$*" in *"-j 100"*) echo "100_1|CANCELLED by 0" ;; esac\n')
    capsys.readouterr()
    assert sweep.main(base2new(out, "--status")) == 0
    status = capsys.readouterr().out
    assert re.search(r"failed +100_0 .*\(pending for ever \(PartitionNodeLimit\): it asks for "
                     r"more nodes than its partition has", status)
    assert re.search(r"pending +101_0 .*\(PENDING \(Dependency\)\)", status)
    assert re.search(r"failed +100_1 .*\(CANCELLED by 0\)", status)
    assert re.search(r"failed +101_1 .*not run: a job it waits for failed or was cancelled",
                     status)
    # a job that ran and was cancelled: Slurm's word beside the job's own
    Records(out / "sweep_logs").end(
        "base2new/train_base/MaPLe/vit_b16_c2_ep5_batch4_2ctx/eurosat/seed1", "exit status -15")
    assert sweep.main(base2new(out, "--status")) == 0
    assert re.search(r"failed +100_1 .*\(CANCELLED by 0, exit status -15\)",
                     capsys.readouterr().out)


def test_a_rerun_after_a_cancelled_training_submits_its_evaluation_too(
        tmp_path: Path, fake_slurm: Path, capsys: pytest.CaptureFixture) -> None:  # noqa: F811
    out = tmp_path / "out"
    assert sweep.main(base2new(out)) == 0
    # eurosat's training (100_1) was cancelled; its evaluation 101_1 still waits in the queue
    # (Slurm has not dropped it yet); dtd's pair runs on
    (fake_slurm / "squeue.txt").write_text("100_0|RUNNING|None\n101_0|PENDING|Dependency\n"
                                           "101_1|PENDING|Dependency\n")
    (fake_slurm / "sacct.txt").write_text("100_1|CANCELLED by 0\n")
    tool(fake_slurm, "scancel", 'echo "$@" >> "$FAKE_SLURM/scancelled"\n')
    capsys.readouterr()
    assert sweep.main(base2new(out)) == 0
    printed = capsys.readouterr().out
    assert "job 102: base2new/train_base/MaPLe" in printed
    assert "job 103: base2new/test_new/MaPLe, afterok:102" in printed
    assert (fake_slurm / "scancelled").read_text().split() == ["101_1"]


def test_two_sweeps_submitting_together_submit_each_job_once(
        tmp_path: Path, fake_slurm: Path) -> None:  # noqa: F811
    """Two sweeps over the same jobs started at once: one reads the records and submits while
    the other waits for its claim, then finds the jobs queued (sbatch is slowed down so that,
    without the claim, both would read the records before either wrote them)."""
    import os
    import subprocess
    import sys

    tool(fake_slurm, "sbatch", 'sleep 1\nn=$(cat "$FAKE_SLURM/next" 2>/dev/null || echo 100)\n'
         'cp "$1" "$FAKE_SLURM/sbatch_$n.sh"\necho $((n + 1)) > "$FAKE_SLURM/next"\n'
         'echo "Submitted batch job $n"\n')
    repo = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(repo / "scripts" / "sweep.py"),
               *base2new(tmp_path / "out", "--poll", "0.5")]  # the waiting one looks again
    sweeps = [subprocess.Popen(command, cwd=tmp_path, env=os.environ.copy(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
              for _ in range(2)]
    outputs = [proc.communicate(timeout=1800)[0] for proc in sweeps]
    assert [proc.returncode for proc in sweeps] == [0, 0], outputs
    assert sorted(p.name for p in fake_slurm.glob("sbatch_*.sh")) == [
        "sbatch_100.sh", "sbatch_101.sh"], outputs  # one array per stage, submitted once


def test_wait_asks_slurm_again_every_poll_seconds(
        tmp_path: Path, fake_slurm: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """--poll sets the pause between --wait's questions to squeue (60 s by default)."""
    import time
    from types import SimpleNamespace

    slept: list[float] = []
    monkeypatch.setattr(slurm, "time", SimpleNamespace(time=time.time, sleep=slept.append,
                                                       monotonic=time.monotonic))
    # squeue: the two arrays queued for its first three questions, then gone
    tool(fake_slurm, "squeue", """n=$(cat "$FAKE_SLURM/calls" 2>/dev/null || echo 0)
echo $((n + 1)) > "$FAKE_SLURM/calls"
if [ "$n" -le 2 ]; then
  printf '100_0|RUNNING|None\\n100_1|RUNNING|None\\n101_0|PENDING|Dependency\\n'
  printf '101_1|PENDING|Dependency\\n'
fi
""")
    (fake_slurm / "sacct.txt").write_text("".join(f"{i}|CANCELLED\n" for i in
                                                  ("100_0", "100_1", "101_0", "101_1")))
    # --wait ends once squeue no longer lists them (each failed: cancelled)
    assert sweep.main(base2new(tmp_path / "out", "--wait", "--poll", "2.5")) == 1
    assert "4 job(s) failed" in capsys.readouterr().out
    assert slept == [2.5] * 3
    with pytest.raises(SystemExit):
        sweep.main(base2new(tmp_path / "out", "--wait", "--poll", "0"))
    assert "--poll: give a positive number of seconds" in capsys.readouterr().err
