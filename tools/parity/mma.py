"""Parity fixtures of MMA (ZjjConan/Multi-Modal-Adapter), computed by the official code.

The base-to-new setting of ``scripts/mmadapter/base2new_train.sh`` with the config of
``run_examples.sh`` (``vit_b16_ep5``: adapters on blocks 5-12, width 32, scale 0.001;
``DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base``), in fp32 (``TRAINER.MMADAPTER.PREC``;
the config's ``amp`` needs a GPU), on the deterministic ViT-B/16 and the ten Caltech101 class
names of the CoOp fixture:

* ``MMA``: the config as shipped;
* ``MMA_blocks9to11``: adapters on blocks 9-11 only, scale 0.1 (``ADAPTER_START 9
  ADAPTER_END 11 ADAPTER_SCALE 0.1``).

    python tools/parity/mma.py --official <MMA work tree> --dassl <Dassl work tree> \
        --out <folder>
"""

from __future__ import annotations

import importlib
import logging

import harness as H
import torch
import torch.nn.functional as F
from official_cfg import cfg_subset, official_cfg

LOG = logging.getLogger("parity.mma")
CLASSNAMES = ["face", "leopard", "motorbike", "accordion", "airplane", "anchor", "ant", "barrel",
              "bass", "beaver"]
LABELS = [0, 1, 2, 3]
DATASET = "caltech101"
SCRIPT_OPTS = ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]
PREC_OPTS = ["TRAINER.MMADAPTER.PREC", "fp32"]
VARIANTS = {"MMA": [],
            "MMA_blocks9to11": ["TRAINER.MMADAPTER.ADAPTER_START", "9",
                                "TRAINER.MMADAPTER.ADAPTER_END", "11",
                                "TRAINER.MMADAPTER.ADAPTER_SCALE", "0.1"]}
CONFIG_KEYS = ["TRAINER.MMADAPTER", "DATASET.NAME", "DATASET.SUBSAMPLE_CLASSES",
               "MODEL.BACKBONE.NAME", "INPUT.SIZE", "OPTIM"]
STUBS = {"wilds": {"get_dataset": None}, "plotnine": {}}


def run_variant(args, train, name: str) -> None:
    recipe = H.load_recipe()
    state = recipe.clip_state_dict()
    module = importlib.import_module("trainers.mmadapter")
    module.load_clip_to_cpu = H.clip_loader(importlib.import_module("clip.clip"), state)
    code = args.official.resolve()
    opts = SCRIPT_OPTS + PREC_OPTS + VARIANTS[name]
    cfg = official_cfg(train, opts, trainer="MultiModalAdapter",
                       config_file=str(code / "configs/trainers/MultiModalAdapter/"
                                              "vit_b16_ep5.yaml"),
                       dataset_config_file=str(code / f"configs/datasets/{DATASET}.yaml"))
    trainer = H.build_trainer(module.MultiModalAdapter, cfg, H.fake_data_manager(CLASSNAMES))
    model, learner = trainer.model, trainer.model.adapter_learner
    named = H.named_trainables(model)
    spec = [[n, list(p.shape)] for n, p in named.items()]
    values = recipe.trainable_tensors(spec)
    H.round_trip_checkpoint(trainer, {k.removeprefix("adapter_learner."): v
                                      for k, v in values.items()},
                            poison=["token_embedding"])
    images, labels = recipe.images(), torch.tensor(LABELS)
    logits, seen = H.official_eval(trainer, images, {"image": model.image_encoder,
                                                     "text": model.text_encoder})
    model.text_features_for_inference = None  # the official eval cache
    step = H.official_train_step(trainer, {"img": images, "label": labels}, named,
                                 {"model": model})
    train_logits = step["outputs"]["model"]
    loss = F.cross_entropy(train_logits, labels)
    if abs(loss.item() - step["summary"]["loss"]) > 1e-6:
        raise RuntimeError("the recorded logits do not give the official loss")
    zeroed = H.zeroed_logits(trainer, learner, images)
    model.text_features_for_inference = None
    grads, grad_summaries = H.split_small(step["grads"], limit=4096)
    expected = {
        "logits": logits, "image_features": seen["image"], "text_features": seen["text"],
        "train_logits": train_logits, "loss": loss, "labels": labels,
        # the trainables are the recipe's (recipe.trainable_tensors of "trainable"); gradients
        # over 4096 entries as summaries (norm, sum, strided sample)
        "grads": grads, "grad_summaries": grad_summaries,
    }
    record = H.provenance("ZjjConan/Multi-Modal-Adapter", args) | {
        "trainer": "MultiModalAdapter",
        "config_file": "configs/trainers/MultiModalAdapter/vit_b16_ep5.yaml",
        "dataset_config_file": f"configs/datasets/{DATASET}.yaml",
        "script_opts": SCRIPT_OPTS, "precision_opts": PREC_OPTS,
        "variant_opts": VARIANTS[name], "config": cfg_subset(cfg, CONFIG_KEYS),
        "classnames": CLASSNAMES,
        "prompt_tokens_decoded": H.decode_prompts(learner.tokenized_prompts),
        "trainable": spec, "seeds": H.SEEDS, "labels_for_loss": LABELS,
        "checkpoint_keys": sorted(learner.state_dict()), "loss": loss.item(),
        "max_abs_logit_change_when_trainables_zeroed": H.max_abs(zeroed, logits),
        "run": H.run_description("trainers/mmadapter.py"),
    }
    H.write_fixture(args.out, name, record, expected)


def main() -> None:
    H.run_variants(__doc__, VARIANTS, run_variant, STUBS)


if __name__ == "__main__":
    main()
