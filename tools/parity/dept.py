"""Parity fixtures of DePT (Koorye/DePT) on CoOp and on KgCoOp, computed by the official code.

DePT's "ExtrasLinearProbe" head (channel-wise FiLM on both features, then a linear classifier,
fused with the similarity logits) in the base-to-new setting of ``configs.py`` (``coop_dept``:
``ExtrasLinearProbeCoOp`` with ``vit_b16_ep10_bs4_lr35``; ``kgcoop_dept``:
``ExtrasLinearProbeKgCoOp`` with ``vit_b16_ep10_ctxv1_bs4_lr35``; ``DATASET.NUM_SHOTS 16
DATASET.SUBSAMPLE_CLASSES base`` from ``templates.py``), in fp32, on the deterministic ViT-B/16
and the ten Caltech101 class names of the CoOp fixture.

    python tools/parity/dept.py --official <DePT work tree> --dassl <Dassl work tree> \
        --out <folder>
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import harness as H
import torch
import torch.nn.functional as F
from official_cfg import cfg_subset, load_train_module, official_cfg

LOG = logging.getLogger("parity.dept")
CLASSNAMES = ["face", "leopard", "motorbike", "accordion", "airplane", "anchor", "ant", "barrel",
              "bass", "beaver"]
LABELS = [0, 1, 2, 3]
DATASET = "caltech101"
VARIANTS = {  # fixture name: (official trainer, config name, module)
    "DePT_CoOp": ("ExtrasLinearProbeCoOp", "vit_b16_ep10_bs4_lr35", "trainers.elp_coop"),
    "DePT_KgCoOp": ("ExtrasLinearProbeKgCoOp", "vit_b16_ep10_ctxv1_bs4_lr35",
                    "trainers.elp_kgcoop"),
}
SCRIPT_OPTS = ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]
PREC_OPTS = ["TRAINER.COOP.PREC", "fp32"]
CONFIG_KEYS = ["TRAINER.COOP", "TRAINER.LINEAR_PROBE", "TRAINER.FILM", "TRAINER.NAMES_TO_UPDATE",
               "DATASET.NAME", "DATASET.SUBSAMPLE_CLASSES", "MODEL.BACKBONE.NAME", "INPUT.SIZE",
               "OPTIM"]
STUBS = {"wilds": {"get_dataset": None}, "plotnine": {}}


def dept_trainable_values(spec: list[list]) -> dict[str, torch.Tensor]:
    """The recipe's rule, plus 1 on FiLM's ``scale`` (initialised at one, like a LayerNorm
    weight)."""
    g = torch.Generator().manual_seed(H.SEEDS["trainable"])
    out = {}
    for name, shape in spec:
        std = shape[1] ** -0.5 if (name.endswith(".weight") and len(shape) == 2) else 0.02
        t = torch.randn(shape, generator=g, dtype=torch.float32) * std
        if name.endswith(".scale"):
            t = t + 1
        out[name] = t.half().float()
    return out


class Taps:
    """Records what the official head's methods returned (instance attributes shadow them)."""

    def __init__(self, model, names: list[str]) -> None:
        self.seen: dict[str, list] = {}
        for name in names:
            self.seen[name] = []
            original = getattr(model, name)
            setattr(model, name, self._wrap(original, self.seen[name]))

    @staticmethod
    def _wrap(fn, store: list):
        def wrapped(*args, **kwargs):
            store.append(tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args))
            out = fn(*args, **kwargs)
            store.append(H._detach(out))
            return out
        return wrapped

    def last(self, name: str) -> tuple:
        """(arguments, result) of the last call."""
        return self.seen[name][-2], self.seen[name][-1]


