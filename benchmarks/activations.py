"""Activation memory of a training step, counted exactly on any device (a CPU will do).

A training step's memory beyond the weights is what autograd saves for the backward pass. This
script runs the forward of each trainer's loss under ``torch.autograd.graph.saved_tensors_hooks``
and adds up the distinct storages it saves, leaving out the model's parameters: the activation
memory at full ViT-B/16 scale, in fp32, with the optimisations on and off. Half precision
(``fp16``, ``amp``) saves half of it, give or take the LayerNorms kept in fp32.

With the optimisations off every class prompt runs at 77 tokens, so the text tower's share grows
exactly in proportion to the number of classes: figures above ``--direct-limit`` classes are
extrapolated from two smaller counts (``extrapolated`` in the JSON) instead of allocating tens
of GB. The figures with the optimisations on are always measured directly.

    python -m benchmarks.activations --trainers MaPLe,PromptSRC --classes 100,1000 --out a.json

``--backbone NAME`` counts on another backbone's architecture instead (any ViT name that
``MODEL.BACKBONE.NAME`` takes, e.g. ``ViT-L/14`` or ``open_clip:ViT-B-16/laion2b_s34b_b88k``;
random weights, nothing downloaded): its widths, depths, heads, image size and activation.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from benchmarks.workload import SCALES, TRAINERS, Scale, batch_sizes, class_names, trainer_config
from clip.model import SPEEDUPS_OFF, speedups

GIB = 2 ** 30


@dataclass
class BackboneScale(Scale):
    """The full-size workload on the architecture of the backbone ``backbone``."""

    backbone: str = ""

    def build_clip(self, seed: int = 0):
        import clip

        backbone = clip.describe(self.backbone)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = clip.CLIP.from_backbone(backbone)
        if backbone.arch.family == "siglip":  # its vocabulary's files are not needed to count:
            # every text runs its whole context, whatever the ids
            from clip.siglip_tokenizer import SentencePieceTokenizer

            model.tokenizer = SentencePieceTokenizer(backbone.arch.context_length, "tiny-siglip")
        return model.eval().requires_grad_(False)


def backbone_scale(name: str) -> BackboneScale:
    """The full scale's workload on the ViT backbone ``name`` (clip.describe)."""
    import clip

    arch = clip.describe(name).arch
    if arch.is_resnet:
        raise SystemExit(f"{name} has a ResNet image tower; the count takes ViT backbones")
    return BackboneScale(f"{name} (random weights)", embed_dim=arch.embed_dim,
                         image_resolution=arch.image_size, patch_size=arch.patch_size,
                         vision_width=arch.vision_width, vision_layers=arch.vision_layers,
                         text_width=arch.text_width, text_heads=arch.text_heads,
                         text_layers=arch.text_layers, backbone=name)


def saved_bytes(forward: Callable[[], object], parameters: set[int]) -> int:
    """Bytes of the distinct non-parameter storages that ``forward()`` saves for backward."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = forward()
    del out
    return sum(storages.values())


def saved_activation_bytes(trainer, image: torch.Tensor, label: torch.Tensor,
                           parameters: set[int]) -> int:
    """Bytes of the distinct non-parameter storages the forward of the method's objective
    saves."""
    return saved_bytes(lambda: trainer.method.losses(image, label).total, parameters)


def _trainer(name: str, scale: Scale, clip_model, classes: int):
    from benchmarks.measure import build_trainer

    cfg = trainer_config(name, scale, "fp32")
    return cfg, build_trainer(name, cfg, clip_model, class_names(classes), torch.device("cpu"),
                              scale)


def measure(name: str, scale: Scale, clip_model, classes: int, off: bool) -> int:
    cfg, trainer = _trainer(name, scale, clip_model, classes)
    batch, _ = batch_sizes(cfg, scale, name)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, scale.image_resolution, scale.image_resolution,
                        generator=generator)
    label = torch.arange(batch) % classes
    parameters = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}
    parameters |= {b.untyped_storage().data_ptr() for b in trainer.model.buffers()}
    if off:
        with speedups(**SPEEDUPS_OFF):
            return saved_activation_bytes(trainer, image, label, parameters)
    return saved_activation_bytes(trainer, image, label, parameters)


def rows(names: list[str], scale: Scale, classes: list[int],
         direct_limit: int) -> Iterator[dict]:
    from benchmarks.measure import release_memory_to_os

    release_memory_to_os()  # freed activations go back to the OS between measurements
    clip_model = scale.build_clip()
    for name in names:
        for count in classes:
            start = time.time()
            on = measure(name, scale, clip_model, count, off=False)
            if count <= direct_limit:
                off, extrapolated = measure(name, scale, clip_model, count, off=True), False
            else:  # 77 tokens per class: linear in the class count
                small, large = max(1, direct_limit // 2), direct_limit
                a = measure(name, scale, clip_model, small, off=True)
                b = measure(name, scale, clip_model, large, off=True)
                off = round(b + (b - a) * (count - large) / (large - small))
                extrapolated = True
            yield {"trainer": name, "classes": count, "on_bytes": on, "off_bytes": off,
                   "off_extrapolated": extrapolated, "seconds": round(time.time() - start, 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="full")
    p.add_argument("--backbone", default="",
                   help="count on this ViT backbone's architecture instead of --scale's")
    p.add_argument("--trainers", default=",".join(TRAINERS))
    p.add_argument("--classes", default="100,1000")
    p.add_argument("--direct-limit", type=int, default=100,
                   help="largest class count measured directly with the optimisations off")
    p.add_argument("--out", default="", help="write the rows as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    names = [n for n in args.trainers.split(",") if n]
    unknown = sorted(set(names) - set(TRAINERS))
    if unknown:
        raise SystemExit(f"unknown trainers {unknown}; choose from {sorted(TRAINERS)}")
    scale = backbone_scale(args.backbone) if args.backbone else SCALES[args.scale]
    classes = [int(c) for c in args.classes.split(",")]
    torch.set_grad_enabled(True)
    print(f"Activation memory of one training step (fp32, scale {scale.name}); "
          "fp16/amp: about half")
    print(f"{'trainer':<10} {'classes':>7} {'on GiB':>8} {'off GiB':>8} {'off/on':>7}")
    results = []
    for row in rows(names, scale, classes, args.direct_limit):
        results.append(row)
        mark = "*" if row["off_extrapolated"] else " "
        print(f"{row['trainer']:<10} {row['classes']:>7} {row['on_bytes'] / GIB:>8.2f} "
              f"{row['off_bytes'] / GIB:>7.2f}{mark} "
              f"{row['off_bytes'] / max(row['on_bytes'], 1):>6.1f}x", flush=True)
    if any(r["off_extrapolated"] for r in results):
        print("* extrapolated linearly from two smaller class counts (77 tokens per class)")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"scale": scale.name, "precision": "fp32", "rows": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
