"""The scripts of KgCoOp, ProGrad and DePT: what each asks of train.py (the official arguments),
run against the stand-in train.py of conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.protocols.test_protocol_scripts import calls, run

CONFIGS = {"KgCoOp/vit_b16_ep100_ctxv1": 100, "ProGrad/rn50_ep100": 100,
           "ExtrasLinearProbeMaPLe/vit_b16_c2_ep10_batch4_2ctx": 10}


@pytest.fixture()
def new_repo(repo: Path) -> Path:
    for name, epochs in CONFIGS.items():
        path = repo / "configs" / "trainers" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"OPTIM:\n  MAX_EPOCH: {epochs}\n")
    return repo


def options(args: list[str]) -> dict[str, str]:
    """The KEY VALUE overrides after the flags (train.py's opts)."""
    i = 0
    while i < len(args) and args[i].startswith("--"):
        i += 1 if args[i] == "--eval-only" else 2
    return dict(zip(args[i::2], args[i + 1::2], strict=True))


def test_kgcoop_base2new_with_a_weight_per_output_folder(new_repo: Path) -> None:
    for script in ("kgcoop/base2new_train.sh", "kgcoop/base2new_test.sh"):
        result = run(new_repo, script, "dtd", "8.0", SEEDS="1 2")
        assert result.returncode == 0, result.stderr
    common = "dtd/shots_16/KgCoOp/vit_b16_ep100_ctxv1"
    for seed in (1, 2):
        (train,) = calls(new_repo / "output/w8.0/base2new/train_base" / common / f"seed{seed}")
        opts = options(train)
        assert opts["TRAINER.COOP.W"] == "8.0" and opts["TRAINER.COOP.N_CTX"] == "4"
        assert opts["DATASET.SUBSAMPLE_CLASSES"] == "base"
        (test,) = calls(new_repo / "output/w8.0/base2new/test_new" / common / f"seed{seed}")
        assert test[test.index("--load-epoch") + 1] == "100"
        assert options(test)["DATASET.SUBSAMPLE_CLASSES"] == "new"
    assert run(new_repo, "kgcoop/base2new_train.sh", "dtd").returncode == 2


def test_prograd_scripts_pass_lambda_and_the_official_shots(new_repo: Path) -> None:
    result = run(new_repo, "prograd/base2new_train_prograd.sh", "dtd", SEEDS="3")
    assert result.returncode == 0, result.stderr
    (args,) = calls(new_repo / "output/base2new/train_base/dtd/shots_4/ProGrad/rn50_ep100/seed3")
    opts = options(args)
    assert (opts["LOSS.LAMBDA"], opts["TRAINER.COOP.N_CTX"], opts["DATASET.NUM_SHOTS"]) == (
        "1.0", "16", "4")
    result = run(new_repo, "prograd/prograd.sh", "dtd", "rn50_ep100", "end", "16", "2", "False",
                 SEEDS="1", LAMBDA="0.5")
    assert result.returncode == 0, result.stderr
    (args,) = calls(new_repo / "output/dtd/ProGrad/rn50_ep100_2shots/nctx16_cscFalse_ctpend/seed1")
    assert options(args)["LOSS.LAMBDA"] == "0.5"


def test_dept_scripts_map_the_official_run_names(new_repo: Path) -> None:
    result = run(new_repo, "dept/base2new_train.sh", "maple_dept", "dtd", "1")
    assert result.returncode == 0, result.stderr
    common = "dtd/shots_16/ExtrasLinearProbeMaPLe/vit_b16_c2_ep10_batch4_2ctx/seed1"
    (args,) = calls(new_repo / "output/base2new/train_base" / common)
    assert args[args.index("--trainer") + 1] == "ExtrasLinearProbeMaPLe"
    assert run(new_repo, "dept/base2new_test.sh", "maple_dept", "dtd", "1").returncode == 0
    assert calls(new_repo / "output/base2new/test_new" / common)
    result = run(new_repo, "dept/base2new_train.sh", "maple", "dtd", "1")
    assert result.returncode == 2 and "coop_dept, cocoop_dept" in result.stderr