def build(train, module, code: Path, variant: str, subsample: str, loader):
    trainer_name, config, _ = VARIANTS[variant]
    module.load_clip_to_cpu = loader
    importlib.import_module(module.__name__.replace("elp_", "")).load_clip_to_cpu = loader
    opts = ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", subsample] + PREC_OPTS
    cfg = official_cfg(train, opts, trainer=trainer_name,
                       dataset_config_file=str(code / f"configs/datasets/{DATASET}.yaml"),
                       config_file=str(code / f"configs/trainers/{trainer_name}/{config}.yaml"))
    return cfg, H.build_trainer(getattr(module, trainer_name), cfg,
                                H.fake_data_manager(CLASSNAMES))


def learning_rates(trainer, named: dict[str, torch.nn.Parameter], key: str) -> dict[str, float]:
    """Each trainable's learning rate in the optimizer (``key``: ``lr`` now, during the
    warm-up epoch, or ``initial_lr``, the staged rate the cosine schedule starts from)."""
    ids = {id(p): n for n, p in named.items()}
    return {ids[id(p)]: group[key] for group in trainer.optim.param_groups
            for p in group["params"] if id(p) in ids}


def run_variant(train, code: Path, variant: str, recipe, official_clip, state) -> tuple:
    module = importlib.import_module(VARIANTS[variant][2])
    loader = H.clip_loader(official_clip, state)
    cfg, trainer = build(train, module, code, variant, "base", loader)
    model = trainer.model
    named = H.named_trainables(model)
    spec = [[n, list(p.shape)] for n, p in named.items()]
    values = dept_trainable_values(spec)
    H.round_trip_checkpoint(trainer, values, epoch=1,
                            poison=["prompt_learner.token_prefix", "prompt_learner.token_suffix"])
    images, labels = recipe.images(), torch.tensor(LABELS)
    taps = Taps(model, ["_forward_logits_similarity", "_forward_logits_linear_probe", "_loss"])
    logits, seen = H.official_eval(trainer, images, {"image": model.image_encoder,
                                                     "text": model.text_encoder})
    _, sim = taps.last("_forward_logits_similarity")
    _, (lp, _) = taps.last("_forward_logits_linear_probe")
    step = H.official_train_step(trainer, {"img": images, "label": labels}, named)
    loss_args, loss = taps.last("_loss")
    logits_tr, labels_tr, lp_tr, lp_labels = loss_args[:4]
    w = float(cfg.TRAINER.LINEAR_PROBE.WEIGHT)
    terms = {"loss_cls": F.cross_entropy(logits_tr, labels_tr),
             "loss_cls_lp": F.cross_entropy(lp_tr, lp_labels)}
    total = (1 - w) * terms["loss_cls"] + w * terms["loss_cls_lp"]
    if len(loss_args) > 4:  # KgCoOp: w_kg * (1 - mean cos(text, hand-crafted))
        h = model.ori_embedding
        h = h / h.norm(dim=-1, keepdim=True)
        cos = torch.nn.CosineSimilarity(dim=1, eps=1e-07)(loss_args[4], h)
        terms["loss_kg"] = 1.0 - cos.mean()
        total = total + float(cfg.TRAINER.COOP.W) * terms["loss_kg"]
    for value in (loss, torch.tensor(step["summary"]["loss"])):
        if abs(total.item() - float(value)) > 1e-5:
            raise RuntimeError(f"the loss terms give {total.item()}, the official loss {value}")

    expected = {"logits": logits, "logits_similarity": sim, "logits_linear_probe": lp,
                "image_features": seen["image"], "text_features": seen["text"],
                "loss": total.detach(), "labels": labels,
                "train_logits_linear_probe": lp_tr, "train_labels_linear_probe": lp_labels}
    expected["trainable_values"], expected["trainable_value_summaries"] = H.split_small(values)
    expected |= {k: v.detach() for k, v in terms.items()}
    expected["grads"], expected["grad_summaries"] = H.split_small(step["grads"])
    if hasattr(model, "ori_embedding"):
        expected["handcrafted_text_features"] = model.ori_embedding.float().clone()
    record = {
        "trainer": VARIANTS[variant][0], "variant": variant,
        "config_file": f"configs/trainers/{VARIANTS[variant][0]}/{VARIANTS[variant][1]}.yaml",
        "dataset_config_file": f"configs/datasets/{DATASET}.yaml",
        "script_opts": SCRIPT_OPTS, "precision_opts": PREC_OPTS,
        "config": cfg_subset(cfg, CONFIG_KEYS), "classnames": CLASSNAMES,
        "prompt_tokens_decoded": H.decode_prompts(model.prompt_learner.tokenized_prompts),
        "trainable": spec, "seeds": H.SEEDS, "labels_for_loss": LABELS,
        "loss": total.item(), **{k: v.item() for k, v in terms.items()},
        "fusion_weight": w, "kg_weight": float(cfg.TRAINER.COOP.W) if "loss_kg" in terms else 0,
        "learning_rates_after_warmup": learning_rates(trainer, named, "initial_lr"),
        "learning_rates_in_warmup_epoch": learning_rates(trainer, named, "lr"),
        "params_without_grad": [n for n, g in step["grads"].items() if g is None],
        "checkpoint": "the whole CustomCLIP state_dict under PromptLearner/ (frozen CLIP too)",
    }
    record |= sensitivity(trainer, images, expected, w)
    new_cfg, new_trainer = build(train, module, code, variant, "new", loader)
    with torch.no_grad():
        for n, p in H.named_trainables(new_trainer.model).items():
            p.copy_(values[n])
    new_logits, _ = H.official_eval(new_trainer, images, {})
    expected["logits_new_classes"] = new_logits
    record["max_abs_new_class_logits_minus_similarity_logits"] = H.max_abs(new_logits, sim)
    record["new_class_trainables"] = [n for n in H.named_trainables(new_trainer.model)]
    return record, expected


