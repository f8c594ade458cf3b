"""Average the learned tensors of several runs into a new checkpoint directory.

MVLPT's source prompts are trained with several seeds and averaged before they initialise the
target tasks (the official ``scripts/avg_ckpt.py``, whose paths are written in the file)::

    python scripts/avg_ckpt.py --output OUT RUN_DIR [RUN_DIR ...] [--load-epoch N]

Each ``RUN_DIR`` is a training's output folder (``RUN_DIR/<model>/model-best.pth.tar``, or
``model.pth.tar-N`` with ``--load-epoch``). For every model folder they share, ``OUT/<model>/``
receives ``model-best.pth.tar`` and ``model.pth.tar-<epoch>`` holding the element-wise mean of
every floating-point tensor of ``state_dict`` (``epoch``: the mean epoch, rounded down, as the
official script; ``val_result``: the mean). ``OUT`` then serves as ``--model-dir``. The runs
must hold the same tensors with the same shapes; an error names the first that does not.
Official checkpoint files are read too (safely, see engine/checkpoint.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

logger = logging.getLogger("avg_ckpt")


def model_names(run_dir: str, model_file: str) -> list[str]:
    """The model folders of ``run_dir`` that hold ``model_file``."""
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir} is not a directory (give training output folders)")
    return sorted(name for name in os.listdir(run_dir)
                  if os.path.isfile(os.path.join(run_dir, name, model_file)))


def average_state_dicts(states: list[dict], sources: list[str]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point tensors; other tensors must be equal everywhere."""
    first, out = states[0], {}
    for state, source in zip(states[1:], sources[1:], strict=True):
        if sorted(state) != sorted(first):
            extra = sorted(set(state) ^ set(first))
            raise ValueError(f"{source} and {sources[0]} hold different tensors (e.g. "
                             f"{extra[:3]}): were they trained with the same settings?")
    for key, value in first.items():
        values = [state[key] for state in states]
        for other, source in zip(values[1:], sources[1:], strict=True):
            if other.shape != value.shape:
                raise ValueError(f"{key} is {list(other.shape)} in {source} but "
                                 f"{list(value.shape)} in {sources[0]}")
        if value.is_floating_point():
            out[key] = torch.stack([v.float() for v in values]).mean(dim=0).to(value.dtype)
        elif all(torch.equal(v, value) for v in values[1:]):
            out[key] = value.clone()
        else:
            raise ValueError(f"{key} is not a floating-point tensor and differs between runs")
    return out


def average_runs(run_dirs: list[str], output: str, epoch: int | None = None) -> list[str]:
    """Write the average of ``run_dirs`` to ``output``; returns the files written."""
    if len(run_dirs) < 2:
        raise ValueError("give at least two runs to average")
    if any(os.path.abspath(output) == os.path.abspath(d) for d in run_dirs):
        raise ValueError(f"--output {output} is one of the runs; write the average elsewhere")
    model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
    names = model_names(run_dirs[0], model_file)
    if not names:
        raise FileNotFoundError(f"{run_dirs[0]} holds no <model>/{model_file}; did the run "
                                "finish? (--load-epoch N picks model.pth.tar-N)")
    written = []
    for name in names:
        paths = [os.path.join(d, name, model_file) for d in run_dirs]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"no {missing[0]}: every run must hold {name}/{model_file}")
        checkpoints = [load_checkpoint(p) for p in paths]
        state = average_state_dicts([c["state_dict"] for c in checkpoints], paths)
        epochs = [int(c.get("epoch") or 0) for c in checkpoints]
        results = [c["val_result"] for c in checkpoints
                   if isinstance(c.get("val_result"), (int, float))]
        averaged = {"state_dict": state, "epoch": sum(epochs) // len(epochs),
                    "val_result": sum(results) / len(results) if results else None,
                    "averaged_from": paths}
        written.append(save_checkpoint(averaged, os.path.join(output, name), is_best=True))
        logger.info("Averaged %d runs of %s (%d tensors) into %s", len(paths), name, len(state),
                    os.path.join(output, name))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="training output folders (one per seed)")
    parser.add_argument("--output", required=True, help="folder for the averaged checkpoint")
    parser.add_argument("--load-epoch", type=int, default=None,
                        help="average model.pth.tar-N instead of model-best.pth.tar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        average_runs(args.runs, args.output, args.load_epoch)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
