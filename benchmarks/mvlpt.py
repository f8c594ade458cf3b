"""MVLPT over CoOp's 11 datasets at once: a training step over their 2191 class names.

    python -m benchmarks.mvlpt --scale cpu --out mvlpt-cpu.json        # step time and memory
    python -m benchmarks.mvlpt --activations --out mvlpt-act.json      # full-size activations

A multitask source step runs the text tower over every class of every task (1000 ImageNet
classes and 1191 of the 10 others), at the official batch size (32), for MCoOp (16 context
tokens, class name in the middle) and MUPT (4 + 4 tokens, coupled). Figures:

- the training step and its peak memory with the optimisations on (sequences cut to their
  length and grouped) and off (77 tokens, ``nn.MultiheadAttention``'s path, what the official
  code computes with ``CUT_CONTEXTLEN False``), and with ``TRAINER.ACT_CKPT 12`` (the text tower
  recomputed block by block in the backward pass); the logits on and off agree;
- ``--activations``: the bytes autograd saves in the forward pass of one step at full ViT-B/16
  size (fp32; about half in fp16), counted as benchmarks/activations.py does: with ACT_CKPT 12
  directly; without it the text tower's share is replaced by its value at the 2191-class plan's
  token positions (linear in them: fitted on subsets of the names, checked on a third), instead
  of allocating tens of GB; with the optimisations off linear in the classes (77 tokens each).

Class names: ImageNet's from open_clip; Caltech101, OxfordPets, OxfordFlowers and EuroSAT from
the ``clip-benchmark`` package (a benchmark-only dependency: ``pip install clip-benchmark``);
the datasets it lacks (Food101, StanfordCars, FGVCAircraft, SUN397, DTD, UCF101) take unused
ImageNet names, so that every task has its class count and names of real lengths (the JSON's
``names`` says which).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import measure  # noqa: E402
from benchmarks.activations import GIB, saved_activation_bytes, saved_bytes  # noqa: E402
from benchmarks.workload import SCALES, Scale  # noqa: E402
from clip.model import SPEEDUPS, SPEEDUPS_OFF, speedups, text_groups  # noqa: E402

# (registered name, classes, clip-benchmark key) in the order of the official source list
TASKS = (("ImageNet", 1000, "imagenet1k"), ("Caltech101", 100, "caltech101_vtab"),
         ("Food101", 101, None), ("StanfordCars", 196, None), ("OxfordPets", 37, "pets"),
         ("OxfordFlowers", 102, "flowers"), ("FGVCAircraft", 100, None), ("SUN397", 397, None),
         ("DescribableTextures", 47, None), ("EuroSAT", 10, "eurosat"), ("UCF101", 101, None))
VARIANTS = {
    "MCoOp": ["TRAINER.MVLPT.COOP.N_CTX", "16", "TRAINER.MVLPT.VPT.N_CTX", "0"],
    "MUPT": ["TRAINER.MVLPT.COOP.N_CTX", "4", "TRAINER.MVLPT.VPT.N_CTX", "4"],
}
CHECKPOINT_SEGMENTS = 12


def class_names() -> tuple[list[str], dict[str, str]]:
    """The 2191 class names in task order, and where each task's names come from."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    spec = importlib.util.find_spec("clip_benchmark")
    packaged = {}
    if spec is not None and spec.origin:
        packaged = json.loads((Path(spec.origin).parent / "datasets" / "en_classnames.json")
                              .read_text())
    imagenet = list(IMAGENET_CLASSNAMES)
    spare = itertools.cycle(imagenet[::-1])  # stand-ins, from the end of ImageNet's list
    names, sources = [], {}
    for task, count, key in TASKS:
        if task == "ImageNet":
            own, sources[task] = imagenet, "open_clip"
        elif key in packaged:
            own = [n for n in packaged[key] if n != "background"]
            sources[task] = f"clip-benchmark:{key}"
        else:
            own, sources[task] = [], "ImageNet stand-ins"
        own = own[:count] + [next(spare) for _ in range(count - len(own[:count]))]
        names += own
    return names, sources


