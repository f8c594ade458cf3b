"""DRY_RUN=1: every script that runs train.py (or averages checkpoints) prints its commands
and runs none of them, with a data root that does not exist and no earlier step's output
(checkpoints, source prompts), so a whole protocol can be printed before any of it runs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Would leave a mark if it ran at all.
TRAIN_MARK = "from pathlib import Path\nPath(__file__).with_name('RAN').write_text('ran')\n"

# sourced by the others, or a launcher that runs what it is given
NOT_RUN_ALONE = {"common.sh", "protocols/elevater.sh", "protocols/mvlpt_common.sh",
                 "torchrun.sh"}

AVERAGING = {"mvlpt/avg_ckpt.sh", "protocols/multitask_average.sh"}  # run avg_ckpt.py
W = "{weights}"  # a folder of published weights (it exists, holding nothing)
RUNS = {  # script -> its arguments (SEEDS=1 throughout)
    "demo.sh": [],
    "promptkd/demo.sh": [],
    "clip_lora/few_shot.sh": ["dtd"],
    "cocoop/base2new_train.sh": ["dtd", "1"],
    "cocoop/base2new_test.sh": ["dtd", "1"],
    "cocoop/xd_train.sh": ["1"],
    "cocoop/xd_test.sh": ["dtd", "1"],
    "coop/base2new_train.sh": ["dtd", "1"],
    "coop/base2new_test.sh": ["dtd", "1"],
    "coop/main.sh": ["dtd", "vit_b16", "end", "16", "1", "False"],
    "coop/eval.sh": ["dtd", "vit_b16"],
    "coprompt/base2new_train_coprompt.sh": ["dtd", "1"],
    "coprompt/base2new_test_coprompt.sh": ["dtd", "1"],
    "dept/base2new_train.sh": ["coop_dept", "dtd", "1"],
    "dept/base2new_test.sh": ["maple_dept", "dtd", "1"],
    "dept/xd_train.sh": ["kgcoop_dept", "1"],
    "dept/xd_test.sh": ["cocoop_dept", "dtd", "1"],
    "independent-vlp/base2new_train_ivlp.sh": ["dtd", "1"],
    "independent-vlp/base2new_test_ivlp.sh": ["dtd", "1"],
    "independent-vlp/reproduce_ivlp.sh": ["dtd", "1", W],
    "independent-vlp/xd_train_ivlp.sh": ["1"],
    "independent-vlp/xd_test_ivlp.sh": ["dtd", "1"],
    "kgcoop/base2new_train.sh": ["dtd", "8.0"],
    "kgcoop/base2new_test.sh": ["dtd", "8.0"],
    "kgcoop/xd_train.sh": ["dtd"],
    "language-prompting/base2new_train_lp.sh": ["dtd", "1"],
    "language-prompting/base2new_test_lp.sh": ["dtd", "1"],
    "language-prompting/reproduce_lp.sh": ["dtd", "1", W],
    "language-prompting/xd_train_lp.sh": ["1"],
    "language-prompting/xd_test_lp.sh": ["dtd", "1"],
    "maple/base2new_train_maple.sh": ["dtd", "1"],
    "maple/base2new_test_maple.sh": ["dtd", "1"],
    "maple/reproduce_maple.sh": ["dtd", "1", W],
    "maple/reproduce_maple_xd.sh": ["dtd", "1", W],
    "maple/xd_train_maple.sh": ["1"],
    "maple/xd_test_maple.sh": ["dtd", "1"],
    "mmadapter/base2new_train.sh": ["dtd"],
    "mmadapter/base2new_test.sh": ["dtd"],
    "mmadapter/xd_train.sh": [],
    "mmadapter/xd_test.sh": ["dtd"],
    "mvlpt/main_mt_coopdata_cut.sh": ["UPT", "vit_b16", "4", "5", "1"],
    "mvlpt/avg_ckpt.sh": ["UPT", "vit_b16", "4", "5"],
    "mvlpt/main_single_coopdata_cut.sh": ["UPT", "vit_b16", "4", "5", "1", "Caltech101"],
    "mvlpt/main_mt_elevater_cut.sh": ["UPT", "vit_b16", "4", "5"],
    "mvlpt/main_single_elevater_cut.sh": ["UPT", "vit_b16", "4", "5", "1", "cifar-10"],
    "mvlpt/zeroshot.sh": ["dtd", "vit_b16"],
    "prograd/base2new_train_prograd.sh": ["dtd"],
    "prograd/base2new_test_prograd.sh": ["dtd"],
    "prograd/prograd.sh": ["dtd", "rn50_ep100", "end", "16", "1", "False"],
    "promptkd/base2new_train.sh": ["dtd", "1"],
    "promptkd/xd_train.sh": ["imagenet", "1"],
    "promptsrc/base2new_train.sh": ["dtd", "1"],
    "promptsrc/base2new_test.sh": ["dtd", "1"],
    "promptsrc/few_shot.sh": ["dtd", "4"],
    "promptsrc/reproduce_base2novel_setting.sh": ["dtd", "1", W],
    "promptsrc/reproduce_few_shot.sh": ["dtd", "4", W],
    "promptsrc/reproduce_xd.sh": ["dtd", "1", W],
    "promptsrc/xd_train.sh": ["1"],
    "promptsrc/xd_test.sh": ["dtd", "1"],
    "protocols/base2new_train.sh": ["CoOp", "vit_b16", "dtd", "1"],
    "protocols/base2new_test.sh": ["CoOp", "vit_b16", "dtd", "1", "base"],
    "protocols/few_shot.sh": ["CoOp", "vit_b16", "dtd", "4", "1"],
    "protocols/multitask.sh": ["UPT", "vit_b16", "4", "5", "1"],
    "protocols/multitask_average.sh": ["UPT", "vit_b16", "4", "5"],
    "protocols/transfer.sh": ["UPT", "vit_b16", "4", "5", "1", "Caltech101"],
    "protocols/reproduce_base2new.sh": ["CoOp", "vit_b16", "dtd", "1", W],
    "protocols/reproduce_xd.sh": ["CoOp", "vit_b16", "dtd", "1", W],
    "protocols/xd_train.sh": ["CoOp", "vit_b16", "imagenet", "1"],
    "protocols/xd_test.sh": ["CoOp", "vit_b16", "dtd", "1"],
    "protocols/zeroshot.sh": ["ZeroshotCLIP", "vit_b16", "dtd"],
    "tcp/base2new_train.sh": ["dtd"],
    "tcp/base2new_test.sh": ["dtd"],
    "vpt/base2new_train_vpt.sh": ["dtd", "1"],
    "vpt/base2new_test_vpt.sh": ["dtd", "1"],
    "vpt/reproduce_vpt.sh": ["dtd", "1", W],
    "vpt/xd_train_vpt.sh": ["1"],
    "vpt/xd_test_vpt.sh": ["dtd", "1"],
    "zsclip/zeroshot.sh": ["dtd", "vit_b16"],
    "zsclip/base2new_zeroshot.sh": ["dtd"],
}


def test_every_script_is_dry_run_here() -> None:
    scripts = {str(p.relative_to(REPO / "scripts")) for p in (REPO / "scripts").rglob("*.sh")}
    assert scripts - NOT_RUN_ALONE == set(RUNS), "add the new script to RUNS"


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """A repository with our scripts and configs and a train.py that marks any run."""
    root = tmp_path_factory.mktemp("dry") / "repo"
    shutil.copytree(REPO / "scripts", root / "scripts",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs", root / "configs")
    (root / "datasets").mkdir()
    shutil.copy(REPO / "datasets" / "elevater_classnames.json", root / "datasets")
    (root / "train.py").write_text(TRAIN_MARK)
    (root / "scripts" / "avg_ckpt.py").write_text(TRAIN_MARK)
    (root.parent / "weights").mkdir()
    return root


@pytest.mark.parametrize("script", sorted(RUNS))
def test_dry_run_prints_and_runs_nothing(copy: Path, script: str) -> None:
    weights = str(copy.parent / "weights")
    args = [weights if a == W else a for a in RUNS[script]]
    env = {k: v for k, v in os.environ.items()
           if k not in ("EXTRA_OPTS", "MODEL_DIR", "CFG", "OUTPUT", "SHOTS", "TASKS")}
    bin_dir = copy.parent / "bin"  # `python` of the demos: this interpreter
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python").exists():
        (bin_dir / "python").symlink_to(sys.executable)
    env.update({"DRY_RUN": "1", "DATA": str(copy.parent / "absent"), "PYTHON": sys.executable,
                "SEEDS": "1", "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"})
    result = subprocess.run(["bash", f"scripts/{script}", *args], cwd=copy, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line[2:]) for line in result.stdout.splitlines()
                if line.startswith("+ ")]
    ran = {Path(word).name for command in commands for word in command[1:2]}
    wanted = "avg_ckpt.py" if script in AVERAGING else "train.py"
    assert ran == {wanted}, result.stdout
    assert not (copy / "RAN").exists() and not (copy / "scripts" / "RAN").exists()
    assert not (copy / "output").exists() and not (copy.parent / "absent").exists()
