"""Base-to-novel end to end: the real scripts, train.py, CoOp and the tiny CLIP on the
synthetic demo dataset (1 epoch, 1 seed), then the sweep and the tables on what they wrote."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import results

REPO = Path(__file__).resolve().parents[2]
CFG = "vit_b16_ep50_ctxv1"  # the CoOp config of scripts/coop/base2new_*.sh and of the sweep
# the tiny CLIP takes 32x32 images; the value with a space also checks the quoting of overrides
OPTS = ["MODEL.BACKBONE.NAME", "tiny", "OPTIM.MAX_EPOCH", "1", "INPUT.SIZE", "(32, 32)"]


@pytest.mark.slow
def test_base2new_protocol_end_to_end(tmp_path: Path) -> None:
    needed = [REPO / "train.py", REPO / "configs/datasets/demo.yaml",
              REPO / f"configs/trainers/CoOp/{CFG}.yaml"]
    missing = [str(p.relative_to(REPO)) for p in needed if not p.exists()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (engine, datasets and configs)")
    (tmp_path / "data").mkdir()
    out = tmp_path / "output"
    env = {**os.environ, "DATA": str(tmp_path / "data"), "OUTPUT": str(out),
           "PYTHON": sys.executable, "EXTRA_OPTS": shlex.join(OPTS)}
    env.pop("CUDA_VISIBLE_DEVICES", None)

    def bash(script: str, *args: str) -> None:
        result = subprocess.run(["bash", f"scripts/{script}", *args], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # training through the per-method script, as a user runs it
    bash("coop/base2new_train.sh", "demo", "1")
    train_dir = out / f"base2new/train_base/demo/shots_16/CoOp/{CFG}/seed1"
    assert list(train_dir.glob("*/model.pth.tar-1"))

    def sweep() -> str:
        result = subprocess.run(
            [sys.executable, "scripts/sweep.py", "base2new", "--methods", "coop", "--datasets",
             "demo", "--seeds", "1", "--output", str(out), "--gpus", "", "--", *OPTS],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    # the sweep finds the training done (same layout, real log) and runs the evaluation
    first = sweep()
    assert "1 finished already (skipped), 1 to run" in first and "All jobs finished." in first
    assert "2 finished already (skipped), 0 to run" in sweep()

    records = results.scan(out)
    (demo,) = results.base2new_rows(records)[(f"CoOp/{CFG}", 16)]
    assert set(demo.base.by_seed) == {1} and set(demo.novel.by_seed) == {1}
    for value in (demo.base.mean, demo.novel.mean):
        assert 0.0 <= value <= 100.0
    markdown = results.render(results.build_tables(records))
    row = f"| demo | {demo.base.mean:.2f} | {demo.novel.mean:.2f} | {demo.hm:.2f} | 1 |"
    assert row in markdown

    experiment = f"demo/shots_16/CoOp/{CFG}"
    for phase, flags, accuracy in (("train_base", [], demo.base.mean),
                                   ("test_new", ["--test-log"], demo.novel.mean)):
        parsed = subprocess.run(
            [sys.executable, "parse_test_res.py", str(out / "base2new" / phase / experiment),
             *flags], cwd=REPO, capture_output=True, text=True, timeout=1800)
        assert parsed.returncode == 0, parsed.stderr
        assert f"* accuracy: {accuracy:.2f}% +- 0.00%" in parsed.stdout
