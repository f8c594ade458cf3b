"""The demo: every trainer's demo config trains on the tiny CLIP as it is, and every documented
demo command (README.md, RUN.md, scripts/common.sh) runs.

The documented commands run for real in bash (scripts, sweep, tables) with ``python train.py``
recorded by a stand-in that writes a result; the recorded train.py commands are then run
in-process (tiny CLIP, one epoch on one image per class), so each is a real training or
evaluation."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import datasets  # noqa: F401  (registration)
import train
import trainers  # noqa: F401  (registration)
from engine.trainer import build_trainer

REPO = Path(__file__).resolve().parents[2]
ZERO_SHOT = ("ZeroshotCLIP", "ZeroshotCLIP2")
TRAINERS = ("CoOp", "CoCoOp", "VPT", "IVLP", "MaPLe", "PromptSRC")


def demo_config(trainer: str) -> str:
    folder = "CoOp" if trainer in ZERO_SHOT else trainer
    return f"configs/trainers/{folder}/demo_tiny.yaml"


# demos that start from another run's result (PromptKD's teacher: scripts/promptkd/demo.sh;
# its config trains in tests/trainers/test_promptkd.py)
AFTER_ANOTHER_RUN = ("PromptKD",)


def demo_trainers() -> list[str]:
    """The trainers above and any other with a demo config."""
    found = sorted(p.parent.name for p in (REPO / "configs" / "trainers").glob("*/demo_tiny.yaml"))
    return [*ZERO_SHOT, *TRAINERS,
            *(t for t in found if t not in TRAINERS and t not in AFTER_ANOTHER_RUN)]


def test_every_trainer_has_a_demo_config():
    for trainer in (*ZERO_SHOT, *TRAINERS):
        assert (REPO / demo_config(trainer)).is_file(), trainer


@pytest.mark.parametrize("trainer", demo_trainers())
def test_demo_config_trains_on_the_tiny_clip_as_it_is(trainer, demo_root, tmp_path,
                                                      monkeypatch):
    monkeypatch.chdir(REPO)
    args = train.build_parser().parse_args([
        "--root", str(demo_root), "--trainer", trainer, "--seed", "1", "--output-dir",
        str(tmp_path), "--dataset-config-file", "configs/datasets/demo.yaml",
        "--config-file", demo_config(trainer)])
    t = build_trainer(train.setup_cfg(args))  # no override: the config as users run it
    batch = next(iter(t.train_loader_x))
    if trainer not in ZERO_SHOT:
        learner = t.model.prompt_learner
        before = {k: v.clone() for k, v in learner.state_dict().items()}
        t.set_model_mode("train")
        t.epoch, t.batch_idx, t.num_batches = 0, 0, len(t.train_loader_x)
        for _ in range(2):
            summary = t.forward_backward(batch)
            assert all(torch.isfinite(torch.tensor(v)) for v in summary.values())
        changed = [k for k, v in learner.state_dict().items() if not torch.equal(v, before[k])]
        assert changed, "the prompts did not move"
    t.set_model_mode("eval")
    images = batch["img"][0] if isinstance(batch["img"], list) else batch["img"]  # K views
    with torch.no_grad():
        logits = t.model_inference(images)
    classes = 4 if t.cfg.DATASET.SUBSAMPLE_CLASSES == "base" else 8  # DePT's demos: base
    assert logits.shape == (len(images), classes) and torch.isfinite(logits).all()


# --------------------------------------------------------------------------- documented commands

RECORDER = r'''#!{python}
"""python: records 'python train.py ...' and writes its result; runs anything else."""
import json, os, re, sys
from pathlib import Path

args = sys.argv[1:]
if not args or not args[0].endswith("train.py"):
    os.execv({python!r}, [{python!r}, *args])
with open(os.environ["TRAIN_CALLS"], "a") as f:
    f.write(json.dumps({{"cwd": os.getcwd(), "args": args[1:]}}) + "\n")
out = Path(args[args.index("--output-dir") + 1])
out.mkdir(parents=True, exist_ok=True)
epochs = [args[i + 1] for i, a in enumerate(args) if a == "OPTIM.MAX_EPOCH"]
config = Path(args[args.index("--config-file") + 1]).read_text()
epoch = epochs[-1] if epochs else re.search(r"MAX_EPOCH: (\d+)", config).group(1)
text = "=> result\n* accuracy: 50.00%\n"
if "--eval-only" not in args:
    (out / "prompt_learner").mkdir(exist_ok=True)
    (out / "prompt_learner" / f"model.pth.tar-{{epoch}}").write_text("weights")
    text = "Finish training\n" + text
(out / "log.txt").write_text(text)
'''


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.DOTALL)


def documented_commands() -> list[str]:
    """The demo commands of README.md, RUN.md and scripts/common.sh, as shell scripts."""
    commands = []
    for block in code_blocks((REPO / "README.md").read_text()):
        for line in block.splitlines():
            commands += [part.split("#")[0].strip() for part in line.split("&&")
                         if "scripts/demo.sh" in part]
    commands += [block for block in code_blocks((REPO / "RUN.md").read_text())
                 if "demo" in block and "sweep.py" in block]
    common = (REPO / "scripts" / "common.sh").read_text()
    commands += re.findall(r"^#\s+(DATA=\S+ .*bash scripts/\S+\.sh .*)$", common, re.MULTILINE)
    (extra,) = re.findall(r"e\.g\. (EXTRA_OPTS='[^']*')", common)
    commands.append(f"DATA=data {extra} bash scripts/coop/base2new_train.sh demo 1")
    return commands


def replay(call: dict) -> bool:
    """One recorded train.py command, run in-process; trainings get one epoch on one image
    per class (appended overrides: the command's own settings are all used). A command on a
    backbone that needs downloaded weights is only parsed and its config built; returns
    whether it ran."""
    args = call["args"]
    if "--eval-only" not in args:
        args = [*args, "DATASET.NUM_SHOTS", "1"]
        if "OPTIM.MAX_EPOCH" not in args:
            args += ["OPTIM.MAX_EPOCH", "1"]
    os.chdir(call["cwd"])
    parsed = train.build_parser().parse_args(args)
    if train.setup_cfg(parsed).MODEL.BACKBONE.NAME not in ("tiny", "tiny-demo"):  # no download
        return False
    train.main(parsed)
    log = Path(args[args.index("--output-dir") + 1]) / "log.txt"
    assert "* accuracy: " in log.read_text().split("=> result")[-1], args
    return True


def distinct(calls: list[dict]) -> list[dict]:
    """One call per command up to its seed and folders (the seeds of a sweep run alike)."""
    seen, kept = set(), []
    for call in calls:
        args = call["args"]
        key = tuple(a for i, a in enumerate(args) if i == 0 or args[i - 1] not in
                    ("--seed", "--output-dir", "--model-dir"))
        if key not in seen:
            seen.add(key)
            kept.append(call)
    return kept


@pytest.mark.slow
def test_documented_demo_commands_run(demo_root, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", repo / "scripts",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "configs").symlink_to(REPO / "configs")
    (repo / "train.py").symlink_to(REPO / "train.py")
    for data in ("data", "demo_data"):  # the documented data folders, demo already generated
        shutil.copytree(demo_root / "demo", repo / data / "demo")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(RECORDER.format(python=sys.executable))
    (bin_dir / "python").chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    # "python" is the recorder; the sweep hands its jobs PYTHON, else its own interpreter
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHON": str(bin_dir / "python"), "TRAIN_CALLS": str(calls),
           "PYTHONPATH": str(REPO)}
    for name in ("DATA", "OUT", "OUTPUT", "EXTRA_OPTS", "CFG", "TRAINER", "LOADEP", "MODEL_DIR",
                 "CUDA_VISIBLE_DEVICES"):
        env.pop(name, None)

    commands = documented_commands()
    assert any("TRAINER=" in c for c in commands) and any("sweep.py" in c for c in commands)
    for command in commands:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert (repo / "output" / "demo_sweep" / "tables" / "results.md").is_file()

    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    monkeypatch.chdir(repo)  # restored after the test; replay changes directory
    ran = [replay(call) for call in distinct(recorded)]
    assert ran.count(False) == 1  # the EXTRA_OPTS example on CoOp's ViT-B/16 config
