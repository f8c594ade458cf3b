"""What a submitit job runs on each of its nodes (:class:`RunJob`), and how one run spans
several processes or nodes under torchrun.

Job processes unpickle :class:`RunJob`, so this module imports nothing heavy (no torch, and
submitit only when called).
"""

from __future__ import annotations

if __name__ == "__main__":  # a module, not a command
    raise SystemExit("scripts/run_job.py is a module of the sweep runner; "
                     "run python scripts/sweep.py --help")

import os
import shlex
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from scripts.jobs import Records
from scripts.logparse import Signal, is_finished

SCRIPTS = Path(__file__).resolve().parent


def require_submitit() -> ModuleType:
    """submitit, or an exit that says how to install it."""
    try:
        import submitit
    except ModuleNotFoundError as err:
        raise SystemExit("error: this launcher needs submitit: pip install submitit==1.5.4 "
                         "(see requirements.txt)") from err
    return submitit


def command_environment(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a job's command: this process's, the job's ``extra``, and this
    Python as ``PYTHON`` (the interpreter of the protocol scripts) unless set."""
    env = {**os.environ, **extra}
    env.setdefault("PYTHON", sys.executable)
    return env


def torchrun_args(nodes: int, procs: int, master: str, port: int, run_id: str) -> list[str]:
    """torchrun's options for one run over ``nodes`` machines of ``procs`` processes each
    (the c10d rendezvous gives every machine its rank)."""
    if nodes == 1:
        return ["--standalone", "--nnodes", "1", "--nproc_per_node", str(procs)]
    return ["--nnodes", str(nodes), "--nproc_per_node", str(procs), "--rdzv_backend", "c10d",
            "--rdzv_endpoint", f"{master}:{port}", "--rdzv_id", run_id]


def rendezvous_port(job_id: str) -> int:
    """A port for the rendezvous of one Slurm job (two jobs sharing a node differ);
    ``SWEEP_RENDEZVOUS_PORT`` fixes it instead (a cluster that opens only some ports)."""
    return 20000 + zlib.crc32(job_id.encode()) % 20000


def torchrun_environment(args: list[str], python: str) -> dict[str, str]:
    """What makes the protocol scripts start train.py under torchrun (they run $PYTHON)."""
    return {"PYTHON": str(SCRIPTS / "torchrun.sh"), "TORCHRUN_PYTHON": python,
            "TORCHRUN_ARGS": shlex.join(args)}


@dataclass
class RunJob:
    """What a submitit job runs on each of its nodes: the job's command, in a process group of
    its own, with its output appended to ``log``. On preemption or at the time limit submitit
    calls :meth:`checkpoint`: the command is stopped and the same call is requeued (train.py
    then resumes from its last checkpoint). The command never outlives the job's process."""

    name: str
    command: list[str] | str
    env: dict[str, str]
    cwd: str
    log: str
    log_dir: str
    run_dir: str | None = None
    end_signal: Signal = None
    nodes: int = 1
    gpus_per_node: int = 0
    grace: float = 20.0  # wait this long for the requeue signal after the command was killed

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __call__(self) -> str:
        node, log, env = self._environment()
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self._proc = subprocess.Popen(self.command, shell=isinstance(self.command, str),
                                          cwd=self.cwd, env=env, stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        try:
            code = self._wait()
        except KeyboardInterrupt:  # cancelled, or what ran the job is gone
            if node == 0:
                Records(Path(self.log_dir)).end(self.name, "cancelled")
            raise
        finally:
            self._stop()
        return self._outcome(code, log, node == 0)

    def _environment(self) -> tuple[int, str, dict[str, str]]:
        """This node's index, its log and the command's environment (torchrun's settings
        when the job spans several processes)."""
        job_env = require_submitit().JobEnvironment()
        env = command_environment(self.env)
        procs = max(1, self.gpus_per_node)
        if self.nodes * procs > 1:
            port = os.environ.get("SWEEP_RENDEZVOUS_PORT") or rendezvous_port(job_env.job_id)
            args = torchrun_args(self.nodes, procs, job_env.hostnames[0], int(port),
                                 job_env.job_id)
            env.update(torchrun_environment(args, env["PYTHON"]))
        log = self.log if job_env.node == 0 else f"{self.log}.node{job_env.node}"
        return job_env.node, log, env

    def _wait(self) -> int:
        """Poll (a signal handler must never interrupt a blocking wait: see checkpoint)."""
        parent = os.getppid()
        while self._proc.poll() is None:
            if os.getppid() != parent:
                raise KeyboardInterrupt
            time.sleep(0.2)
        code = self._proc.returncode
        if code == -signal.SIGTERM:  # Slurm's preemption reached it: the requeue signal follows
            time.sleep(self.grace)
        return code

    def _outcome(self, code: int, log: str, first_node: bool) -> str:
        """Record how the job ended (the first node speaks for the job); raise if it failed."""
        if first_node:
            Records(Path(self.log_dir)).end(self.name,
                                            "ok" if code == 0 else f"exit status {code}")
        if code != 0:
            raise RuntimeError(f"{self.name}: exit status {code}; its output: {log}")
        if first_node and self.run_dir and not is_finished(self.run_dir, self.end_signal):
            raise RuntimeError(f"{self.name}: exited 0 but no final accuracy in {self.run_dir}")
        return "done"

    def _signal(self, signum: int) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                pass

    def _stop(self, grace: float = 10.0) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None or proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            proc.wait()

    def checkpoint(self) -> Any:
        """Called by submitit in a signal handler: stop the command (waiting for it here could
        deadlock with :meth:`_wait`; it is reaped on the way out) and requeue the same call."""
        self._signal(signal.SIGTERM)
        return require_submitit().helpers.DelayedSubmission(self)
