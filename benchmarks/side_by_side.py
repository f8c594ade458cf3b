"""Our training step next to the official code's, on the same weights and batch, in turns.

    python -m benchmarks.side_by_side --method mma --official <MMA work tree> \
        --dassl <Dassl work tree> --rounds 3 --out side.json

MMA (MultiModalAdapter; adapters on block 2, the official blocks 5-12 capped there) at the
CPU scale of
benchmarks.run (ViT-B/16 narrowed 4x, 2 layers), fp32, the official batch, 10 ImageNet class
names. The same random CLIP is written to a file for the official side
(tools/parity/baseline_step.py runs the official trainer from the outside); each round runs the
official step and ours in two fresh processes, one after the other, so both see the same
machine load; each reports the median of ``--repeat`` steps after a warm-up and its peak
resident set size before and after the steps (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10
TRAINERS = {"mma": "MultiModalAdapter"}  # the official steps of tools/parity/baseline_step.py


def settings(method: str) -> tuple[int, list[str]]:
    """(our batch, the official step's arguments that place its parts as ours at the CPU
    scale)."""
    from benchmarks.workload import CPU, trainer_config

    cfg = trainer_config(TRAINERS[method], CPU, "fp32")
    node = cfg.TRAINER.MMADAPTER
    return cfg.DATALOADER.TRAIN_X.BATCH_SIZE, ["--start", str(node.ADAPTER_START),
                                               "--end", str(node.ADAPTER_END)]


def ours(method: str, repeat: int, threads: int) -> dict:
    """Our step at the CPU scale (benchmarks.measure's step), timed like the official."""
    from benchmarks import measure
    from benchmarks.workload import CPU, class_names, trainer_config

    torch.set_num_threads(threads)
    name = TRAINERS[method]
    batch, _ = settings(method)
    run = measure.build_trainer(name, trainer_config(name, CPU, "fp32"), CPU.build_clip(),
                                class_names(CLASSES), torch.device("cpu"))
    image = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    label = torch.randint(CLASSES, (batch,), generator=torch.Generator().manual_seed(2))
    run.model.train()
    run.model.clip.eval()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for step in range(1 + repeat):
        start = time.perf_counter()
        measure.train_step(run, image, label)
        if step:
            times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"side": "ours", "step_s": statistics.median(times), "steps": times,
            "peak_rss_mib_before": before / 1024, "peak_rss_mib": after / 1024,
            "trained": sum(p.numel() for p in run.method.trained_parameters())}


def _last_json(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def compare(args: argparse.Namespace) -> dict:
    from benchmarks.workload import CPU, class_names

    folder = Path(tempfile.mkdtemp(prefix="side-by-side-"))
    weights, names = folder / "clip.pt", folder / "names.json"
    torch.save(CPU.build_clip().state_dict(), weights)
    names.write_text(json.dumps(class_names(CLASSES)))
    batch, placement = settings(args.method)
    official = [sys.executable, str(ROOT / "tools" / "parity" / "baseline_step.py"),
                "--method", args.method, "--official", str(args.official),
                "--dassl", str(args.dassl), "--weights", str(weights), "--names", str(names),
                "--batch", str(batch), *placement,
                "--repeat", str(args.repeat), "--threads", str(args.threads)]
    mine = [sys.executable, "-m", "benchmarks.side_by_side", "--ours", "--method", args.method,
            "--repeat", str(args.repeat), "--threads", str(args.threads)]
    runs: list[dict] = []
    for number in range(args.rounds):
        for side, command in (("official", official), ("ours", mine)):
            load = os.getloadavg()[0]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{side} step failed:\n{done.stderr[-3000:]}")
            runs.append({**_last_json(done.stdout), "round": number, "load_1min": load})
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for side in ("official", "ours"):
        mine_runs = [r for r in runs if r["side"] == side]
        summary[side] = {
            "step_s_median": statistics.median(r["step_s"] for r in mine_runs),
            "peak_rss_mib_median": statistics.median(r["peak_rss_mib"] for r in mine_runs),
            "step_rss_growth_mib_median": statistics.median(
                r["peak_rss_mib"] - r["peak_rss_mib_before"] for r in mine_runs),
            "trained": mine_runs[0]["trained"]}
    return {"command": f"python -m benchmarks.side_by_side --method {args.method} --official "
                       f"<{args.method.upper()}> --dassl <Dassl> --rounds {args.rounds} "
                       f"--repeat {args.repeat} --threads {args.threads}",
            "method": TRAINERS[args.method], "scale": "cpu", "classes": CLASSES, "batch": batch,
            "official_placement": placement, "precision": "fp32", "threads": args.threads,
            "summary": summary, "runs": runs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", action="store_true", help="(internal) time our step only")
    parser.add_argument("--method", choices=sorted(TRAINERS), default="mma")
    parser.add_argument("--official", type=Path, help="the official repository's work tree")
    parser.add_argument("--dassl", type=Path, help="the Dassl.pytorch work tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.ours:
        print(json.dumps(ours(args.method, args.repeat, args.threads)))
        return
    if args.official is None or args.dassl is None:
        parser.error("--official and --dassl name the official and Dassl work trees")
    result = compare(args)
    print(json.dumps(result["summary"], indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
