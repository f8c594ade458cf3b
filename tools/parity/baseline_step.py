"""Time an official training step of a 2024 baseline, run from the outside, on given CLIP weights
(benchmarks/side_by_side.py compares it with ours).

The official trainer is built by its own code on the CLIP state dict of ``--weights``
(OpenAI's key layout; the official ``clip.build_model`` reads its sizes from it), fp32, for the
class names of ``--names``, and its ``forward_backward`` (forward, loss, backward, SGD step) is
timed on seeded random images, ``--repeat`` steps after one warm-up:

* ``--method mma``: ``MultiModalAdapter`` (ZjjConan/Multi-Modal-Adapter) with the config of
  ``run_examples.sh`` (``vit_b16_ep5``), adapters on blocks ``--start``..``--end``.

(TCP's official class-aware token generator reshapes its output to width 512, ViT-B/16's: it
does not run on the narrowed CPU-scale CLIP.)

Prints one JSON line: the median step and the peak resident set size before and after.

    python tools/parity/baseline_step.py --method mma --official <MMA> --dassl <Dassl> \
        --weights clip.pt --names names.json --batch 16 --start 2 --end 2 --repeat 3
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import statistics
import time
from pathlib import Path

import harness as H
import torch
from official_cfg import load_train_module, official_cfg

STUBS = {"wilds": {"get_dataset": None}, "plotnine": {}}


def build_mma(args, train, state, names):
    module = importlib.import_module("trainers.mmadapter")  # the official package, not ours
    module.load_clip_to_cpu = H.clip_loader(importlib.import_module("clip.clip"), state)
    code = args.official.resolve()
    opts = ["TRAINER.MMADAPTER.PREC", "fp32", "TRAINER.MMADAPTER.ADAPTER_START", args.start,
            "TRAINER.MMADAPTER.ADAPTER_END", args.end]
    cfg = official_cfg(train, opts, trainer="MultiModalAdapter",
                       config_file=str(code / "configs/trainers/MultiModalAdapter/"
                                              "vit_b16_ep5.yaml"),
                       dataset_config_file=str(code / "configs/datasets/caltech101.yaml"))
    return H.build_trainer(module.MultiModalAdapter, cfg, H.fake_data_manager(names))


BUILDERS = {"mma": build_mma}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=sorted(BUILDERS), default="mma")
    parser.add_argument("--official", type=Path, required=True)
    parser.add_argument("--dassl", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--names", type=Path, required=True, help="JSON list of class names")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--start", type=int, default=5)
    parser.add_argument("--end", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    H.use_official(args.official.resolve(), args.dassl.resolve(), STUBS)
    train = load_train_module(args.official.resolve())
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    names = json.loads(args.names.read_text())
    trainer = BUILDERS[args.method](args, train, state, names)
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=generator)
    label = torch.randint(len(names), (args.batch,), generator=torch.Generator().manual_seed(2))
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 2  # no scheduler step
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for step in range(1 + args.repeat):
        start = time.perf_counter()
        trainer.forward_backward({"img": image, "label": label})
        if step:
            times.append(time.perf_counter() - start)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trained = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    print(json.dumps({"side": "official", "step_s": statistics.median(times), "steps": times,
                      "peak_rss_mib_before": rss_before / 1024,
                      "peak_rss_mib": rss_after / 1024, "trained": trained}))


if __name__ == "__main__":
    main()
