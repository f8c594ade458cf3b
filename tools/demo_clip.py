"""Pre-train ``tiny-demo`` (clip/tiny_demo.py): the tiny CLIP taught colours for the demos.

    python tools/demo_clip.py            # writes clip/tiny_demo.safetensors, prints its scores
    python -m tools.demo_clip            # the same
    python -m tools.demo_clip --out F    # elsewhere

CLIP's contrastive loss on synthetic colour images (``datasets.demo.draw``, from another seed
than the Demo dataset's) captioned with OpenAI's ImageNet templates ("a photo of a red."). The
pre-training images are a shifted distribution: each colour is pulled part of the way towards
its neighbour on the colour wheel. So the model knows the colour words, but its zero-shot
accuracy on the Demo dataset stays well below what prompt learning reaches from it. Each step
holds one image of every colour per group, so every image has exactly one matching caption.
Deterministic: seeded generators, one thread, Adam without weight decay (token embeddings of
words never seen keep ``tiny``'s values, so the file stores only the rows that changed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

if __package__ in (None, ""):  # run as a file: python tools/demo_clip.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clip import tiny_demo  # noqa: E402
from clip.backbones import OPENAI_MEAN, OPENAI_STD
from clip.model import CLIP
from clip.tiny import tiny_clip
from datasets.demo import CLASSNAMES, COLOURS, SPLIT_FILE, draw, generate
from trainers.templates import DEFAULT_TEMPLATE, IMAGENET_TEMPLATES

logger = logging.getLogger(__name__)

SEED = 2024  # the Demo dataset draws from seed 0
STEPS = 150
GROUPS = 4  # images per colour per step
LR = 1e-3
SHIFT = 0.55  # how far each pre-training colour moves towards its neighbour on the wheel
WHEEL = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "red")


def shifted_colours(shift: float = SHIFT) -> list[tuple[float, float, float]]:
    """The pre-training colour of each class (in CLASSNAMES' order): the Demo colour moved
    ``shift`` of the way towards the next colour on the wheel (gray towards blue)."""
    neighbour = {a: b for a, b in zip(WHEEL, WHEEL[1:], strict=False)} | {"gray": "blue"}
    out = []
    for name in CLASSNAMES:
        a, b = np.array(COLOURS[name], float), np.array(COLOURS[neighbour[name]], float)
        out.append(tuple((1 - shift) * a + shift * b))
    return out


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL images as CLIP's normalised input ``[B, 3, H, W]``."""
    x = torch.from_numpy(np.stack([np.asarray(i, np.float32) / 255 for i in images]))
    x = x.permute(0, 3, 1, 2)
    mean, std = torch.tensor(OPENAI_MEAN).view(3, 1, 1), torch.tensor(OPENAI_STD).view(3, 1, 1)
    return (x - mean) / std


def batch(rng: np.random.Generator, colours: list, groups: int, templates: tuple[str, ...]
          ) -> tuple[torch.Tensor, list[str]]:
    """``groups`` images of every colour and a caption for each (a random template)."""
    images, captions = [], []
    for _ in range(groups):
        for name, colour in zip(CLASSNAMES, colours, strict=True):
            images.append(draw(rng, tuple(int(round(c)) for c in colour)))
            captions.append(templates[rng.integers(len(templates))].format(name))
    return to_tensor(images), captions


def contrastive_loss(model: CLIP, images: torch.Tensor, tokens: torch.Tensor,
                     groups: int) -> torch.Tensor:
    """CLIP's symmetric cross-entropy within each group of one image per colour."""
    image = F.normalize(model.encode_image(images), dim=-1)
    text = F.normalize(model.encode_text(tokens), dim=-1)
    n = len(CLASSNAMES)
    total = 0.0
    target = torch.arange(n)
    scale = model.logit_scale.exp()
    for g in range(groups):
        block = scale * image[g * n:(g + 1) * n] @ text[g * n:(g + 1) * n].t()
        total = total + (F.cross_entropy(block, target) + F.cross_entropy(block.t(), target)) / 2
    return total / groups


def pretrain(steps: int = STEPS, *, seed: int = SEED, groups: int = GROUPS, lr: float = LR,
             shift: float = SHIFT) -> tuple[CLIP, list[float]]:
    """Pre-train ``tiny``'s initialisation; returns the model and the loss of every step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same sums in the same order on every run
    try:
        return _pretrain(steps, seed, groups, lr, shift)
    finally:
        torch.set_num_threads(threads)


def _pretrain(steps: int, seed: int, groups: int, lr: float, shift: float
              ) -> tuple[CLIP, list[float]]:
    model = tiny_clip(seed=tiny_demo.BASE_SEED).train()
    model.logit_scale.requires_grad_(False)  # tiny's trained-CLIP temperature
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng(seed)
    colours = shifted_colours(shift)
    losses = []
    for _ in range(steps):
        images, captions = batch(rng, colours, groups, IMAGENET_TEMPLATES)
        loss = contrastive_loss(model, images, model.tokenizer(captions), groups)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def demo_test_set(root: str | Path, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """The Demo dataset's test images of its first ``classes`` classes (the base classes by
    default) and their labels, generated under ``root`` if absent."""
    folder = generate(root)
    items = [x for x in json.loads((folder / SPLIT_FILE).read_text())["test"] if x[1] < classes]
    images = [Image.open(folder / "images" / path).convert("RGB") for path, _, _ in items]
    return to_tensor(images), torch.tensor([label for _, label, _ in items])


@torch.no_grad()
def zero_shot_accuracy(model: CLIP, images: torch.Tensor, labels: torch.Tensor,
                       template: str = DEFAULT_TEMPLATE) -> float:
    """Zero-shot accuracy (%) with one template (ZeroshotCLIP's for the Demo dataset)."""
    n = int(labels.max()) + 1
    text = F.normalize(model.encode_text(model.tokenizer(
        [template.format(c) for c in CLASSNAMES[:n]])), dim=-1)
    image = F.normalize(model.encode_image(images), dim=-1)
    return 100.0 * (model.logits(image, text).argmax(1) == labels).float().mean().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(tiny_demo.WEIGHTS), help="the file to write")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args(argv)
    model, losses = pretrain(args.steps)
    path = tiny_demo.write(model.state_dict(), args.out)
    shipped = tiny_demo.tiny_demo_clip(path)
    with tempfile.TemporaryDirectory() as root:
        base = zero_shot_accuracy(shipped, *demo_test_set(root, 4))
        every = zero_shot_accuracy(shipped, *demo_test_set(root, 8))
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB): loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f} in {len(losses)} steps; zero-shot on the Demo test split: "
          f"{base:.1f}% (4 base classes), {every:.1f}% (8 classes)")


if __name__ == "__main__":
    main()
