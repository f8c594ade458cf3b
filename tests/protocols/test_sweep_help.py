"""Every example command of ``sweep.py --help`` works: the demo one runs (tiny CLIP, demo data,
one epoch), --status and --jobs run, and the ones that would train on the benchmarks are
listed with --dry-run (for --launcher slurm: the arrays it would submit)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from scripts import sweep


def examples() -> list[list[str]]:
    """The example commands of the help, as argument lists (after ``python scripts/sweep.py``)."""
    block = sweep.__doc__.split("Examples::", 1)[1].split("\n\n", 2)[1]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["python", "scripts/sweep.py"]:
            commands.append(words[2:])
        else:
            assert words[:1] == ["export"], f"not an example command: {line}"
    return commands


@pytest.mark.slow
def test_every_example_of_the_help_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    commands = examples()
    assert len(commands) == 8
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("DATA", str(tmp_path / "data"))
    monkeypatch.delenv("EXTRA_OPTS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.chdir(tmp_path)
    Path("jobs.jsonl").write_text(json.dumps({"name": "hello", "command": "echo hello"}) + "\n")
    ran = []
    for args in commands:
        cheap = "demo" in args or "--status" in args or "--jobs" in args
        capsys.readouterr()
        assert sweep.main(args if cheap else [*args, "--dry-run"]) == 0, args
        out = capsys.readouterr().out
        ran.append(out)
        if "--launcher" in args:
            assert "array <1> of 33 jobs: base2new/train_base/MaPLe" in out
            assert "array <2> of 33 jobs: base2new/test_new/MaPLe, aftercorr:<1>" in out
    demo = next(out for args, out in zip(commands, ran, strict=True) if "demo" in args)
    assert "All jobs finished." in demo
    run = tmp_path / "output/demo/CoOp/demo_tiny_2shots/seed1"
    assert re.search(r"\* accuracy: [\d.]+%", (run / "log.txt").read_text())
    assert "hello" in (tmp_path / "output/sweep_logs/hello.log").read_text()
    mvlpt = next(out for args, out in zip(commands, ran, strict=True) if "mvlpt" in args)
    # 3 variants x (3 sources + 1 average + 3 seeds x (10 CoOp targets + 20 ELEVATER tasks))
    assert mvlpt.count("\ntodo ") + mvlpt.startswith("todo ") == 282
    status = next(out for args, out in zip(commands, ran, strict=True) if "--status" in args)
    assert "66 jobs: 66 todo" in status  # 11 datasets x 3 seeds x (train + test)
