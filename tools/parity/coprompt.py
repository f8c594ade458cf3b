"""Parity fixtures of CoPrompt (ShuvenduRoy/CoPrompt), computed by the official code.

The base-to-new setting of ``scripts/base2new_train_coprompt.sh`` (``configs/trainers/
coprompt.yaml``, ``DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base``, then the official
per-dataset overrides of ``trainers/constants.py``) in fp32, on the deterministic ViT-B/16 and
the ten Caltech101 class names of the CoOp fixture:

* ``CoPrompt``: Caltech101 (``N_CTX 4``, ``PROMPT_DEPTH 12``, ``W 4.0``), cosine consistency;
* ``CoPrompt_dtd_mse``: DescribableTextures (``N_CTX 2``, ``PROMPT_DEPTH 12``, ``W 8.0``) with
  ``TRAINER.DISTILL mse`` (the non-default consistency).

The LLM-written class descriptions are not the distributed ones: the generator writes a small
``gpt_file/<name>_prompt.json`` of its own (three sentences per class, recorded in the JSON) in
a temporary working directory, where the official code reads it.

    python tools/parity/coprompt.py --official <CoPrompt work tree> --dassl <Dassl work tree> \
        --out <folder>
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import random
import tempfile
from pathlib import Path

import harness as H
import torch
import torch.nn.functional as F
from official_cfg import cfg_subset, load_train_module, official_cfg

LOG = logging.getLogger("parity.coprompt")
CLASSNAMES = ["face", "leopard", "motorbike", "accordion", "airplane", "anchor", "ant", "barrel",
              "bass", "beaver"]
DESCRIPTIONS = ["A {} has a shape that is easy to recognise.",
                "A photo of a {} often shows it from the side.",
                "You can tell a {} by its colour and its outline."]
LABELS = [0, 1, 2, 3]
SECOND_VIEW_SEED = 8  # the second augmented view: randn like the images, this seed
PICK_SEED = 5  # Python's random is seeded with this before the training step
VARIANTS = {  # fixture: (dataset config, description file, extra opts)
    "CoPrompt": ("caltech101", "caltech", []),
    "CoPrompt_dtd_mse": ("dtd", "dtd", ["TRAINER.DISTILL", "mse"]),
}
SCRIPT_OPTS = ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]
PREC_OPTS = ["TRAINER.CoPrompt.PREC", "fp32"]
CONFIG_KEYS = ["TRAINER.CoPrompt", "TRAINER.W", "TRAINER.DISTILL", "DATASET.NAME",
               "DATASET.SUBSAMPLE_CLASSES", "DATALOADER.K_TRANSFORMS", "INPUT.TRANSFORMS",
               "MODEL.BACKBONE.NAME", "OPTIM"]
STUBS = {"wilds": {"get_dataset": None}, "plotnine": {}}


def recipe_weights_file(state: dict, folder: Path) -> Path:
    """The recipe's state dict as a plain file: the official ``load_clip_to_cpu`` fails to read
    it as TorchScript and falls back to ``torch.load``, as for any state-dict file."""
    path = folder / "ViT-B-16.pt"
    torch.save(state, path)
    return path


def write_descriptions(folder: Path, stem: str) -> dict[str, list[str]]:
    descriptions = {name: [d.format(name) for d in DESCRIPTIONS] for name in CLASSNAMES}
    (folder / "gpt_file").mkdir(exist_ok=True)
    (folder / "gpt_file" / f"{stem}_prompt.json").write_text(json.dumps(descriptions, indent=1))
    return descriptions


def consistency(distill: str, text, image, pre_text, pre_image) -> dict[str, torch.Tensor]:
    """The official consistency terms on normalised features."""
    if distill == "cosine":
        cos = torch.nn.CosineSimilarity(dim=1, eps=1e-07)
        return {"text": 1.0 - cos(text, pre_text).mean(),
                "image": 1.0 - cos(image, pre_image).mean()}
    return {"text": F.mse_loss(text, pre_text), "image": F.mse_loss(image, pre_image)}


def run_once(trainer, images, second, labels, named) -> dict:
    model = trainer.model
    taps = {"image": model.image_encoder, "text": model.text_encoder,
            "adapter_image": model.adapter_image, "adapter_text": model.adapter_text}
    logits, seen = H.official_eval(trainer, images, taps)
    random.seed(PICK_SEED)
    frozen_taps = {"frozen_image": model.model_distill.visual, **taps}
    step = H.official_train_step(trainer, {"img": [images, second], "label": labels}, named,
                                 frozen_taps)
    return {"logits": logits, "eval": seen, "step": step}


def run_variant(train, module, code: Path, variant: str, recipe, work: Path) -> tuple:
    dataset, stem, extra = VARIANTS[variant]
    descriptions = write_descriptions(work, stem)
    cfg = official_cfg(train, SCRIPT_OPTS + PREC_OPTS + extra, trainer="CoPrompt",
                       config_file=str(code / "configs/trainers/coprompt.yaml"),
                       dataset_config_file=str(code / f"configs/datasets/{dataset}.yaml"))
    trainer = H.build_trainer(module.CoPrompt, cfg, H.fake_data_manager(CLASSNAMES))
    model = trainer.model
    named = H.named_trainables(model)
    spec = [[n, list(p.shape)] for n, p in named.items()]
    values = recipe.trainable_tensors(spec)
    H.round_trip_checkpoint(trainer, values,
                            poison=["prompt_learner.token_prefix", "prompt_learner.token_suffix"])
    images, labels = recipe.images(), torch.tensor(LABELS)
    second = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(SECOND_VIEW_SEED))
    official = run_once(trainer, images, second, labels, named)
    with H.without_fp16_rounding():
        exact = run_once(trainer, images, second, labels, named)

    pick = random.Random(PICK_SEED).randint(0, len(DESCRIPTIONS) - 1)
    descriptions_features = model.ori_embedding.detach().clone()  # [K, N, D], normalised
    out = exact["step"]["outputs"]
    w, distill = float(cfg.TRAINER.W), cfg.TRAINER.DISTILL
    norm = lambda t: t / t.norm(dim=-1, keepdim=True)  # noqa: E731
    image_f = norm(0.1 * out["adapter_image"] + 0.9 * out["image"])
    text_f = norm(0.2 * out["adapter_text"] + 0.8 * out["text"])
    train_logits = model.logit_scale.exp() * image_f @ text_f.t()
    terms = consistency(distill, text_f, image_f, norm(descriptions_features[pick]),
                        norm(out["frozen_image"]))
    ce = F.cross_entropy(train_logits, labels)
    total = ce + w * (terms["text"] + terms["image"])
    if abs(total.item() - exact["step"]["summary"]["loss"]) > 1e-5:
        raise RuntimeError(f"the recorded terms give {total.item()}, the official loss "
                           f"{exact['step']['summary']['loss']}")

    expected = {
        "logits": official["logits"], "logits_without_official_fp16_rounding": exact["logits"],
        "image_features": exact["eval"]["image"], "text_features": exact["eval"]["text"],
        "train_logits": train_logits.detach(), "loss": total.detach(),
        "loss_official_fp16_rounding": torch.tensor(official["step"]["summary"]["loss"]),
        "loss_ce": ce.detach(), "loss_text": terms["text"].detach(),
        "loss_image": terms["image"].detach(),
        "frozen_image_features_second_view": out["frozen_image"],
        "description_features": descriptions_features,
    }
    expected["trainable_values"], expected["trainable_value_summaries"] = H.split_small(values)
    expected["grads"], expected["grad_summaries"] = H.split_small(exact["step"]["grads"])
    zeroed = H.zeroed_logits(trainer, model, images)
    record = {
        "trainer": "CoPrompt", "variant": variant,
        "config_file": "configs/trainers/coprompt.yaml",
        "dataset_config_file": f"configs/datasets/{dataset}.yaml",
        "script_opts": SCRIPT_OPTS, "precision_opts": PREC_OPTS, "extra_opts": extra,
        "config": cfg_subset(cfg, CONFIG_KEYS), "classnames": CLASSNAMES,
        "descriptions_file": f"gpt_file/{stem}_prompt.json", "descriptions": descriptions,
        "description_index_picked": pick, "python_random_seed_before_step": PICK_SEED,
        "second_view_seed": SECOND_VIEW_SEED, "trainable": spec, "seeds": H.SEEDS,
        "labels_for_loss": LABELS, "loss": total.item(), "loss_ce": ce.item(),
        "loss_text": terms["text"].item(), "loss_image": terms["image"].item(), "w": w,
        "distill": distill,
        "loss_official_fp16_rounding": official["step"]["summary"]["loss"],
        "max_abs_logit_change_from_official_fp16_rounding": H.max_abs(official["logits"],
                                                                       exact["logits"]),
        "max_abs_logit_change_when_trainables_zeroed": H.max_abs(zeroed, official["logits"]),
        "checkpoint": "the whole CustomCLIP state_dict under MultiModalPromptLearner/ (both "
                      "frozen CLIPs too)",
    }
    return record, expected


def main() -> None:
    args = H.command_line(__doc__, dassl=True, variants=list(VARIANTS))
    recipe = H.load_recipe()
    code, args.out = args.official.resolve(), args.out.resolve()
    H.use_official(code, args.dassl.resolve(), STUBS)
    train = load_train_module(code)
    module = importlib.import_module("trainers.coprompt")  # the official package, not ours
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = recipe_weights_file(recipe.clip_state_dict(), work)
        module.clip._download = lambda url, root=None: str(path)
        os.chdir(work)  # the official code reads gpt_file/ and writes cache/ here
        for variant in args.variants:
            LOG.info("running %s", variant)
            record, expected = run_variant(train, module, code, variant, recipe, work)
            record = H.provenance("ShuvenduRoy/CoPrompt", args) | record
            record["run"] = H.run_description("trainers/coprompt.py")
            H.write_fixture(args.out, variant, record, expected)


if __name__ == "__main__":
    main()
