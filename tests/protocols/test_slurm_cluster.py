"""The demo sweep on a real one-node Slurm cluster (Debian's slurmctld, slurmd and munge,
started here as root with tests/protocols/fixtures/slurm/slurm.conf): arrays and dependencies
on a CPU-only node (no GPU asked for), a training requeued by ``scontrol requeue`` that
resumes, a training cancelled before it ran whose evaluation is submitted again with it by the
next sweep, and ``--wait`` right after submitting. Skipped, with the reason, where the machine
cannot run such a cluster (not root, no apt-get, the daemons do not start). Slow: Slurm makes
a requeued job eligible again about two minutes after its requeue.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONF = Path(__file__).with_name("fixtures") / "slurm" / "slurm.conf"
STATE = Path("/var/lib/slurm-test")
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
POLLS = 240  # polls of 5 s: 20 minutes at most for any wait
OVERRIDES = ["MODEL.BACKBONE.NAME", "tiny", "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "2"]

pytestmark = pytest.mark.slow


def _run(*command: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _installed() -> bool:
    return all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch"))


def _node_idle() -> bool:
    try:
        return _run("sinfo", "-h", "-o", "%t").stdout.strip() in ("idle", "mix")
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="module")
def cluster():
    """A running one-node cluster (started here unless one already answers); stopped after."""
    if os.geteuid() != 0:
        pytest.skip("a Slurm cluster is installed and started as root; not root here")
    if not _installed():
        if not shutil.which("apt-get"):
            pytest.skip("no apt-get to install Slurm (slurmctld, slurmd, munge)")
        done = _run("apt-get", "install", "-y", "-q", *PACKAGES, timeout=1800)
        if done.returncode != 0 or not _installed():
            pytest.skip(f"apt-get could not install Slurm: {done.stderr.strip()[-300:]}")
    started = []
    if not _node_idle():
        started = _start_daemons()
    try:
        for _ in range(60):
            if _node_idle():
                break
            time.sleep(1)
        else:
            pytest.skip("the Slurm daemons did not start: see "
                        f"{STATE}/log/slurmctld.log and slurmd.log")
        yield
    finally:
        if started:  # our cluster: end its jobs before its daemons
            _run("scancel", "-u", "root")
            for _ in range(30):
                if not _run("squeue", "-h").stdout.strip():
                    break
                time.sleep(2)
        for proc in reversed(started):
            proc.terminate()
            try:
                proc.wait(timeout=1800)
            except subprocess.TimeoutExpired:
                proc.kill()


def _start_daemons() -> list[subprocess.Popen]:
    host = socket.gethostname().split(".")[0]
    shutil.rmtree(STATE / "spool", ignore_errors=True)  # no job of an earlier cluster comes back
    for sub in ("spool/ctld", "spool/d", "run", "log"):
        (STATE / sub).mkdir(parents=True, exist_ok=True)
    Path("/etc/slurm").mkdir(exist_ok=True)
    Path("/etc/slurm/slurm.conf").write_text(CONF.read_text().replace("HOSTNAME", host))
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen(["runuser", "-u", "munge", "--", shutil.which("munged"), "-F"],
                              **quiet)]
    time.sleep(2)
    conf = ["-f", "/etc/slurm/slurm.conf"]
    procs.append(subprocess.Popen([shutil.which("slurmctld"), "-D", *conf], **quiet))
    time.sleep(3)
    procs.append(subprocess.Popen([shutil.which("slurmd"), "-D", *conf], **quiet))
    return procs


def sweep(out: Path, seeds: list[str], *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATA": str(out.parent / "data"), "PYTHONPATH": str(REPO)}
    (out.parent / "data").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(REPO / "scripts/sweep.py"), "base2new",
                           "--methods", "coop", "--datasets", "demo", "--seeds", *seeds,
                           "--output", str(out), "--launcher", "slurm", "--time", "30", *extra,
                           "--", *OVERRIDES], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=POLLS * 5)


def slurm_id(out: Path, name: str) -> str:
    import json

    state = out / "sweep_logs" / "state" / (name.replace("/", "_") + ".json")
    return json.loads(state.read_text())["job_id"]


def queue_state(job_id: str) -> str:
    return _run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip()


def test_the_demo_sweep_on_slurm(cluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = sweep(out, ["1"], "--wait")  # --wait right after submitting
    assert first.returncode == 0, first.stdout + first.stderr
    assert "base2new/test_new/CoOp, afterok:" in first.stdout
    assert "All jobs finished" in first.stdout
    status = sweep(out, ["1"], "--status")
    assert "2 jobs: 2 done" in status.stdout, status.stdout

    # seeds 2 and 3: cancel seed 2's training before it runs, requeue seed 3's once it runs
    train = "base2new/train_base/CoOp/vit_b16_ep50_ctxv1/demo/seed{}"
    submitted = sweep(out, ["2", "3"], "--sbatch", "begin=now+90")  # none starts for 90 s
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    cancelled, requeued = slurm_id(out, train.format(2)), slurm_id(out, train.format(3))
    _run("scancel", cancelled)
    begin = r"pending +\S+ +base2new/train_base/\S+/seed3 +\(PENDING \(BeginTime\)\)"
    for _ in range(6):  # squeue gives the reason once the scheduler has looked at the job
        status = sweep(out, ["2", "3"], "--status")
        if re.search(begin, status.stdout):
            break
        time.sleep(5)
    assert re.search(begin, status.stdout), status.stdout
    for _ in range(POLLS):
        if queue_state(requeued) == "RUNNING":
            break
        time.sleep(5)
    _run("scontrol", "requeue", requeued)
    again = sweep(out, ["2", "3"], "--wait")  # resubmits seed 2's training and evaluation
    assert again.returncode == 0, again.stdout + again.stderr
    assert "base2new/train_base/CoOp" in again.stdout
    assert "base2new/test_new/CoOp, afterok:" in again.stdout
    for _ in range(POLLS // 6):  # the requeued training, eligible again ~2 min after
        status = sweep(out, ["2", "3"], "--status")  # its requeue, is not this sweep's to wait for
        if "4 jobs: 4 done" in status.stdout:
            break
        time.sleep(30)
    assert "4 jobs: 4 done" in status.stdout, status.stdout
    (run,) = (out / "base2new" / "train_base" / "demo").glob("shots_*/CoOp/*/seed3")
    assert "Finish training" in (run / "log.txt").read_text()
