"""Parity fixtures of TCP (htyao89/Textual-based_Class-aware_prompt_tuning), computed by the
official code.

The base-to-new setting of ``scripts/base2new_train.sh`` (config ``vit_b16_ep100_ctxv1``,
``N_CTX 4``, ``CSC False``, ``W 1.0``, class token at the end, ``SUBSAMPLE_CLASSES base``), in
fp32 (``TRAINER.COOP.PREC`` and ``TRAINER.COCOOP.PREC``, which sets the meta-net's dtype), on
the deterministic ViT-B/16:

* ``TCP``: Caltech101 (class prompts "X X X X {}."), the class-aware tokens at text layer 8
  (the official constant);
* ``TCP_layer4_pets``: OxfordPets (class prompts "X X X X {}, a type of pet."), the tokens at
  text layer 4. The official code fixes the layer in the blocks' forward (``counter in [8]``,
  the counter starting at 0 in the text encoder); the run starts the counter at 8 - 4 instead,
  by wrapping the text blocks' ``nn.Sequential`` (the blocks read the counter only for that).

The replacement ``load_clip_to_cpu`` returns the recipe's CLIP in fp32 (the official code
loads a second, fp16 CLIP for the hand-crafted features; fp16 features would not even reach a
fp32 meta-net): what a fp32 run computes.

    python tools/parity/tcp.py --official <TCP work tree> --dassl <Dassl work tree> \
        --out <folder>
"""

from __future__ import annotations

import importlib
import logging

import harness as H
import torch
import torch.nn.functional as F
from official_cfg import cfg_subset, official_cfg

LOG = logging.getLogger("parity.tcp")
OFFICIAL_LAYER = 8
VARIANTS = {  # fixture: (dataset config, class names, insertion layer)
    "TCP": ("caltech101", ["face", "leopard", "motorbike", "accordion", "airplane", "anchor",
                           "ant", "barrel", "bass", "beaver"], OFFICIAL_LAYER),
    "TCP_layer4_pets": ("oxford_pets", ["abyssinian", "american_bulldog", "beagle", "bengal",
                                        "boxer", "british_shorthair", "chihuahua",
                                        "egyptian_mau", "great_pyrenees", "pug"], 4),
}
LABELS = [0, 1, 2, 3]
SCRIPT_OPTS = ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "1.0",
               "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "DATASET.NUM_SHOTS", "16",
               "DATASET.SUBSAMPLE_CLASSES", "base"]
PREC_OPTS = ["TRAINER.COOP.PREC", "fp32", "TRAINER.COCOOP.PREC", "fp32"]
CONFIG_KEYS = ["TRAINER.COOP", "TRAINER.COCOOP.PREC", "DATASET.NAME",
               "DATASET.SUBSAMPLE_CLASSES", "MODEL.BACKBONE.NAME", "INPUT.SIZE", "OPTIM"]
KG_WEIGHT = 8.0  # the official loss: cross_entropy + 8.0 * score
STUBS = {"wilds": {"get_dataset": None}, "plotnine": {}}


class CounterStart(torch.nn.Module):
    """The official text blocks (an ``nn.Sequential`` over ``[x, tokens, weight, counter]``)
    run with the counter starting at ``start`` instead of 0."""

    def __init__(self, blocks: torch.nn.Sequential, start: int) -> None:
        super().__init__()
        self.blocks, self.start = blocks, start

    def forward(self, inputs):
        if isinstance(inputs, list) and len(inputs) == 4:
            inputs = [*inputs[:3], self.start]
        return self.blocks(inputs)


def fp32_loader(official_clip, state):
    load = H.clip_loader(official_clip, state)
    return lambda cfg: load(cfg).float()


