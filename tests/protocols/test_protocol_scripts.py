"""The shell scripts: syntax, argument handling, output layout, skip and resume, errors.

The scripts run in a copy of scripts/ next to a stand-in train.py (the ``repo`` fixture of
conftest.py), so that what each script asks of train.py is checked without training anything.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.protocols.logs import write_unfinished_log

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "scripts").rglob("*.sh"))

def run(repo: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("EXTRA_OPTS", "MODEL_DIR")}
    full_env.update({"DATA": str(repo.parent / "data"), "PYTHON": sys.executable,
                     "OUTPUT": "output", **env})
    return subprocess.run(["bash", f"scripts/{script}", *args], cwd=repo, env=full_env,
                          capture_output=True, text=True, timeout=1800)


def calls(run_dir: Path) -> list[list[str]]:
    return json.loads((run_dir / "calls.json").read_text())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_bash_syntax(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_wrappers_call_existing_protocols() -> None:
    wrappers = [s for s in SCRIPTS if s.parent.name not in ("protocols", "scripts")
                and s.name != "demo.sh"]  # a method's demo is not a protocol
    assert len(wrappers) >= 39
    for script in wrappers:
        text = script.read_text()
        targets = re.findall(r"protocols/(\w+\.sh)", text)
        # a method whose protocol no other shares (PromptKD's one run that evaluates both
        # halves) runs train.py through common.sh itself
        assert targets or "run_train_py" in text, f"{script} calls no protocol script"
        for target in targets:
            assert (REPO / "scripts" / "protocols" / target).is_file(), (script, target)


WRAPPERS = [s for s in SCRIPTS if "WRAPPER=" in s.read_text()]


@pytest.mark.parametrize("script", WRAPPERS, ids=lambda p: str(p.relative_to(REPO)))
def test_a_wrong_call_shows_the_usage_of_the_script_called(script: Path, tmp_path: Path) -> None:
    """A per-method script's wrong call is answered with its own arguments (its "# Usage:"
    line), not with those of the protocol script it runs."""
    line = next(t for t in script.read_text().splitlines() if t.startswith("# Usage: "))
    env = {k: v for k, v in os.environ.items() if k not in ("EXTRA_OPTS", "WRAPPER")}
    result = subprocess.run(["bash", str(script), *["x"] * 9], cwd=tmp_path, capture_output=True,
                            text=True, env={**env, "DATA": str(tmp_path)}, timeout=1800)
    assert result.returncode == 2, result.stderr
    called = (script.name + line.split(script.name, 1)[1]).rstrip(" \\")  # and its arguments
    assert result.stderr.startswith("usage: ") and called in result.stderr, (called, result.stderr)


def test_data_unset_is_a_clear_error(repo: Path) -> None:
    result = run(repo, "maple/base2new_train_maple.sh", "dtd", "1", DATA="")
    assert result.returncode == 2
    assert "DATA is not set" in result.stderr and "export DATA=" in result.stderr
    assert not (repo / "output").exists()


def test_bad_arguments_are_clear_errors(repo: Path) -> None:
    result = run(repo, "maple/base2new_train_maple.sh", "dtd")
    assert result.returncode == 2  # the usage of the script called, not of its protocol's
    assert "usage: DATA=/path/to/datasets bash scripts/maple/base2new_train_maple.sh DATASET " \
        "SEED" in result.stderr
    result = run(repo, "protocols/base2new_train.sh", "MaPLe", "dtd")
    assert result.returncode == 2 and "usage: base2new_train.sh TRAINER CFG" in result.stderr
    result = run(repo, "maple/base2new_train_maple.sh", "nodataset", "1")
    assert result.returncode == 2 and "unknown dataset 'nodataset'" in result.stderr
    assert "dtd" in result.stderr  # the datasets that exist are listed
    result = run(repo, "maple/base2new_train_maple.sh", "dtd", "1", CFG="nope")
    assert result.returncode == 2 and "configs/trainers/MaPLe/nope.yaml" in result.stderr
    assert "vit_b16_c2_ep5_batch4_2ctx" in result.stderr
    result = run(repo, "maple/base2new_test_maple.sh", "dtd", "1", "all")
    assert result.returncode == 2 and "'base' or 'new'" in result.stderr


def test_base2new_train_then_test(repo: Path) -> None:
    assert run(repo, "maple/base2new_train_maple.sh", "dtd", "1").returncode == 0
    common = "dtd/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx/seed1"
    train_dir = repo / "output/base2new/train_base" / common
    (args,) = calls(train_dir)
    assert args[:4] == ["--root", str(repo.parent / "data"), "--seed", "1"]
    assert args[args.index("--trainer") + 1] == "MaPLe"
    assert args[args.index("--config-file") + 1].endswith(
        "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml")
    assert args[args.index("--output-dir") + 1] == f"output/base2new/train_base/{common}"
    assert args[-4:] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]

    result = run(repo, "maple/base2new_test_maple.sh", "dtd", "1")
    assert result.returncode == 0, result.stderr
    (args,) = calls(repo / "output/base2new/test_new" / common)
    assert args[args.index("--model-dir") + 1] == f"output/base2new/train_base/{common}"
    assert args[args.index("--load-epoch") + 1] == "5"  # OPTIM.MAX_EPOCH of the config
    assert "--eval-only" in args and args[-2:] == ["DATASET.SUBSAMPLE_CLASSES", "new"]
    assert run(repo, "maple/base2new_test_maple.sh", "dtd", "1", "base").returncode == 0
    assert (repo / "output/base2new/test_base" / common / "calls.json").exists()


def test_extra_opts_are_passed_and_set_the_epoch_to_load(repo: Path) -> None:
    extra = "MODEL.BACKBONE.NAME tiny OPTIM.MAX_EPOCH 1 TRAINER.COOP.CTX_INIT 'a photo of a'"
    for script in ("cocoop/base2new_train.sh", "cocoop/base2new_test.sh"):
        result = run(repo, script, "dtd", "2", EXTRA_OPTS=extra)
        assert result.returncode == 0, result.stderr
    common = "dtd/shots_16/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1/seed2"
    (args,) = calls(repo / "output/base2new/test_new" / common)
    assert args[-6:] == ["MODEL.BACKBONE.NAME", "tiny", "OPTIM.MAX_EPOCH", "1",
                         "TRAINER.COOP.CTX_INIT", "a photo of a"]
    assert args[args.index("--load-epoch") + 1] == "1"
    result = run(repo, "cocoop/base2new_train.sh", "dtd", "3", EXTRA_OPTS="ONLY_A_KEY")
    assert result.returncode == 2 and "KEY VALUE pairs" in result.stderr


def test_finished_runs_are_skipped_and_unfinished_ones_resumed(repo: Path) -> None:
    train_dir = repo / "output/base2new/train_base/dtd/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx"
    run(repo, "maple/base2new_train_maple.sh", "dtd", "1")
    result = run(repo, "maple/base2new_train_maple.sh", "dtd", "1")
    assert "Skip this job" in result.stdout
    assert len(calls(train_dir / "seed1")) == 1  # train.py did not run again
    result = run(repo, "maple/base2new_train_maple.sh", "dtd", "1", FORCE="1")
    assert len(calls(train_dir / "seed1")) == 2

    write_unfinished_log(train_dir / "seed2")
    result = run(repo, "maple/base2new_train_maple.sh", "dtd", "2")
    assert "Resuming" in result.stdout and len(calls(train_dir / "seed2")) == 1

    (train_dir / "seed3").mkdir()  # a log of an older Dassl version counts as finished too
    (train_dir / "seed3" / "log.txt").write_text("Finished training\n* accuracy: 1.00%\n")
    assert "Skip this job" in run(repo, "maple/base2new_train_maple.sh", "dtd", "3").stdout


def test_evaluation_without_a_trained_model_fails_early(repo: Path) -> None:
    result = run(repo, "maple/base2new_test_maple.sh", "dtd", "1")
    assert result.returncode == 2
    assert "no checkpoint" in result.stderr and "model.pth.tar-5" in result.stderr
    assert not (repo / "output/base2new/test_new").exists()


def test_cross_dataset_train_and_test(repo: Path) -> None:
    # CoCoOp's official xd_train.sh takes only SEED (ImageNet); MaPLe's takes DATASET SEED.
    assert run(repo, "cocoop/xd_train.sh", "1").returncode == 0
    assert (repo / "output/imagenet/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_16shots/seed1").is_dir()
    assert run(repo, "maple/xd_train_maple.sh", "imagenet", "1").returncode == 0
    result = run(repo, "maple/xd_test_maple.sh", "imagenet_a", "1")
    assert result.returncode == 0, result.stderr
    tag = "vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots"
    (args,) = calls(repo / f"output/evaluation/MaPLe/{tag}/imagenet_a/seed1")
    assert args[args.index("--model-dir") + 1] == f"output/imagenet/MaPLe/{tag}/seed1"
    assert args[args.index("--load-epoch") + 1] == "2"
    assert "DATASET.NUM_SHOTS" not in args


def test_reproduce_with_downloaded_weights(repo: Path, tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    for seed_dir in ("base/seed1", "seed1"):
        ckpt = weights / seed_dir / "MultiModalPromptLearner"
        ckpt.mkdir(parents=True)
        epoch = 5 if seed_dir.startswith("base") else 2
        (ckpt / f"model.pth.tar-{epoch}").write_text("weights")
    result = run(repo, "maple/reproduce_maple.sh", "dtd", "1", str(weights))
    assert result.returncode == 0, result.stderr
    for sub in ("base", "new"):
        run_dir = repo / f"output/base2new/test_{sub}/dtd/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx"
        (args,) = calls(run_dir / "seed1")
        assert args[args.index("--model-dir") + 1] == str(weights / "base/seed1")
    result = run(repo, "maple/reproduce_maple_xd.sh", "dtd", "1", str(weights))
    assert result.returncode == 0, result.stderr


def test_few_shot_and_coop_layouts(repo: Path) -> None:
    result = run(repo, "promptsrc/few_shot.sh", "dtd", "4", SEEDS="1 2")
    assert result.returncode == 0, result.stderr
    base = repo / "output/dtd/PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot_4shots"
    assert sorted(p.name for p in base.iterdir()) == ["seed1", "seed2"]
    (args,) = calls(base / "seed2")
    assert args[-2:] == ["DATASET.NUM_SHOTS", "4"]

    result = run(repo, "coop/main.sh", "imagenet", "rn50_ep50", "end", "16", "16", "False",
                 SEEDS="1")
    assert result.returncode == 0, result.stderr
    run_dir = repo / "output/imagenet/CoOp/rn50_ep50_16shots/nctx16_cscFalse_ctpend/seed1"
    (args,) = calls(run_dir)
    assert args[-8:] == ["DATASET.NUM_SHOTS", "16", "TRAINER.COOP.N_CTX", "16",
                         "TRAINER.COOP.CSC", "False", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end"]
    result = run(repo, "coop/eval.sh", "dtd", "rn50_ep50", SEEDS="1")
    assert result.returncode == 0, result.stderr
    run_dir = repo / "output/evaluation/CoOp/rn50_ep50_16shots/nctx16_cscFalse_ctpend/dtd/seed1"
    (args,) = calls(run_dir)
    assert args[args.index("--load-epoch") + 1] == "50"


def test_zero_shot_scripts(repo: Path) -> None:
    assert run(repo, "zsclip/zeroshot.sh", "dtd", "vit_b16").returncode == 0
    (args,) = calls(repo / "output/ZeroshotCLIP/vit_b16/dtd")
    assert args[args.index("--config-file") + 1].endswith("configs/trainers/CoOp/vit_b16.yaml")
    assert "--model-dir" not in args and "--eval-only" in args
    result = run(repo, "zsclip/base2new_zeroshot.sh", "dtd")
    assert result.returncode == 0, result.stderr
    for sub in ("base", "new"):
        run_dir = repo / f"output/base2new/test_{sub}/dtd/shots_16/ZeroshotCLIP/vit_b16/seed1"
        (args,) = calls(run_dir)
        assert "--model-dir" not in args and args[-1] == sub
