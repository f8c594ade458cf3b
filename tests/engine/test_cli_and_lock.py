"""One run per output folder; input errors as one message with an exit status."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

import train
from engine.errors import EXIT_LOCKED, EXIT_USER_ERROR, ConfigError, RunLocked
from engine.lock import LOCK_FILE, RunLock
from tests.engine import toy  # noqa: F401  (registers ToyTrainer / ToyFolder)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLDER = rf"pid {os.getpid()} on host {socket.gethostname()}"


def test_a_held_folder_refuses_a_second_lock_until_released(tmp_path):
    with RunLock(str(tmp_path)):
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert (record["pid"], record["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(RunLocked, match=rf"in use by another run: {HOLDER} \("):
            RunLock(str(tmp_path)).acquire()
    assert not (tmp_path / LOCK_FILE).exists()
    with RunLock(str(tmp_path)) as again:
        assert again.taken_over is None


def test_a_dead_runs_lock_and_temporaries_are_taken_over_with_a_log_line(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid,
                                                  "started": "yesterday"}))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / ".model.pth.tar-3.0123456789ab.tmp").write_bytes(b"PK half a file")
    with train.run_folder(str(tmp_path)):
        pass
    log = (tmp_path / "log.txt").read_text()
    assert f"Took over the lock of {tmp_path} from a run that ended without releasing it: " \
           f"pid {dead.pid} on host {socket.gethostname()} (yesterday)" in log
    assert "Removed 1 temporary files left by interrupted saves" in log
    assert os.listdir(tmp_path / "model") == [] and not (tmp_path / LOCK_FILE).exists()


def test_without_file_locking_the_record_decides(tmp_path, monkeypatch):
    import errno

    import engine.lock

    def unsupported(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(engine.lock.fcntl, "flock", unsupported)
    host = socket.gethostname()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": host, "pid": os.getppid()}))
    with pytest.raises(RunLocked, match=f"pid {os.getppid()} on host {host}.*cannot lock"):
        RunLock(str(tmp_path)).acquire()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": host, "pid": dead.pid}))
    with RunLock(str(tmp_path)) as lock:
        assert lock.taken_over == {"host": host, "pid": dead.pid}


def test_a_second_run_in_a_held_folder_stops_naming_the_holder(image_root, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, ENGINE_IMPORTS="tests.engine.toy", PYTHONPATH=REPO)
    with RunLock(str(out)):
        done = subprocess.run(
            [sys.executable, os.path.join(REPO, "train.py"), "--root", image_root, "--output-dir",
             str(out), "--trainer", "ToyTrainer", "DATASET.NAME", "ToyFolder", "USE_CUDA",
             "False"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == EXIT_LOCKED, done.stderr[-2000:]
    assert done.stderr.startswith(f"train.py: error: The output folder {out} is in use by "
                                  f"another run: pid {os.getpid()} on host ")
    assert "Traceback" not in done.stderr and not (out / "log.txt").exists()


def _cli(tmp_path, *argv: str) -> list[str]:
    return ["--root", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"), *argv]


@pytest.mark.parametrize("argv, message", [
    (["--trainer", "ToyTrainer", "DATASET.NAME", "ToyFolder", "OPTIM.LR", "0.1", "--seed", "2"],
     "--seed 2 comes after the KEY VALUE overrides.*flags go first: train.py ... --seed 2 "
     "DATASET.NAME ToyFolder OPTIM.LR 0.1"),
    (["--trainer", "toytrainer", "DATASET.NAME", "ToyFolder"],
     "Unknown trainer 'toytrainer'. Did you mean 'ToyTrainer'?"),
    (["--trainer", "ToyTrainer", "--config-file", "configs/trainers/CoOp/vit_b16_ep5.yaml"],
     "--config-file configs/trainers/CoOp/vit_b16_ep5.yaml: no such file \\(did you mean "
     "configs/trainers/CoOp/vit_b16_ep50.yaml"),
    (["--trainer", "ToyTrainer", "--config-file", "configs/trainers/CoOp/nope.yaml"],
     "CoOp/nope\\.yaml: no such file$"),  # no unrelated names (rn50.yaml) suggested
    (["--trainer", "ToyTrainer"], "No dataset: pass --dataset-config-file"),
    (["--trainer", "ToyTrainer", "DATASET.NAME", "ToyFolder", "OPTIM.MAX_EPOCH", "0"],
     "OPTIM.MAX_EPOCH is 0"),
    (["--trainer", "ToyTrainer", "--eval-only", "--model-dir", "runs", "--load-epoch", "-1"],
     "--load-epoch -1: epoch files start at model.pth.tar-1"),
])
def test_input_errors_are_one_message_also_in_log_txt(tmp_path, capsys, monkeypatch, argv,
                                                      message):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as stop:
        train.cli(_cli(tmp_path, *argv))
    assert stop.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("train.py: error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "Error: " + err[len("train.py: error: "):] in log and "Traceback" not in log


def test_debug_shows_the_traceback_and_other_processes_stay_quiet(tmp_path, capsys,
                                                                   monkeypatch):
    argv = _cli(tmp_path, "--trainer", "ToyTrainer", "DATASET.NAME", "ToyFolder",
                "OPTIM.MAX_EPOCH", "0")
    with pytest.raises(ConfigError, match="OPTIM.MAX_EPOCH is 0"):
        train.cli(["--debug", *argv])
    monkeypatch.setenv("RANK", "1")  # as torchrun starts the second process
    with pytest.raises(SystemExit) as stop:
        train.cli(argv)
    assert stop.value.code == EXIT_USER_ERROR and capsys.readouterr().err == ""
