"""What the benchmark runs: model sizes, trainers with their official configs, class names.

A :class:`Scale` fixes the CLIP architecture and the workload. ``FULL`` is ViT-B/16 at the
official batch sizes; ``CPU`` keeps ViT-B/16's shape (the same ratio of text to vision width,
224-pixel images, 16-pixel patches, 77-token context) with narrower and fewer layers, so a laptop
finishes in minutes; ``TINY`` is for the smoke test.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from clip.model import CLIP

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "trainers"

# trainer name -> (official config file under configs/trainers/<name>/, config node)
TRAINERS: dict[str, tuple[str, str]] = {
    "CoOp": ("vit_b16.yaml", "COOP"),
    "CoCoOp": ("vit_b16_c4_ep10_batch1_ctxv1.yaml", "COCOOP"),
    "IVLP": ("vit_b16_c2_ep5_batch4_2+2ctx.yaml", "IVLP"),
    "MaPLe": ("vit_b16_c2_ep5_batch4_2ctx.yaml", "MAPLE"),
    "PromptSRC": ("vit_b16_c2_ep20_batch4_4+4ctx.yaml", "PROMPTSRC"),
    "VPT": ("vit_b16_c2_ep5_batch4_4.yaml", "VPT"),
    "TCP": ("vit_b16_ep100_ctxv1.yaml", "COOP"),
    "MultiModalAdapter": ("vit_b16_ep5.yaml", "MMADAPTER"),
    "CLIPLoRA": ("vit_b16.yaml", "CLIPLORA"),
    "CoPrompt": ("coprompt.yaml", "CoPrompt"),
    "PromptKD": ("vit_b16_c2_ep20_batch8_4+4ctx.yaml", "PROMPTKD"),
}


@dataclass
class Scale:
    """CLIP sizes and workload of one benchmark run."""

    name: str
    embed_dim: int = 512
    image_resolution: int = 224
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    text_width: int = 512
    text_heads: int = 8
    text_layers: int = 12
    train_classes: tuple[int, ...] = (10, 100, 1000)
    eval_classes: int = 1000
    eval_batch: int | None = None  # None: the official test batch size (100)
    cocoop_eval_batch: int | None = None  # CoCoOp's text tower runs per image
    batch_cap: int | None = None  # cap on the official training batch sizes
    warmup: int = 3
    repeat: int = 10
    min_seconds: float = 2.0  # more timed steps (up to 100) until each mode ran this long
    eval_batches: int = 6
    notes: list[str] = field(default_factory=list)

    def build_clip(self, seed: int = 0) -> CLIP:
        """A random CLIP of these sizes (OpenAI's initialisation), fp32, frozen, eval mode."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIP(
                embed_dim=self.embed_dim, image_resolution=self.image_resolution,
                vision_layers=self.vision_layers, vision_width=self.vision_width,
                vision_patch_size=self.patch_size, context_length=77, vocab_size=49408,
                transformer_width=self.text_width, transformer_heads=self.text_heads,
                transformer_layers=self.text_layers)
        return model.eval().requires_grad_(False)

    def as_dict(self) -> dict:
        return asdict(self)


FULL = Scale("full (ViT-B/16)")
CPU = Scale(
    "cpu", embed_dim=128, vision_width=192, vision_layers=2, text_width=128, text_heads=2,
    text_layers=2, cocoop_eval_batch=2, warmup=1, repeat=2, min_seconds=5.0, eval_batches=3,
    notes=["ViT-B/16 narrowed 4x (text width 512->128, vision 768->192, embed 512->128) and "
           "cut to 2 layers per tower (prompt depths capped at 2); 224-pixel images, 77-token "
           "context, class counts and batch sizes as official except CoCoOp's test batch "
           "(100->2 images, each with its own 1000 class prompts)",
           "1 warm-up and 2 timed training steps (more, up to 100, until each mode ran 5 s), "
           "3 evaluation batches (more, up to 50, until each mode ran 5 s)"])
TINY = Scale(
    "tiny", embed_dim=64, image_resolution=32, patch_size=8, vision_width=64, vision_layers=2,
    text_width=64, text_heads=1, text_layers=2, train_classes=(4, 20), eval_classes=20,
    eval_batch=4, cocoop_eval_batch=2, batch_cap=4, warmup=0, repeat=1, min_seconds=0.0,
    eval_batches=2,
    notes=["tiny CLIP (width 64, 2 layers, 32-pixel images) for the smoke test; "
           "figures mean nothing"])
SCALES = {"full": FULL, "cpu": CPU, "tiny": TINY}


def class_names(count: int) -> list[str]:
    """``count`` real ImageNet class names (OpenAI's, as CoOp reads them), spread evenly over
    the 1000 so their token lengths are ImageNet's; cycled beyond 1000 with a suffix."""
    try:
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    except ImportError as error:  # open_clip provides the tokenizer too
        raise ImportError("the benchmark reads ImageNet's class names from open_clip; "
                          "pip install open_clip_torch (see requirements.txt)") from error
    names = list(IMAGENET_CLASSNAMES)
    if count <= len(names):
        return [names[i * len(names) // count] for i in range(count)]
    return [names[i % len(names)] + ("" if i < len(names) else f" {i // len(names)}")
            for i in range(count)]


def trainer_config(name: str, scale: Scale, precision: str):
    """The official config of ``name`` with the prompt depths capped at the scale's layers."""
    import trainers  # noqa: F401  (registers the trainers and their config nodes)
    from engine.config import get_cfg_default

    filename, node = TRAINERS[name]
    path = CONFIGS / name / filename
    if not path.is_file():
        raise FileNotFoundError(f"official config {path} is missing")
    cfg = get_cfg_default()
    cfg.merge_from_file(str(path))
    depth_cap = min(scale.text_layers, scale.vision_layers)
    for key, value in cfg.TRAINER[node].items():
        if key.startswith("PROMPT_DEPTH") and isinstance(value, int):
            cfg.TRAINER[node][key] = min(value, depth_cap)
    # layers named by number (TCP's insertion layer, MMA's adapted blocks) within the scale's
    if name == "TCP":
        cfg.TRAINER.TCP.LAYER = min(cfg.TRAINER.TCP.LAYER, scale.text_layers - 1)
    if name == "MultiModalAdapter":
        mma = cfg.TRAINER.MMADAPTER
        mma.ADAPTER_END = min(mma.ADAPTER_END, depth_cap)
        mma.ADAPTER_START = min(mma.ADAPTER_START, mma.ADAPTER_END)
    cfg.TRAINER[node].PREC = precision
    return cfg


def batch_sizes(cfg, scale: Scale, name: str) -> tuple[int, int]:
    """(training batch, test batch) for ``name`` at this scale."""
    train = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    if scale.batch_cap:
        train = min(train, scale.batch_cap)
    test = scale.eval_batch or cfg.DATALOADER.TEST.BATCH_SIZE
    if name == "CoCoOp" and scale.cocoop_eval_batch:
        test = scale.cocoop_eval_batch
    return train, test


def device_copy(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A copy of the frozen CLIP on ``device`` in ``dtype``, as PromptTrainer.build_model
    casts it."""
    return copy.deepcopy(model).to(device=device, dtype=dtype)