def run_variant(args, train, name: str) -> None:
    dataset, classnames, layer = VARIANTS[name]
    recipe = H.load_recipe()
    state = recipe.clip_state_dict()
    module = importlib.import_module("trainers.tcp")
    official_clip = importlib.import_module("trainers.clip_text.clip")
    module.load_clip_to_cpu = fp32_loader(official_clip, state)
    code = args.official.resolve()
    cfg = official_cfg(train, SCRIPT_OPTS + PREC_OPTS, trainer="TCP",
                       config_file=str(code / "configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml"),
                       dataset_config_file=str(code / f"configs/datasets/{dataset}.yaml"))
    trainer = H.build_trainer(module.TCP, cfg, H.fake_data_manager(classnames))
    model, learner = trainer.model, trainer.model.prompt_learner
    transformer = model.text_encoder.transformer
    if layer != OFFICIAL_LAYER:
        transformer.resblocks = CounterStart(transformer.resblocks, OFFICIAL_LAYER - layer)
    named = H.named_trainables(model)
    spec = [[n, list(p.shape)] for n, p in named.items()]
    values = recipe.trainable_tensors(spec)
    H.round_trip_checkpoint(trainer, {k.removeprefix("prompt_learner."): v
                                      for k, v in values.items()},
                            poison=["token_prefix", "token_suffix"])
    images, labels = recipe.images(), torch.tensor(LABELS)
    taps = {"image": model.image_encoder, "text": model.text_encoder, "learner": learner}
    logits, seen = H.official_eval(trainer, images, taps)
    step = H.official_train_step(trainer, {"img": images, "label": labels}, named,
                                 {"model": model, "text": model.text_encoder})
    train_logits, loss = step["outputs"]["model"]
    ce = F.cross_entropy(train_logits, labels)
    text = step["outputs"]["text"]
    t = text / text.norm(dim=-1, keepdim=True)
    h = learner.text_features
    score = 1.0 - F.cosine_similarity(t, h / h.norm(dim=-1, keepdim=True), dim=1, eps=1e-7).mean()
    if abs((ce + KG_WEIGHT * score).item() - loss.item()) > 1e-5:
        raise RuntimeError("the recorded terms do not add up to the official loss")
    zeroed = H.zeroed_logits(trainer, learner, images)
    class_tokens = seen["learner"][1]
    grads, grad_summaries = H.split_small(step["grads"])
    expected = {
        "logits": logits, "image_features": seen["image"], "text_features": seen["text"],
        "class_aware_tokens": class_tokens, "handcrafted_text_features": h.float().clone(),
        "loss": loss, "loss_ce": ce, "loss_kg": score, "labels": labels,
        # the trainables are the recipe's (recipe.trainable_tensors of "trainable"); gradients
        # over 16384 entries as summaries (norm, sum, strided sample)
        "grads": grads, "grad_summaries": grad_summaries,
    }
    record = H.provenance("htyao89/Textual-based_Class-aware_prompt_tuning", args) | {
        "trainer": "TCP", "config_file": "configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml",
        "dataset_config_file": f"configs/datasets/{dataset}.yaml",
        "script_opts": SCRIPT_OPTS, "precision_opts": PREC_OPTS,
        "config": cfg_subset(cfg, CONFIG_KEYS), "classnames": classnames,
        "insertion_layer": layer, "kg_weight": KG_WEIGHT,
        "prompt_tokens_decoded": H.decode_prompts(learner.tokenized_prompts),
        "trainable": spec, "seeds": H.SEEDS, "labels_for_loss": LABELS,
        "checkpoint_keys": sorted(learner.state_dict()),
        "loss": loss.item(), "loss_ce": ce.item(), "loss_kg": score.item(),
        "max_abs_logit_change_when_trainables_zeroed": H.max_abs(zeroed, logits),
        "run": H.run_description("trainers/tcp.py"),
    }
    if layer != OFFICIAL_LAYER:
        record["counter_start"] = OFFICIAL_LAYER - layer
    H.write_fixture(args.out, name, record, expected)


def main() -> None:
    H.run_variants(__doc__, VARIANTS, run_variant, STUBS)


if __name__ == "__main__":
    main()
