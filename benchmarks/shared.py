"""What computing shared work once gives, at full ViT-B/16 size on the parity recipe's random
weights (the weights tools/parity/official_step.py gives the official code).

    python -m benchmarks.shared steps --classes 500 --out steps.json   # MVLPT training steps
    python -m benchmarks.shared cache --out cache.json                 # the feature cache

- ``steps``: MVLPT's MCoOp and MUPT training step (batch 4 by default) with the shared causal
  prefix (``on``) and without it (``unshared``: every other optimisation on), the modes taking
  turns step by step; the logits of both agree.
- ``cache``: per method of the CoOp family, the evaluation cost per test image from images
  (the image tower) and from the on-disk feature cache (reading one file), and the class side's
  cost per evaluation; from them a base-to-novel evaluation sweep on DTD (5 methods x 3 seeds x
  its base and new halves: 24 and 23 classes, 846 test images each) with and without the
  cache; and MVLPT's single-task training step (ELEVATER: no augmentation) from images and
  from cached features.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import measure  # noqa: E402
from benchmarks.mvlpt import build as build_mvlpt  # noqa: E402
from benchmarks.mvlpt import class_names  # noqa: E402
from clip.model import build_model, speedups  # noqa: E402

# method: (trainer, config of configs/trainers/<trainer>/; "": the defaults), base-to-novel's
METHODS = {"CoOp": ("CoOp", "vit_b16_ep50_ctxv1.yaml"),
           "CoCoOp": ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1.yaml"),
           "KgCoOp": ("KgCoOp", "vit_b16_ep100_ctxv1.yaml"),
           "ProGrad": ("ProGrad", ""),
           "DePT": ("ExtrasLinearProbeCoOp", "vit_b16_ep10_bs4_lr35.yaml")}
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "trainers"


def method_config(trainer: str, filename: str):
    import trainers  # noqa: F401  (registration)
    from engine import TRAINER_REGISTRY
    from engine.config import get_cfg_default

    cfg = get_cfg_default()
    if filename:
        cfg.merge_from_file(str(CONFIGS / trainer / filename))
    cfg.merge_from_list([f"TRAINER.{TRAINER_REGISTRY.get(trainer).config_node}.PREC", "fp32"])
    return cfg


def recipe_clip():
    from tests.parity.recipe import clip_state_dict

    return build_model(clip_state_dict()).requires_grad_(False)


def images(count: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def steps(classes: int, batch: int, repeat: int) -> list[dict]:
    names = class_names()[0][:classes]
    clip_model = recipe_clip()
    measure.MODES["unshared"] = {"shared_prefix": False}
    rows = []
    for variant in ("MCoOp", "MUPT"):
        trainers = {"on": build_mvlpt(variant, clip_model, names),
                    "unshared": build_mvlpt(variant, clip_model, names)}
        trainers["unshared"].model.prompt_learner.load_state_dict(
            trainers["on"].model.prompt_learner.state_dict())
        timing = measure.time_training(trainers, batch, classes, 224, 1, repeat)
        with torch.no_grad():
            model = trainers["on"].model.eval()
            on = model(images(2, seed=4))
            with speedups(shared_prefix=False):
                off = model(images(2, seed=4))
        row = {"variant": variant, "classes": classes, "batch": batch, **timing,
               "speedup": timing["unshared"]["step_s"] / timing["on"]["step_s"],
               "logits_max_abs_diff": (on - off).abs().max().item()}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dtd_halves() -> dict[str, list[str]]:
    """DTD's class names split as base-to-novel splits them: the first half (rounded up) base,
    the rest new."""
    names = json.loads((Path(__file__).resolve().parents[1] / "datasets"
                        / "elevater_classnames.json").read_text())["dtd"]
    half = (len(names) + 1) // 2
    return {"base": names[:half], "new": names[half:]}


def evaluation_batch(features: torch.Tensor, cfg, test_batch: bool) -> torch.Tensor:
    """The image features one evaluation batch holds: ``features`` as given, or with
    ``test_batch`` as many as the config's ``DATALOADER.TEST.BATCH_SIZE`` (CoCoOp's: 100),
    repeating ``features`` (the class side's cost does not depend on their values)."""
    if not test_batch:
        return features
    size = int(cfg.DATALOADER.TEST.BATCH_SIZE)
    if size < 1:
        raise ValueError(f"DATALOADER.TEST.BATCH_SIZE must be >= 1; got {size}")
    return features.repeat(-(-size // features.shape[0]), 1)[:size]


def cache_figures(test_images: int, batch: int, repeat: int, test_batch: bool = False) -> dict:
    """Per-image and per-evaluation costs, and the sweep and ELEVATER figures from them
    (``test_batch``: each method evaluated at its config's test batch size instead of
    ``batch``)."""
    from engine.feature_cache import FeatureCache
    from trainers.feature_cache import CachedImages

    clip_model = recipe_clip()
    x = images(batch)
    with torch.no_grad():
        image_s = _seconds(lambda: clip_model.encode_image(x), repeat) / batch
        features = clip_model.encode_image(x)
    with tempfile.TemporaryDirectory() as folder:  # reading the features of `batch` files
        paths = []
        for i in range(batch):
            paths.append(str(Path(folder) / f"{i}.jpg"))
            Path(paths[-1]).write_bytes(bytes([i]))
        cache = FeatureCache(Path(folder) / "cache")
        ctx = cache.context(backbone="ViT-B/16")
        for path, feature in zip(paths, features, strict=True):
            cache.put(ctx, path, feature)
        read_s = _seconds(lambda: [cache.get(ctx, p) for p in paths], repeat) / batch
    rows = {}
    halves = dtd_halves()
    for method, (trainer, filename) in METHODS.items():
        cfg = method_config(trainer, filename)
        for half, names in halves.items():
            run = measure.build_trainer(trainer, cfg, clip_model, names, torch.device("cpu"))
            model = run.method.model.eval()
            cached = CachedImages(evaluation_batch(features, cfg, test_batch))
            eval_batch = cached.shape[0]

            def evaluation(model=model, cached=cached) -> None:
                with torch.no_grad(), model.caching_text_features():
                    model(cached)  # the class side once (per image for CoCoOp), the logits

            per_eval = _seconds(evaluation, repeat)
            conditional = method == "CoCoOp"  # its class side runs for every image
            text_per_image = per_eval / eval_batch if conditional else 0.0
            text_per_eval = 0.0 if conditional else per_eval
            without = test_images * (image_s + text_per_image) + text_per_eval
            with_cache = test_images * (read_s + text_per_image) + text_per_eval
            rows[f"{method} {half}"] = {
                "classes": len(names), "eval_batch": eval_batch,
                "class_side_s_per_eval": text_per_eval,
                "class_side_s_per_image": text_per_image, "eval_s_without_cache": without,
                "eval_s_with_cache": with_cache}
            print(method, half, json.dumps(rows[f"{method} {half}"]), flush=True)
    seeds = 3
    sweep_without = sum(r["eval_s_without_cache"] for r in rows.values()) * seeds
    # with the cache: the first evaluation of each half computes the image features
    first = len(halves) * test_images * (image_s - read_s)
    sweep_with = sum(r["eval_s_with_cache"] for r in rows.values()) * seeds + first
    return {"dataset": "DTD", "classes": {h: len(n) for h, n in halves.items()},
            "test_images_per_evaluation": test_images,
            "image_tower_s_per_image": image_s, "cache_read_s_per_image": read_s,
            "methods": rows, "sweep_s_without_cache": sweep_without,
            "sweep_s_with_cache": sweep_with, "sweep_speedup": sweep_without / sweep_with,
            "elevater": elevater_step(clip_model, repeat)}


def elevater_step(clip_model, repeat: int, classes: int = 10, batch: int = 32) -> dict:
    """MVLPT MCoOp's single-task training step (ELEVATER: EuroSAT's 10 classes, batch 32) from
    images and from cached features: an epoch after the first runs the second."""
    from trainers.feature_cache import CachedImages

    names = class_names()[0][:classes]
    run = build_mvlpt("MCoOp", clip_model, names)
    x, label = images(batch), torch.arange(batch) % classes
    with torch.no_grad():
        cached = CachedImages(clip_model.encode_image(x))
    run.method.model.train()
    run.method.model.clip.eval()
    from_images = _seconds(lambda: measure.train_step(run, x, label), repeat)
    from_cache = _seconds(lambda: measure.train_step(run, cached, label), repeat)
    row = {"classes": classes, "batch": batch, "step_s_from_images": from_images,
           "step_s_from_cache": from_cache, "speedup": from_images / from_cache}
    print("ELEVATER", json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("steps", "cache"))
    parser.add_argument("--classes", type=int, default=500, help="steps: MVLPT's classes")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--test-images", type=int, default=846,
                        help="images per evaluation (DTD's test set halved: 846)")
    parser.add_argument("--test-batch", action="store_true",
                        help="cache: evaluate each method at its config's test batch size "
                             "(DATALOADER.TEST.BATCH_SIZE; CoCoOp's: 100) instead of --batch")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    if args.what == "steps":
        result = {"steps": steps(args.classes, args.batch, args.repeat)}
    else:
        result = cache_figures(args.test_images, args.batch, args.repeat, args.test_batch)
    from benchmarks.run import machine

    result["machine"] = machine(torch.device("cpu"))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
