"""A repository with our scripts and a stand-in train.py, for the protocol tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Records its command line, writes a checkpoint (training) and a log with a result.
FAKE_TRAIN = r'''
import json, re, sys
from pathlib import Path

args = sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1] if flag in args else None
out = Path(value("--output-dir"))
out.mkdir(parents=True, exist_ok=True)
calls = out / "calls.json"
history = json.loads(calls.read_text()) if calls.exists() else []
calls.write_text(json.dumps(history + [args]))
epoch = None
for i, a in enumerate(args):
    if a == "OPTIM.MAX_EPOCH":
        epoch = args[i + 1]
if epoch is None:
    epoch = re.search(r"MAX_EPOCH: (\d+)", Path(value("--config-file")).read_text()).group(1)
if "--eval-only" not in args:
    (out / "prompt_learner").mkdir(exist_ok=True)
    (out / "prompt_learner" / f"model.pth.tar-{epoch}").write_text("weights")
    text = "Finish training\n"
else:
    text = ""
(out / "log.txt").write_text(text + "=> result\n* accuracy: 70.00%\n* error: 30.00%\n")
'''

CONFIGS = {
    "MaPLe/vit_b16_c2_ep5_batch4_2ctx": 5,
    "MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets": 2,
    "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1": 10,
    "PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot": 50,
    "CoOp/vit_b16": 10,
    "CoOp/rn50_ep50": 50,
}


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A repository with our scripts, a stand-in train.py and a few configs."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", root / "scripts",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "train.py").write_text(FAKE_TRAIN)
    for name, epochs in CONFIGS.items():
        path = root / "configs" / "trainers" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"OPTIM:\n  NAME: sgd\n  MAX_EPOCH: {epochs}\nTRAIN:\n  PRINT_FREQ: 5\n")
    for dataset in ("dtd", "eurosat", "imagenet", "imagenet_a"):
        path = root / "configs" / "datasets" / f"{dataset}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"DATASET:\n  NAME: {dataset}\n")
    (tmp_path / "data").mkdir()
    return root
