"""Parity fixture of KgCoOp (htyao89/KgCoOp), computed by the official code.

The base-to-new setting of ``scripts/base2new_train.sh`` (config ``vit_b16_ep100_ctxv1``,
``N_CTX 4``, ``CSC False``, ``W 8.0``, class token at the end, ``SUBSAMPLE_CLASSES base``), in
fp32, on the deterministic ViT-B/16 and the ten Caltech101 class names of the CoOp fixture.

    python tools/parity/kgcoop.py --official <KgCoOp work tree> --out <folder>

``--official`` is the repository root (holding ``KgCoOp/`` and ``Dassl.ProGrad.pytorch/``).
"""

from __future__ import annotations

import logging

import harness as H
import torch
import torch.nn.functional as F
from official_cfg import cfg_subset

LOG = logging.getLogger("parity.kgcoop")
CLASSNAMES = ["face", "leopard", "motorbike", "accordion", "airplane", "anchor", "ant", "barrel",
              "bass", "beaver"]
LABELS = [0, 1, 2, 3]
DATASET = "caltech101"
SCRIPT_OPTS = ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "8.0",
               "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "DATASET.NUM_SHOTS", "16",
               "DATASET.SUBSAMPLE_CLASSES", "base"]
PREC_OPTS = ["TRAINER.COOP.PREC", "fp32"]
CONFIG_KEYS = ["TRAINER.COOP", "TRAINER.COCOOP.PREC", "DATASET.NAME",
               "DATASET.SUBSAMPLE_CLASSES", "MODEL.BACKBONE.NAME", "INPUT.SIZE", "OPTIM"]


def kg_score(text_features: torch.Tensor, handcrafted: torch.Tensor) -> torch.Tensor:
    """``1 - mean_c cos(t_c, h_c)`` as the official forward computes it (``h`` normalised in
    its own dtype, fp16 in the official run)."""
    t = text_features / text_features.norm(dim=-1, keepdim=True)
    h = handcrafted / handcrafted.norm(dim=-1, keepdim=True)
    return 1.0 - torch.nn.CosineSimilarity(dim=1, eps=1e-07)(t, h).mean()


def handcrafted_fp32(official_clip, state_dict, prompts: list[str]) -> torch.Tensor:
    """The hand-crafted prompts' features from the official CLIP in fp32 (the official code
    uses a second, fp16 CLIP: this is what a fp32 re-implementation computes)."""
    model = official_clip.build_model(dict(state_dict)).float().eval()
    with torch.no_grad():
        f = model.encode_text(torch.cat([official_clip.tokenize(p) for p in prompts]))
    return f / f.norm(dim=-1, keepdim=True)


def main() -> None:
    args = H.command_line(__doc__, dassl=False)
    run = H.bundled_trainer(args.official, "KgCoOp", "trainers.kgcoop", "KgCoOp",
                            "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml", DATASET,
                            SCRIPT_OPTS + PREC_OPTS, CLASSNAMES)
    recipe, state, kgcoop, official_clip = run.recipe, run.state, run.module, run.clip
    cfg, trainer, named, spec, values = run.cfg, run.trainer, run.named, run.spec, run.values
    model, learner = trainer.model, trainer.model.prompt_learner
    images, labels = recipe.images(), torch.tensor(LABELS)

    taps = {"image": model.image_encoder, "text": model.text_encoder, "model": model}
    logits, seen = H.official_eval(trainer, images, taps)
    step = H.official_train_step(trainer, {"img": images, "label": labels}, named,
                                 {"model": model})
    train_logits, score = step["outputs"]["model"]
    ce = F.cross_entropy(train_logits, labels)
    w = float(cfg.TRAINER.COOP.W)
    if abs((ce + w * score).item() - step["summary"]["loss"]) > 1e-5:
        raise RuntimeError("the recorded terms do not add up to the official loss")

    handcrafted = learner.text_features
    template = kgcoop.CUSTOM_TEMPLATES[cfg.DATASET.NAME]
    prompts = [template.format(c.replace("_", " ")) for c in CLASSNAMES]
    h32 = handcrafted_fp32(official_clip, state, prompts)
    score32 = kg_score(seen["text"], h32)
    if abs(kg_score(seen["text"], handcrafted).item() - score.item()) > 1e-6:
        raise RuntimeError(f"kg_score does not reproduce the official term: "
                           f"{kg_score(seen['text'], handcrafted).item()} vs {score.item()}")
    zeroed = H.zeroed_logits(trainer, learner, images)

    expected = {
        "logits": logits, "image_features": seen["image"], "text_features": seen["text"],
        "loss": ce + w * score, "loss_ce": ce, "loss_kg": score,
        "handcrafted_text_features": handcrafted.float().clone(),
        "handcrafted_text_features_fp32": h32, "labels": labels,
        "grads": {n: g for n, g in step["grads"].items()},
        "trainable_values": values,
    }
    record = H.provenance("htyao89/KgCoOp", args) | {
        "trainer": "KgCoOp",
        "dassl": "Dassl.ProGrad.pytorch bundled in the repository",
        "config_file": "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml",
        "dataset_config_file": f"configs/datasets/{DATASET}.yaml",
        "script_opts": SCRIPT_OPTS, "precision_opts": PREC_OPTS,
        "config": cfg_subset(cfg, CONFIG_KEYS),
        "classnames": CLASSNAMES,
        "prompt_strings": [f"a photo of a {c}." for c in CLASSNAMES],
        "handcrafted_template": template, "handcrafted_prompts": prompts,
        "handcrafted_dtype": str(handcrafted.dtype),
        "trainable": spec, "seeds": H.SEEDS, "labels_for_loss": LABELS,
        "checkpoint_keys": sorted(learner.state_dict()),
        "loss": (ce + w * score).item(), "loss_ce": ce.item(), "loss_kg": score.item(), "w": w,
        "loss_with_fp32_handcrafted_features": (ce + w * score32).item(),
        "loss_kg_with_fp32_handcrafted_features": score32.item(),
        "max_abs_handcrafted_feature_change_fp16_vs_fp32": H.max_abs(handcrafted.float(), h32),
        "max_abs_logit_change_when_trainables_zeroed": H.max_abs(zeroed, logits),
        "plausible_slips": {
            "kg_term_summed_over_classes_instead_of_mean": {
                "loss": (ce + w * score * len(CLASSNAMES)).item()},
            "config_default_w_1_instead_of_the_script_8": {"loss": (ce + score).item()},
        },
        "run": H.run_description("KgCoOp/trainers/kgcoop.py"),
    }
    H.write_fixture(args.out, "KgCoOp", record, expected)


if __name__ == "__main__":
    main()
