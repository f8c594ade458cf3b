"""Hooks for the train.py runs of the sweep tests (ENGINE_IMPORTS=tests.protocols.train_hooks).

- ``SWEEP_TEST_GATE=FILE:EPOCH:BATCH``: before that step (0-based), while FILE exists, the
  training waits there (it writes ``FILE.reached`` first), so a test can preempt it mid-epoch.
- ``SWEEP_TEST_RECORD=DIR``: every training step appends the epoch and the images of its batch
  to ``DIR/rank<RANK>.jsonl``; the demo dataset's preparation writes when it started and ended
  and whether it found the dataset there to ``DIR/prepare<RANK>.json``.

Neither changes what is computed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import datasets.demo
from trainers.base import PromptTrainer

_forward_backward = PromptTrainer.forward_backward
_generate = datasets.demo.generate


def _gate(trainer: PromptTrainer) -> None:
    path, epoch, batch = os.environ["SWEEP_TEST_GATE"].rsplit(":", 2)
    if (trainer.epoch, trainer.batch_idx) != (int(epoch), int(batch)):
        return
    gate = Path(path)
    if gate.exists():
        Path(f"{path}.reached").write_text(str(os.getpid()))
    while gate.exists():
        time.sleep(0.02)


def _record(trainer: PromptTrainer, batch: dict) -> None:
    folder = Path(os.environ["SWEEP_TEST_RECORD"])
    with open(folder / f"rank{os.environ.get('RANK', '0')}.jsonl", "a") as f:
        f.write(json.dumps({"epoch": trainer.epoch, "images": list(batch["impath"])}) + "\n")


def forward_backward(self: PromptTrainer, batch: dict) -> dict[str, float]:
    if "SWEEP_TEST_GATE" in os.environ:
        _gate(self)
    if "SWEEP_TEST_RECORD" in os.environ:
        _record(self, batch)
    return _forward_backward(self, batch)


def generate(root, seed: int = 0):
    if "SWEEP_TEST_RECORD" not in os.environ:
        return _generate(root, seed)
    found = (Path(root) / "demo" / datasets.demo.SPLIT_FILE).exists()
    start = time.time()
    folder = _generate(root, seed)
    record = {"start": start, "end": time.time(), "found": found}
    path = Path(os.environ["SWEEP_TEST_RECORD"]) / f"prepare{os.environ.get('RANK', '0')}.json"
    path.write_text(json.dumps(record))
    return folder


PromptTrainer.forward_backward = forward_backward
datasets.demo.generate = generate