def mvlpt_config(variant: str, segments: int = 1):
    import trainers  # noqa: F401  (registration)
    from engine.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.merge_from_file(str(Path(__file__).resolve().parents[1] / "configs" / "trainers"
                            / "MVLPT" / "vit_b16.yaml"))
    cfg.merge_from_list([*VARIANTS[variant], "TRAINER.MVLPT.PREC", "fp32",
                         "TRAINER.ACT_CKPT", str(segments), "TRAINER.CUT_CONTEXTLEN", "True"])
    return cfg


def build(variant: str, clip_model, names: list[str], segments: int = 1):
    """An MVLPT trainer (no data) of the variant; it sets the text tower's checkpoint segments."""
    return measure.build_trainer("MVLPT", mvlpt_config(variant, segments), clip_model, names,
                                 torch.device("cpu"))


def step_figures(scale: Scale, names: list[str]) -> list[dict]:
    """Training step time and peak memory per variant: on, off, on with ACT_CKPT."""
    clip_model = scale.build_clip()
    rows = []
    for variant in VARIANTS:
        trainers = {"on": build(variant, clip_model, names), "off": build(variant, clip_model,
                                                                           names)}
        ckpt = build(variant, clip_model, names, CHECKPOINT_SEGMENTS)
        for t in trainers.values():
            t.model.prompt_learner.load_state_dict(ckpt.model.prompt_learner.state_dict())
        clip_model.transformer.checkpoint_segments = 1
        timings = measure.time_training(trainers, 32, len(names), scale.image_resolution,
                                        scale.warmup, scale.repeat, scale.min_seconds)
        clip_model.transformer.checkpoint_segments = CHECKPOINT_SEGMENTS
        saved = measure.time_training({"on": ckpt}, 32, len(names), scale.image_resolution,
                                      scale.warmup, scale.repeat, scale.min_seconds)
        clip_model.transformer.checkpoint_segments = 1
        logits = measure.logits_difference(trainers["on"], 4, scale.image_resolution)
        row = {"variant": variant, "classes": len(names), "on": timings["on"],
               "off": timings["off"], f"on_act_ckpt_{CHECKPOINT_SEGMENTS}": saved["on"],
               "speedup": timings["off"]["step_s"] / timings["on"]["step_s"],
               "memory_on_over_off": timings["on"]["peak_mib"] / timings["off"]["peak_mib"],
               "logits": logits}
        print(f"{variant}: step on {timings['on']['step_s']:.2f} s, off "
              f"{timings['off']['step_s']:.2f} s ({row['speedup']:.2f}x), ACT_CKPT "
              f"{saved['on']['step_s']:.2f} s; peak MiB on {timings['on']['peak_mib']}, off "
              f"{timings['off']['peak_mib']}, ACT_CKPT {saved['on']['peak_mib']}; logits on vs "
              f"off max diff {logits['max_abs_diff']:.2e}", flush=True)
        rows.append(row)
    return rows


def _params(trainer) -> set[int]:
    params = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}
    return params | {b.untyped_storage().data_ptr() for b in trainer.model.buffers()}


def step_bytes(trainer, classes: int, batch: int = 32) -> int:
    """Bytes the forward of one training step saves for the backward pass."""
    size = trainer.model.clip.visual.input_resolution
    image = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    label = torch.arange(batch) % classes
    return saved_activation_bytes(trainer, image, label, _params(trainer))


def batch_fit(trainer, classes: int, batches: tuple[int, int, int] = (2, 4, 6),
              target: int = 32) -> tuple[int, float]:
    """The step's saved bytes at batch ``target``, from a line through the counts at two small
    batches (what is saved is per image, or shared by the batch: the text tower's), and the
    line's relative error on the third: a count at batch 32 that does not fit in memory.
    Counted with the shared causal prefix off, as :func:`text_fit` counts: the bound it lowers."""
    with speedups(shared_prefix=False):
        (b0, y0), (b1, y1), (b2, y2) = [(b, step_bytes(trainer, classes, b)) for b in batches]
    slope = (y1 - y0) / (b1 - b0)
    return round(y0 + slope * (target - b0)), abs(y0 + slope * (b2 - b0) - y2) / y2


def text_bytes(trainer) -> int:
    """Bytes the text tower's forward over the class prompts saves (no image involved)."""
    model = trainer.model
    return saved_bytes(lambda: model.encode_schedule_text(model.prompt_learner()),
                       _params(trainer))