def sensitivity(trainer, images, expected: dict, w: float) -> dict:
    """How far the fused logits (and the loss) move under plausible slips."""
    model = trainer.model
    img, sim, lp = expected["image_features"], expected["logits_similarity"], \
        expected["logits_linear_probe"]
    with torch.no_grad():
        unit = img / img.norm(dim=-1, keepdim=True)
        lp_normalised = model.linear_probe_proj(model.film_lp_img(unit))
        lp_no_film = model.linear_probe_proj(img)
        zeroed = H.zeroed_logits(trainer, model, images)
        img_only = F.cross_entropy(model.linear_probe_proj(model.film_lp_img(img)),
                                   expected["labels"])
    fused = expected["logits"]
    loss_no_text = expected["loss"] - w * expected["loss_cls_lp"] + w * img_only
    return {
        "max_abs_logit_change_when_trainables_zeroed": H.max_abs(zeroed, fused),
        "plausible_slips": {
            "fusion_weight_0.5": H.max_abs((sim + lp) / 2, fused),
            "similarity_logits_only": H.max_abs(sim, fused),
            "linear_probe_on_normalised_image_features": H.max_abs(
                (1 - w) * sim + w * lp_normalised, fused),
            "linear_probe_without_film": H.max_abs((1 - w) * sim + w * lp_no_film, fused),
            "linear_probe_trained_without_the_text_features": {
                "loss": loss_no_text.item()},
        },
    }


def main() -> None:
    args = H.command_line(__doc__, dassl=True, variants=list(VARIANTS))
    recipe = H.load_recipe()
    code = args.official.resolve()
    H.use_official(code, args.dassl.resolve(), STUBS)
    train = load_train_module(code)
    official_clip = importlib.import_module("clip.clip")  # the official package, not ours
    state = recipe.clip_state_dict()
    for variant in args.variants:
        LOG.info("running %s", variant)
        record, expected = run_variant(train, code, variant, recipe, official_clip, state)
        record = H.provenance("Koorye/DePT", args) | record
        record["run"] = H.run_description("trainers/elp_*.py")
        H.write_fixture(args.out, variant, record, expected)


if __name__ == "__main__":
    main()
