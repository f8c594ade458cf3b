"""The demo sweep on a real one-node Slurm cluster (Debian's slurmctld, slurmd and munge,
started here as root with tests/protocols/fixtures/slurm/slurm.conf, whose timers are short):
job arrays with aligned dependencies on a CPU-only node (no GPU asked for), --status giving
Slurm's reason for a pending job, a training cancelled before it ran that the next sweep
submits again with its evaluation (and nothing else), a training requeued by ``scontrol
requeue`` that runs again to its end, and ``--wait`` right after submitting. Skipped, with the
reason, where the machine cannot run such a cluster (not root, no apt-get, the daemons do not
start).
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

from scripts.slurm import LISTING_DELAY

REPO = Path(__file__).resolve().parents[2]
CONF = Path(__file__).with_name("fixtures") / "slurm" / "slurm.conf"
STATE = Path("/var/lib/slurm-test")
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
POLLS = 1800  # polls of about a second: half an hour at most for any wait
TRAIN = "base2new/train_base/CoOp/vit_b16_ep50_ctxv1/demo/seed{}"
EVAL = "base2new/test_new/CoOp/vit_b16_ep50_ctxv1/demo/seed{}"
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
        if not _until(_node_idle, polls=120, pause=0.5):
            pytest.skip("the Slurm daemons did not start: see "
                        f"{STATE}/log/slurmctld.log and slurmd.log")
        yield
    finally:
        if started:  # our cluster: end its jobs before its daemons
            _run("scancel", "-u", "root")
            _until(lambda: not _run("squeue", "-h").stdout.strip(), polls=120, pause=0.5)
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
    _until(lambda: Path("/run/munge/munge.socket.2").exists(), polls=100, pause=0.1)
    conf = ["-f", "/etc/slurm/slurm.conf"]
    procs.append(subprocess.Popen([shutil.which("slurmctld"), "-D", *conf], **quiet))
    _until(lambda: "is UP" in _run("scontrol", "ping").stdout, polls=150, pause=0.2)
    procs.append(subprocess.Popen([shutil.which("slurmd"), "-D", *conf], **quiet))
    return procs


def _until(done, polls: int = POLLS, pause: float = 1.0) -> bool:
    """Ask ``done()`` up to ``polls`` times, ``pause`` seconds apart; True once it says so."""
    for _ in range(polls):
        if done():
            return True
        time.sleep(pause)
    return False


def sweep(out: Path, *extra: str) -> subprocess.CompletedProcess:
    """The sweep of seeds 1 and 2 of CoOp on the demo data, tiny CLIP, on Slurm."""
    env = {**os.environ, "DATA": str(out.parent / "data"), "PYTHONPATH": str(REPO)}
    (out.parent / "data").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(REPO / "scripts/sweep.py"), "base2new",
                           "--methods", "coop", "--datasets", "demo", "--seeds", "1", "2",
                           "--output", str(out), "--launcher", "slurm", "--time", "30",
                           "--poll", "1", *extra, "--", *OVERRIDES], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)


def slurm_id(out: Path, name: str) -> str:
    import json

    state = out / "sweep_logs" / "state" / (name.replace("/", "_") + ".json")
    return json.loads(state.read_text())["job_id"]


def queue_state(job_id: str) -> str:
    return _run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip()


def status_until(out: Path, pattern: str, polls: int) -> str:
    """The output of --status, asked up to ``polls`` times, a second apart, until ``pattern``
    is in it."""
    for _ in range(polls):
        text = sweep(out, "--status").stdout
        if re.search(pattern, text):
            break
        time.sleep(1)
    return text


def _ok(*command: str) -> None:
    done = _run(*command)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stderr}"


def test_the_demo_sweep_on_slurm(cluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # held back by a begin time an hour away: one array per stage, task i of the evaluations
    # waiting for task i of the trainings
    held = sweep(out, "--sbatch", "begin=now+3600")
    submitted = time.monotonic()
    assert held.returncode == 0, held.stdout + held.stderr
    assert re.search(r"^array (\d+) of 2 jobs: base2new/train_base/CoOp\n"
                     r"array \d+ of 2 jobs: base2new/test_new/CoOp, aftercorr:\1$",
                     held.stdout, re.M), held.stdout
    cancelled, requeued = slurm_id(out, TRAIN.format(1)), slurm_id(out, TRAIN.format(2))
    _ok("scancel", cancelled)  # seed 1's training, before it ran
    begin = rf"pending +{re.escape(requeued)} +{TRAIN.format(2)} +\(PENDING \(BeginTime\)\)"
    status = status_until(out, begin, 60)  # once the scheduler (every 2 s) has looked at it
    assert re.search(begin, status), status

    # seed 2 may start now; its training is requeued once it runs, and runs again
    for job in (requeued, slurm_id(out, EVAL.format(2))):
        _ok("scontrol", "update", f"JobId={job}", "StartTime=now")
    assert _until(lambda: queue_state(requeued) == "RUNNING"), queue_state(requeued)
    _ok("scontrol", "requeue", requeued)

    # without Slurm's accounting (sacct), a job missing from squeue is taken for one just
    # submitted and not listed yet until LISTING_DELAY has passed: only then is the cancelled
    # training missing
    time.sleep(max(0.0, submitted + LISTING_DELAY + 1 - time.monotonic()))
    again = sweep(out, "--wait")  # seed 1's training and evaluation again, and only them
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"^job (\d+): base2new/train_base/CoOp\n"
                     r"job \d+: base2new/test_new/CoOp, afterok:\1\n"
                     r"2 job\(s\) in 2 submission\(s\)\.$", again.stdout, re.M), again.stdout
    assert "All jobs finished" in again.stdout
    status = status_until(out, "4 jobs: 4 done", 600)  # seed 2's requeued one was not its own
    assert "4 jobs: 4 done" in status, status
    (run,) = (out / "base2new" / "train_base" / "demo").glob("shots_*/CoOp/*/seed2")
    assert "Finish training" in (run / "log.txt").read_text()