def positions(trainer, off: bool = False) -> int:
    """Token positions the text tower runs for the trainer's class prompts."""
    eot = trainer.model.prompt_learner.class_tokens.eot
    options = dataclasses.replace(SPEEDUPS, **(SPEEDUPS_OFF if off else {}))
    plan = text_groups(eot, 77, options)
    return sum((eot.shape[0] if idx is None else idx.shape[0]) * length for idx, length in plan)


def text_fit(variant: str, clip_model, subsets: list[list[str]], segments: int,
             target: int) -> tuple[int, float]:
    """The text tower's saved bytes at ``target`` token positions, from a line through two
    subsets' counts, and the line's relative error on the third subset. Counted with the shared
    causal prefix off (clip/prefix.py runs the prefix once, a share that is not per position):
    the figure is the bound that sharing lowers."""
    points = []
    for subset in subsets:
        trainer = build(variant, clip_model, subset, segments)
        with speedups(shared_prefix=False):
            points.append((positions(trainer), text_bytes(trainer)))
    (x0, y0), (x1, y1), (x2, y2) = points
    slope = (y1 - y0) / (x1 - x0)
    return round(y0 + slope * (target - x0)), abs(y0 + slope * (x2 - x0) - y2) / y2


def activation_rows(names: list[str]) -> list[dict]:
    """Full-size saved bytes of one step at 2191 classes.

    - ACT_CKPT 12, optimisations on: counted at batches 2 and 4 and taken to batch 32 on the
      line through them (checked at batch 6): the count at 32 does not fit in a small
      machine's memory when the image tower is prompted (MUPT).
    - ACT_CKPT 1 (off), optimisations on: the direct count with the text tower's share replaced:
      that share is linear in the token positions it runs (a line through two subsets of the
      names, checked on a third), with and without checkpointing.
    - Optimisations off: every prompt has 77 tokens, so the count is linear in the classes:
      extrapolated from two direct counts (benchmarks/activations.py's rule)."""
    clip_model = SCALES["full"].build_clip()
    subsets = [names[::k] for k in (40, 20, 14)]  # 55, 110, 157 names
    rows = []
    for variant in VARIANTS:
        start = time.time()
        full = build(variant, clip_model, names, CHECKPOINT_SEGMENTS)
        direct, check_batch = batch_fit(full, len(names))
        target = positions(full)
        saved, check_saved = text_fit(variant, clip_model, subsets, CHECKPOINT_SEGMENTS, target)
        plain, check_plain = text_fit(variant, clip_model, subsets, 1, target)
        off = []
        with speedups(**SPEEDUPS_OFF):
            for subset in subsets[:2]:
                off.append((len(subset), step_bytes(build(variant, clip_model, subset),
                                                    len(subset))))
        (n0, b0), (n1, b1) = off
        row = {"variant": variant, "classes": len(names), "text_positions_on": target,
               f"on_act_ckpt_{CHECKPOINT_SEGMENTS}_bytes": direct,
               "on_bytes": direct - saved + plain,
               "off_bytes": round(b1 + (b1 - b0) * (len(names) - n1) / (n1 - n0)),
               "text_fit_check_relative_error": max(check_saved, check_plain),
               "batch_fit_check_relative_error": check_batch,
               "seconds": round(time.time() - start, 1)}
        print(f"{variant} at {len(names)} classes (fp32): on {row['on_bytes'] / GIB:.2f} GiB, off "
              f"{row['off_bytes'] / GIB:.2f} GiB, on + ACT_CKPT {CHECKPOINT_SEGMENTS} "
              f"{direct / GIB:.2f} GiB (text fit checked to "
              f"{row['text_fit_check_relative_error']:.1e})", flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--activations", action="store_true",
                        help="count the full-size activation bytes instead of timing steps")
    parser.add_argument("--out", default="", help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    names, sources = class_names()
    measure.release_memory_to_os()  # freed activations go back to the OS between counts
    result = {"classes": len(names), "names": sources,
              "tasks": [[task, count] for task, count, _ in TASKS]}
    if args.activations:
        result |= {"scale": "full (ViT-B/16)", "precision": "fp32",
                   "activations": activation_rows(names)}
    else:
        scale = SCALES[args.scale]
        result |= {"scale": scale.as_dict(), "steps": step_figures(scale, names)}
        result["median_speedup"] = statistics.median(r["speedup"] for r in result["steps"])
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
