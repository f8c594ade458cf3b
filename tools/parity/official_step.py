"""Time the official MVLPT training step, run from the outside (benchmarks/shared.py compares).

The official trainer (sIncerass/MVLPT ``trainers/mvlpt.py`` on Dassl.pytorch) is built by its
own code with its scripts' settings (``--cut-contextlen``: prompts cut to the longest one; fp32;
class name in the middle) on the parity recipe's random ViT-B/16 (the weights our side loads
too), for the class names in ``--names`` (a JSON list), and its ``forward_backward`` is timed
on random images, ``--repeat`` steps after one warm-up. Prints one JSON line.

    python tools/parity/official_step.py --official <MVLPT> --dassl <Dassl> \
        --names names.json --variant MCoOp --batch 4 --repeat 2
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
from mvlpt_extra import ELEVATER_STUBS, STUBS
from official_cfg import load_train_module, official_cfg

VARIANTS = {
    "MCoOp": ["TRAINER.MVLPT.COOP.N_CTX", "16", "TRAINER.MVLPT.VPT.N_CTX", "0"],
    "MUPT": ["TRAINER.MVLPT.COOP.N_CTX", "4", "TRAINER.MVLPT.VPT.N_CTX", "4"],
}
OPTS = ["TRAINER.MVLPT.PREC", "fp32", "TRAINER.MVLPT.COOP.CLASS_TOKEN_POSITION", "middle",
        "TRAINER.MVLPT.COOP.CSC", "False"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True)
    parser.add_argument("--dassl", type=Path, required=True)
    parser.add_argument("--names", type=Path, required=True)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="MCoOp")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    H.use_official(args.official.resolve(), args.dassl.resolve(), STUBS)
    for name, attrs in ELEVATER_STUBS.items():
        H.stub_submodule(name, attrs)
    train = load_train_module(args.official.resolve())
    mvlpt = importlib.import_module("trainers.mvlpt")  # the official packages, not ours
    official_clip = importlib.import_module("clip.clip")
    mvlpt.load_clip_to_cpu = H.clip_loader(official_clip, H.load_recipe().clip_state_dict())
    names = json.loads(args.names.read_text())
    cfg = official_cfg(train, VARIANTS[args.variant] + OPTS,
                       config_file=str(args.official / "configs/trainers/MVLPT/vit_b16.yaml"),
                       trainer="MVLPT", dataset="ImageNet", multi_task=True,
                       dataset_coop=True, multi_task_label_pertask=False, cut_contextlen=True,
                       act_ckpt=1, multi_task_evalkey="average", shots=None)
    dm = H.fake_data_manager(names, _num_classes=len(names), _task_names=["ImageNet"],
                             _labelmap={"ImageNet": names}, _id2task={0: "ImageNet"})

    def multitask_flags(trainer) -> None:
        trainer.multi_task = trainer.cfg.DATASET.MULTITASK
        trainer.multi_task_label_pertask = trainer.cfg.DATASET.MULTITASK_LABEL_PERTASK

    trainer = H.build_trainer(mvlpt.MVLPT, cfg, dm, multitask_flags)
    trainer.set_model_mode("train")
    image = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    label = torch.randint(len(names), (args.batch,), generator=torch.Generator().manual_seed(2))
    batch = {"img": image, "label": label, "domain": torch.zeros(args.batch, dtype=torch.long)}
    trainer.batch_idx, trainer.num_batches = 0, 2
    times, cpu = [], []  # wall and process CPU seconds (the latter less load-dependent)
    for step in range(args.repeat + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        trainer.forward_backward(batch)
        if step:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    print(json.dumps({"official": "sIncerass/MVLPT", "variant": args.variant,
                      "classes": len(names), "batch": args.batch, "cut_contextlen": True,
                      "context_length": int(trainer.model.prompt_learner.tokenized_prompts
                                            .shape[1]),
                      "step_s": statistics.median(times), "steps": times,
                      "step_cpu_s": statistics.median(cpu),
                      "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    main()
