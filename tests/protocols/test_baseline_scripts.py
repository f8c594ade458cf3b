"""The scripts of TCP, MMA and CLIP-LoRA: what each asks of train.py (the official arguments),
run against the stand-in train.py of conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.protocols.test_new_method_scripts import options
from tests.protocols.test_protocol_scripts import calls, run

CONFIGS = {"TCP/vit_b16_ep100_ctxv1": 50, "MultiModalAdapter/vit_b16_ep5": 5,
           "MultiModalAdapter/vit_b16_ep5_imnet": 5, "CLIPLoRA/vit_b16": 1}


@pytest.fixture()
def baseline_repo(repo: Path) -> Path:
    for name, epochs in CONFIGS.items():
        path = repo / "configs" / "trainers" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"OPTIM:\n  MAX_EPOCH: {epochs}\n")
    return repo


@pytest.mark.parametrize("dataset, epochs", [("dtd", "50"), ("imagenet", "25")])
def test_tcp_base2new_passes_the_official_options(baseline_repo: Path, dataset, epochs) -> None:
    for script in ("tcp/base2new_train.sh", "tcp/base2new_test.sh"):
        result = run(baseline_repo, script, dataset, SEEDS="2")
        assert result.returncode == 0, result.stderr
    common = f"{dataset}/shots_16/TCP/vit_b16_ep100_ctxv1/seed2"
    (train,) = calls(baseline_repo / "output/base2new/train_base" / common)
    opts = options(train)
    assert (opts["TRAINER.COOP.N_CTX"], opts["TRAINER.COOP.W"], opts["TRAINER.COOP.CSC"]) == (
        "4", "1.0", "False")
    assert opts.get("OPTIM.MAX_EPOCH", "50") == epochs
    (test,) = calls(baseline_repo / "output/base2new/test_new" / common)
    assert test[test.index("--load-epoch") + 1] == epochs
    assert options(test)["DATASET.SUBSAMPLE_CLASSES"] == "new"


def test_mma_scripts_run_its_configs(baseline_repo: Path) -> None:
    assert run(baseline_repo, "mmadapter/base2new_train.sh", "dtd", SEEDS="1").returncode == 0
    (train,) = calls(baseline_repo / "output/base2new/train_base/dtd/shots_16/"
                     "MultiModalAdapter/vit_b16_ep5/seed1")
    assert train[train.index("--trainer") + 1] == "MultiModalAdapter"
    assert run(baseline_repo, "mmadapter/xd_train.sh", SEEDS="1").returncode == 0
    (xd,) = calls(baseline_repo / "output/imagenet/MultiModalAdapter/vit_b16_ep5_imnet_16shots/"
                  "seed1")
    assert options(xd)["DATASET.NUM_SHOTS"] == "16"
    assert run(baseline_repo, "mmadapter/base2new_train.sh").returncode == 2


def test_clip_lora_few_shot_passes_shots_and_flags(baseline_repo: Path) -> None:
    result = run(baseline_repo, "clip_lora/few_shot.sh", "eurosat", SEEDS="3", SHOTS="4",
                 EXTRA_OPTS="TRAINER.CLIPLORA.R 4")
    assert result.returncode == 0, result.stderr
    (args,) = calls(baseline_repo / "output/eurosat/CLIPLoRA/vit_b16_4shots/seed3")
    opts = options(args)
    assert (opts["DATASET.NUM_SHOTS"], opts["TRAINER.CLIPLORA.R"]) == ("4", "4")
