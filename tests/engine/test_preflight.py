"""train.py's checks before the config dump: input mistakes stop the run first, and a config
file written for another method is pointed out in one warning line (also in log.txt)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import train
from engine.preflight import foreign_trainer_nodes
from engine.registry import TRAINER_REGISTRY

REPO = Path(__file__).resolve().parents[2]
MVLPT_DEMO = "configs/trainers/MVLPT/demo_tiny.yaml"


def cfg_of(trainer: str, config: str, *opts: str):
    train.import_plugins()
    args = train.build_parser().parse_args([
        "--trainer", trainer, "--config-file", str(REPO / config),
        "--dataset-config-file", str(REPO / "configs/datasets/demo.yaml"), *opts])
    return train.setup_cfg(args)


@pytest.mark.parametrize("trainer, config, foreign", [
    ("CoOp", "configs/trainers/MaPLe/demo_tiny.yaml", "TRAINER.MAPLE"),
    ("MaPLe", "configs/trainers/VPT/demo_tiny.yaml", "TRAINER.VPT"),
    ("CoOp", "configs/trainers/CoOp/demo_tiny.yaml", None),
    ("KgCoOp", "configs/trainers/KgCoOp/demo_tiny.yaml", None),  # KgCoOp's node is COOP
    ("ZeroshotCLIP", "configs/trainers/CoOp/vit_b16.yaml", None),  # CLIP reads CoOp's
    ("MaPLe", "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx_kgcoop.yaml", None),
    ("MVLPT", "configs/trainers/MVLPT/vit_b16.yaml", None),
])
def test_another_methods_config_is_pointed_out(trainer, config, foreign) -> None:
    warning = foreign_trainer_nodes(cfg_of(trainer, config), str(REPO / config))
    if foreign is None:
        assert warning is None
    else:
        assert f"sets {foreign}, which {trainer} does not read" in warning


def test_an_unread_node_is_pointed_out_beside_the_runs_own(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text("TRAINER:\n  COOP:\n    N_CTX: 4\n  MAPLE:\n    N_CTX: 2\n"
                    "  LINEAR_PROBE:\n    WEIGHT: 0.5\n")
    warning = foreign_trainer_nodes(cfg_of("CoOp", str(both)), str(both))
    assert "sets TRAINER.LINEAR_PROBE, TRAINER.MAPLE, which CoOp does not read" in warning
    assert "it reads TRAINER.COOP)" in warning and "\n" not in warning
    # the same nodes are read by a method whose parts read them
    assert foreign_trainer_nodes(cfg_of("ExtrasLinearProbeCoOp", str(both)), str(both)) \
        == warning.replace("TRAINER.LINEAR_PROBE, ", "").replace(
            "which CoOp", "which ExtrasLinearProbeCoOp").replace(
            "(it reads TRAINER.COOP)", "(it reads TRAINER.COOP, TRAINER.LINEAR_PROBE)")


@pytest.mark.parametrize("trainer, config, foreign", [
    # KgCoOp's weight under its official key TRAINER.COOP.W, read by MaPLe's KgCoOp term
    ("CoOp", "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx_kgcoop.yaml", "TRAINER.MAPLE"),
    # its TRAINER.PARTS gives CoOp DePT's head too, which reads LINEAR_PROBE (and FILM's alias)
    ("CoOp", "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_dept.yaml",
     "TRAINER.PROMPTSRC"),
    ("CoOp", "configs/trainers/TCP/demo_tiny.yaml", "TRAINER.TCP"),
    # TCP's learner (its TRAINER.PARTS) reads TRAINER.COOP and TRAINER.TCP, not PromptSRC's
    ("IVLP", "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_tcp.yaml", "TRAINER.PROMPTSRC"),
])
def test_a_file_setting_the_runs_node_and_others(trainer, config, foreign) -> None:
    warning = foreign_trainer_nodes(cfg_of(trainer, config), str(REPO / config))
    assert warning is not None and f"sets {foreign}, which {trainer} does not read" in warning


CONFIGS = sorted((REPO / "configs/trainers").glob("*/*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_warning_for_a_methods_own_config_files(config: Path) -> None:
    """Nodes a method's parts read (TRAINER.PARTS, shared nodes, aliased official keys, the
    nodes its learner's settings read) are not pointed out."""
    trainer = config.parent.name
    train.import_plugins()
    assert trainer in TRAINER_REGISTRY
    # MVLPT's scripts name its variant on the command line (its configs set no prompt size)
    opts = ["TRAINER.MVLPT.COOP.N_CTX", "4"] if trainer == "MVLPT" else []
    warning = foreign_trainer_nodes(cfg_of(trainer, str(config), *opts), str(config))
    if "ctxv1" in config.name and trainer == "MVLPT":
        # the official MVLPT files carry CoOp's CTX_INIT, which MVLPT does not read (its
        # words are TRAINER.MVLPT.COOP.CTX_INIT)
        assert "sets TRAINER.COOP, which MVLPT does not read" in warning
    else:
        assert warning is None


@pytest.mark.parametrize("with_own_node", [False, True])
def test_the_warning_is_one_line_of_log_txt(tmp_path: Path, with_own_node: bool) -> None:
    out, config = tmp_path / "out", REPO / "configs/trainers/MaPLe/demo_tiny.yaml"
    if with_own_node:  # MaPLe's demo config with a TRAINER.COOP node too
        text = yaml.safe_load(config.read_text())
        text["TRAINER"]["COOP"] = {"N_CTX": 4}
        config = tmp_path / "both.yaml"
        config.write_text(yaml.safe_dump(text))
    train.cli(["--root", str(tmp_path / "data"), "--trainer", "CoOp", "--output-dir", str(out),
               "--dataset-config-file", str(REPO / "configs/datasets/demo.yaml"),
               "--config-file", str(config),
               "--eval-only", "DATASET.SUBSAMPLE_CLASSES", "base"])
    lines = [line for line in (out / "log.txt").read_text().splitlines() if "Warning" in line]
    assert len(lines) == 1 and "TRAINER.MAPLE, which CoOp does not read" in lines[0]


def test_a_missing_dataset_folder_stops_before_the_config_dump(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        train.cli(["--root", str(tmp_path / "nowhere"), "--trainer", "CoOp",
                   "--output-dir", str(tmp_path / "out"),
                   "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
                   "--config-file", str(REPO / "configs/trainers/CoOp/demo_tiny.yaml")])
    captured = capsys.readouterr()
    assert "Caltech101 folder not found" in captured.err
    assert "** Config **" not in captured.out + captured.err
    assert "** Config **" not in (tmp_path / "out" / "log.txt").read_text()


def test_the_first_log_line_names_elevater_tasks() -> None:
    train.import_plugins()
    args = train.build_parser().parse_args(["--trainer", "MVLPT", "--dataset", "cifar-10",
                                            "--config-file", str(REPO / MVLPT_DEMO)])
    assert train.run_datasets(train.setup_cfg(args)) == "cifar-10"
    assert train.run_datasets(cfg_of("CoOp", "configs/trainers/CoOp/demo_tiny.yaml")) == "Demo"
