"""Parity fixtures of CLIP-LoRA (MaxZanella/CLIP-LoRA), computed by the official code.

The official ``apply_lora`` on the official ``clip.build_model`` of the deterministic ViT-B/16
(fp32), with the ten Caltech101 class names of the CoOp fixture and CLIP-LoRA's prompt
"a photo of a {}.", logit scale 100 (its ``main.py``):

* ``CLIPLoRA``: the defaults of ``run_utils.py`` (``--encoder both --position all --params q k
  v --r 2 --alpha 1 --dropout_rate 0.25``);
* ``CLIPLoRA_vision_top3_r4``: ``--encoder vision --position top3 --params q k v o --r 4
  --alpha 2``; its LoRA matrices are also written with the official ``save_lora``
  (``CLIPLoRA_vision_top3_r4_lora.pt``, as its ``--save_path`` would hold it).

Logits in eval mode (the official LoRA layers merge their updates into the weights); the loss
and gradients of ``run_lora``'s training step in train mode with each LoRA dropout's ``p``
set to 0 (random dropout masks cannot be reproduced across implementations).

    python tools/parity/clip_lora.py --official <CLIP-LoRA work tree> --out <folder>
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from argparse import Namespace
from pathlib import Path

import harness as H
import torch
import torch.nn.functional as F

CLASSNAMES = ["face", "leopard", "motorbike", "accordion", "airplane", "anchor", "ant", "barrel",
              "bass", "beaver"]
LABELS = [0, 1, 2, 3]
LOGIT_SCALE = 100
TEMPLATE = "a photo of a {}."
DEFAULTS = {"encoder": "both", "position": "all", "params": ["q", "k", "v"], "r": 2, "alpha": 1,
            "dropout_rate": 0.25}
VARIANTS = {"CLIPLoRA": {},
            "CLIPLoRA_vision_top3_r4": {"encoder": "vision", "position": "top3",
                                        "params": ["q", "k", "v", "o"], "r": 4, "alpha": 2}}
SAVED = "CLIPLoRA_vision_top3_r4"


def features(official_clip, model, images, prompts):
    text = model.encode_text(official_clip.tokenize(prompts))
    image = model.encode_image(images)
    return image, text


def logits_of(image, text):
    image_n = image / image.norm(dim=-1, keepdim=True)
    text_n = text / text.norm(dim=-1, keepdim=True)
    return LOGIT_SCALE * image_n @ text_n.t()


def run_variant(args, name: str) -> None:
    recipe = H.load_recipe()
    state = recipe.clip_state_dict()
    official_clip = importlib.import_module("clip")
    loralib = importlib.import_module("loralib.utils")
    flags = Namespace(**(DEFAULTS | VARIANTS[name]), backbone="ViT-B/16", dataset="caltech101",
                      shots=16, seed=1, filename="lora_weights")
    model = official_clip.model.build_model(dict(state)).float()
    layers = loralib.apply_lora(flags, model)
    loralib.mark_only_lora_as_trainable(model)
    named = H.named_trainables(model)
    spec = [[n, list(p.shape)] for n, p in named.items()]
    values = recipe.lora_trainable_tensors(spec)
    with torch.no_grad():
        for n, p in named.items():
            p.copy_(values[n])
    prompts = [TEMPLATE.format(c.replace("_", " ")) for c in CLASSNAMES]
    images, labels = recipe.images(), torch.tensor(LABELS)

    model.eval()
    with torch.no_grad():
        image, text = features(official_clip, model, images, prompts)
    logits = logits_of(image, text)

    model.train()
    for layer in layers:
        for linear in (layer.q_proj, layer.k_proj, layer.v_proj, layer.proj):
            if getattr(linear, "dropout", None) is not None:
                linear.dropout.p = 0.0
    with torch.set_grad_enabled(flags.encoder != "vision"):
        text_train = model.encode_text(official_clip.tokenize(prompts))
    train_logits = logits_of(model.encode_image(images), text_train)
    loss = F.cross_entropy(train_logits, labels)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in named.items()}
    whole, summaries = H.split_small(grads, limit=512)

    with torch.no_grad():  # unmerged (train mode) while zeroed, then merged by eval()
        for p in named.values():
            p.zero_()
    model.eval()
    with torch.no_grad():
        zeroed = logits_of(*features(official_clip, model, images, prompts))
    expected = {"logits": logits, "image_features": image, "text_features": text,
                "train_logits": train_logits.detach(), "loss": loss.detach(), "labels": labels,
                "grads": whole, "grad_summaries": summaries}
    record = H.provenance("MaxZanella/CLIP-LoRA", args) | {
        "flags": DEFAULTS | VARIANTS[name], "backbone": "ViT-B/16", "classnames": CLASSNAMES,
        "prompts": prompts, "logit_scale": LOGIT_SCALE, "trainable": spec,
        "trainable_rule": "recipe.lora_trainable_tensors (std shape[1] ** -0.5)",
        "seeds": H.SEEDS, "labels_for_loss": LABELS, "loss": loss.item(),
        "max_abs_logit_change_when_lora_zeroed": H.max_abs(zeroed, logits),
        "run": "official apply_lora on the official clip.build_model, fp32, CPU; logits in eval "
               "mode; loss and gradients in train mode with the LoRA dropouts' p set to 0",
    }
    if name == SAVED:
        with torch.no_grad():
            for n, p in named.items():
                p.copy_(values[n])
        with tempfile.TemporaryDirectory() as directory:
            flags.save_path = directory
            loralib.save_lora(flags, layers)
            written = next(Path(directory).rglob("*.pt"))
            record["saved_file"] = str(written.relative_to(directory))
            args.out.mkdir(parents=True, exist_ok=True)
            shutil.copy(written, args.out / f"{name}_lora.pt")
    H.write_fixture(args.out, name, record, expected)


def main() -> None:
    args = H.command_line(__doc__, dassl=False, variants=list(VARIANTS))
    sys.path.insert(0, str(args.official.resolve()))
    for name in args.variants:
        run_variant(args, name)


if __name__ == "__main__":
    main()
