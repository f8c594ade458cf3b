"""Base-to-novel end to end: the real scripts, train.py, CoOp and the tiny CLIP on the
synthetic demo dataset (1 epoch), then the sweep and the tables on what they wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import results

REPO = Path(__file__).resolve().parents[2]
CFG = "vit_b16_ep50_ctxv1"  # the CoOp config of scripts/coop/base2new_*.sh and of the sweep
OPTS = ["MODEL.BACKBONE.NAME", "tiny", "OPTIM.MAX_EPOCH", "1"]


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
           "PYTHON": sys.executable, "EXTRA_OPTS": " ".join(OPTS)}
    env.pop("CUDA_VISIBLE_DEVICES", None)

    def bash(script: str, *args: str) -> None:
        result = subprocess.run(["bash", f"scripts/{script}", *args], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # seed 1 through the per-method scripts, as a user runs them
    bash("coop/base2new_train.sh", "demo", "1")
    bash("coop/base2new_test.sh", "demo", "1")
    common = f"demo/shots_16/CoOp/{CFG}/seed1"
    assert list((out / "base2new/train_base" / common).glob("*/model.pth.tar-1"))

    # the sweep finds seed 1 done (same layout as the scripts) and runs seed 2
    sweep = subprocess.run(
        [sys.executable, "scripts/sweep.py", "base2new", "--methods", "coop", "--datasets",
         "demo", "--seeds", "1", "2", "--output", str(out), "--gpus", "", "--", *OPTS],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    assert "2 finished already (skipped), 2 to run" in sweep.stdout
    assert "All jobs finished." in sweep.stdout

    rows = results.base2new_rows(results.scan(out))[(f"CoOp/{CFG}", 16)]
    (demo,) = rows
    assert set(demo.base.by_seed) == {1, 2} and set(demo.novel.by_seed) == {1, 2}
    for value in (*demo.base.by_seed.values(), *demo.novel.by_seed.values()):
        assert 0.0 <= value <= 100.0
    markdown = results.render(results.build_tables(results.scan(out)))
    assert f"| demo | {results.fmt(demo.base)} | {results.fmt(demo.novel)} |" in markdown

    novel_dir = out / "base2new/test_new/demo/shots_16/CoOp" / CFG
    parsed = subprocess.run([sys.executable, "parse_test_res.py", str(novel_dir), "--test-log"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert parsed.returncode == 0, parsed.stderr
    assert f"* accuracy: {demo.novel.mean:.2f}% +- {demo.novel.std:.2f}%" in parsed.stdout
