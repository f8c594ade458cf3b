"""Speed and memory of every trainer, with the optimisations on and off, in one run.

    python -m benchmarks.run --out benchmark.json          # full ViT-B/16 on a GPU
    python -m benchmarks.run --scale cpu --out cpu.json    # scaled down to finish on a CPU
    python -m benchmarks.run --tiny --out tiny.json        # smoke test, seconds

For each trainer: the training step (forward, backward, optimizer step of the learner) at the
official batch size for each class count, the evaluation throughput at the official test batch
size, the peak memory of each, the same with the optimisations off (77-token text sequences,
``nn.MultiheadAttention``'s path, class text features recomputed for every test batch), and the
largest difference between the logits of the two. On CUDA every figure is taken for each
precision (the official fp16, amp and bf16); the logits are compared in fp32.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import measure, report  # noqa: E402
from benchmarks.workload import (  # noqa: E402
    CONFIGS,
    SCALES,
    TRAINERS,
    Scale,
    batch_sizes,
    class_names,
    device_copy,
    trainer_config,
)
from engine.precision import Precision  # noqa: E402

logger = logging.getLogger("benchmarks")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["auto", *SCALES], default="auto",
                        help="model and workload sizes (auto: full on CUDA, cpu otherwise)")
    parser.add_argument("--tiny", action="store_true", help="same as --scale tiny")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if "
                        "available)")
    parser.add_argument("--trainers", default=",".join(TRAINERS),
                        help="comma-separated trainer names (default: all available)")
    parser.add_argument("--classes", default=None,
                        help="comma-separated class counts for training steps")
    parser.add_argument("--eval-classes", type=int, default=None)
    parser.add_argument("--precisions", default=None,
                        help="comma-separated: fp32, fp16, amp, bf16 (default: fp16,amp,bf16 "
                        "on CUDA, fp32 on CPU)")
    parser.add_argument("--repeat", type=int, default=None, help="timed steps per figure")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    parser.add_argument("--min-seconds", type=float, default=None,
                        help="more timed steps (up to 100) until each mode ran this long")
    parser.add_argument("--modes", default="on,off,cut",
                        help="comma-separated: on (every optimisation), off (what the official "
                        "code computes), cut (prompts cut, not grouped; largest class count "
                        "only); default all three")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation figures")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def choose_scale(args: argparse.Namespace, device: torch.device) -> Scale:
    name = "tiny" if args.tiny else args.scale
    if name == "auto":
        name = "full" if device.type == "cuda" else "cpu"
    changes: dict = {}
    if args.classes:
        changes["train_classes"] = tuple(int(c) for c in args.classes.split(","))
    if args.eval_classes:
        changes["eval_classes"] = args.eval_classes
    if args.repeat:
        changes["repeat"] = args.repeat
    if args.warmup is not None:
        changes["warmup"] = args.warmup
    if args.min_seconds is not None:
        changes["min_seconds"] = args.min_seconds
    scale = dataclasses.replace(SCALES[name], **changes)
    return scale


def available_trainers(requested: str) -> list[str]:
    import trainers  # noqa: F401  (registration)
    from engine import TRAINER_REGISTRY

    names = [n.strip() for n in requested.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRAINERS]
    if unknown:
        raise SystemExit(f"unknown trainers {unknown}; choose from {list(TRAINERS)}")
    present = []
    for name in names:
        try:
            TRAINER_REGISTRY.get(name)
        except KeyError:
            logger.warning("trainer %s is not registered here; skipped", name)
            continue
        if not (CONFIGS / name / TRAINERS[name][0]).is_file():
            logger.warning("trainer %s has no official config %s here; skipped", name,
                           TRAINERS[name][0])
            continue
        present.append(name)
    return present


def machine(device: torch.device) -> dict[str, str | int]:
    info: dict[str, str | int] = {
        "platform": platform.platform(), "processor": platform.processor() or "unknown",
        "cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(
            torch.cuda.get_device_properties(device).total_memory / 2 ** 30, 1)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor() or "unknown"
        info["cpu_cores"] = len(names) or "unknown"
    return info


def run_trainer(name: str, scale: Scale, master, precision: str, device: torch.device,
                do_eval: bool, modes: tuple[str, ...] = ("on", "off", "cut")) -> list[dict]:
    """Every figure of one trainer at one precision."""
    cfg = trainer_config(name, scale, precision)
    clip_model = device_copy(master, device, Precision(precision, device).param_dtype)
    train_batch, test_batch = batch_sizes(cfg, scale, name)
    rows = []
    largest = max(scale.train_classes)
    for classes in scale.train_classes:
        here = [m for m in ("on", "off") if m in modes] + (
            ["cut"] if "cut" in modes and classes == largest and name != "VPT" else [])
        trainers = {mode: measure.build_trainer(name, cfg, clip_model, class_names(classes),
                                                device, scale) for mode in here}
        figures = measure.time_training(trainers, train_batch, classes, scale.image_resolution,
                                        scale.warmup, scale.repeat, scale.min_seconds)
        rows += _rows(name, precision, "train", classes, train_batch, figures)
        del trainers
        _free(device)
    if do_eval:
        trainers = {mode: measure.build_trainer(name, cfg, clip_model,
                                                class_names(scale.eval_classes), device, scale)
                    for mode in ("on", "off") if mode in modes}
        figures = measure.time_evaluation(trainers, test_batch, scale.image_resolution,
                                          scale.eval_batches, scale.min_seconds)
        rows += _rows(name, precision, "eval", scale.eval_classes, test_batch, figures)
        del trainers
        _free(device)
    return rows


def _rows(name: str, precision: str, kind: str, classes: int, batch: int,
          figures: dict[str, dict]) -> list[dict]:
    rows = [{"trainer": name, "precision": precision, "kind": kind, "classes": classes,
             "batch": batch, "mode": mode, **values} for mode, values in figures.items()]
    for row in rows:
        logger.info("%s", report.row_line(row))
    return rows


def check_logits(name: str, scale: Scale, master, device: torch.device) -> dict:
    """Logits with every optimisation on and off, fp32, at the evaluation class count."""
    cfg = trainer_config(name, scale, "fp32")
    trainer = measure.build_trainer(name, cfg, device_copy(master, device, torch.float32),
                                    class_names(scale.eval_classes), device, scale)
    figures = measure.logits_difference(trainer, 2, scale.image_resolution)
    return {"trainer": name, "classes": scale.eval_classes, **figures}


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet = logging.getLogger("trainers")  # the learners' set-up lines
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        return _run(parse_args(argv), argv)
    finally:
        quiet.setLevel(level)


def _run(args: argparse.Namespace, argv: list[str] | None) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    measure.release_memory_to_os()
    if args.threads:
        torch.set_num_threads(args.threads)
    scale = choose_scale(args, device)
    default_precisions = "fp16,amp,bf16" if device.type == "cuda" else "fp32"
    precisions = (args.precisions or default_precisions).split(",")
    names = available_trainers(args.trainers)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if not modes or set(modes) - {"on", "off", "cut"}:
        raise SystemExit(f"--modes {args.modes!r}: give a comma-separated list of on, off, cut")
    master = scale.build_clip()
    started = time.perf_counter()
    rows: list[dict] = []
    for precision in precisions:
        for name in names:
            rows += run_trainer(name, scale, master, precision, device, not args.no_eval,
                                modes)
    equality = [check_logits(name, scale, master, device) for name in names]
    result = {
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None
                                                           else argv),
        "machine": machine(device), "scale": scale.as_dict(), "scaled": scale.notes,
        "trainers": names, "precisions": precisions, "results": rows, "logits": equality,
        "seconds": round(time.perf_counter() - started, 1)}
    result["ratios"] = report.ratios(rows)
    result["targets"] = report.targets(result)
    text = report.render(result)
    sys.stdout.write(text + "\n")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
