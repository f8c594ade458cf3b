"""Parity fixtures of PromptKD (zhengli97/PromptKD), computed by the official code.

The student is the deterministic ViT-B/16 of the recipe; the teacher a small CLIP with
ViT-L/14's embedding width (768, what the official projector maps to; ``recipe.TEACHER``),
loaded by the official ``load_clip_to_cpu_teacher`` from ``./clip/ViT-L-14.pt`` and prompted
from a PromptSRC checkpoint in the official format that this script writes to the official
place (``./teacher_model/...``) in a temporary working directory. Settings:

* ``PromptKD``: ``scripts/promptkd/base2new_train.sh`` (``vit_b16_c2_ep20_batch8_4+4ctx``,
  ``TRAINER.MODAL base2novel``, ``TEMPERATURE 1.0``, ``KD_WEIGHT 1000.0``) on Caltech101;
* ``PromptKD_cross_T2``: ``scripts/promptkd/xd_train.sh``'s config (``..._cross_datasets``:
  student prompt depth 3, ``MODAL cross``) with ``TEMPERATURE 2.0`` (non-default).

Replaced besides the harness's hooks: the official code runs only in fp16 (on a GPU): its
constructor converts the projector to fp16 and never converts the teacher to fp32, so with
``PREC fp32`` the student's fp32 features meet fp16 weights and fp16 teacher features and the
matrix products fail. The projector and the teacher are converted to fp32 after the official
constructor (the teacher's ``dtype`` attributes with it): the fixtures are what the official
computation gives in fp32. Its blocks also cast the vision prompts with ``.half()`` (values
exact here, gradients not): the gradients are recorded with ``Tensor.half`` a no-op, and as
officially (``grads_official_fp16_cast``, the small ones).

    python tools/parity/promptkd.py --official <PromptKD work tree> --out <folder>
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import tempfile
from pathlib import Path

import harness as H
import torch
import torch.nn.functional as F
from official_cfg import cfg_subset, load_train_module, official_cfg

LOG = logging.getLogger("parity.promptkd")
CLASSNAMES = ["face", "leopard", "motorbike", "accordion", "airplane", "anchor", "ant", "barrel",
              "bass", "beaver"]
LABELS = [0, 1, 2, 3]
VARIANTS = {  # fixture: (config, modal, temperature)
    "PromptKD": ("vit_b16_c2_ep20_batch8_4+4ctx", "base2novel", "1.0"),
    "PromptKD_cross_T2": ("vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets", "cross", "2.0"),
}
PREC_OPTS = ["TRAINER.PROMPTKD.PREC", "fp32"]
CONFIG_KEYS = ["TRAINER.PROMPTKD", "TRAINER.MODAL", "DATASET.NAME", "DATASET.NUM_SHOTS",
               "DATASET.SUBSAMPLE_CLASSES", "MODEL.BACKBONE.NAME", "OPTIM"]
STUBS = {"wilds": {"get_dataset": None}, "plotnine": {}}


def value_rule(spec: list[list]) -> dict[str, torch.Tensor]:
    """The recipe's generator (seed 11) with PromptKD's rule: prompts std 0.02; the projector's
    kernels std ``fan_in ** -0.5``, biases 0.02, its BatchNorm weight ``1 + 0.02 · randn``."""
    g = torch.Generator().manual_seed(H.SEEDS["trainable"])
    out = {}
    for name, shape in spec:
        kernel = name.endswith(".weight") and len(shape) in (2, 4)
        t = torch.randn(shape, generator=g, dtype=torch.float32) * (
            shape[1] ** -0.5 if kernel else 0.02)
        if name.endswith("conv1.1.weight"):
            t = t + 1
        out[name] = t.half().float()
    return out


def teacher_file(recipe, n_ctx_text: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """A PromptSRC teacher checkpoint as the official code writes it: the whole model (its
    prompts under IVLP's names, the token buffers, the frozen CLIP, the zero-shot image encoder
    copy) in Dassl's dict. Returns (the file's dict, the prompt values)."""
    width = recipe.TEACHER["width"]
    spec = [["prompt_learner.ctx", [n_ctx_text, width]], ["image_encoder.VPT", [4, width]],
            ["image_encoder.transformer.resblocks.1.VPT_shallow", [4, width]],
            ["text_encoder.transformer.resblocks.1.VPT_shallow", [n_ctx_text, width]]]
    g = torch.Generator().manual_seed(12)
    prompts = {n: (torch.randn(s, generator=g) * 0.02).half().float() for n, s in spec}
    state = dict(prompts)
    frozen = recipe.teacher_state_dict()
    for key, value in frozen.items():
        if key.startswith("visual."):
            state["image_encoder." + key.removeprefix("visual.")] = value
            state["prompt_learner.ZS_image_encoder." + key.removeprefix("visual.")] = value
        elif key.startswith(("transformer.", "ln_final.", "text_projection",
                             "positional_embedding")):
            state["text_encoder." + key] = value
        elif key == "logit_scale":
            state[key] = value
    state["prompt_learner.token_prefix"] = torch.full((10, 1, width), 7.0)
    state["prompt_learner.token_suffix"] = torch.full((10, 77 - 1 - n_ctx_text, width), 7.0)
    return {"state_dict": state, "epoch": 20, "optimizer": None, "scheduler": None}, prompts


class Recorder:
    """Stands in for the official evaluator: keeps the outputs ``test()`` hands it."""

    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []

    def reset(self) -> None:
        self.outputs = []

    def process(self, output: torch.Tensor, label: torch.Tensor) -> None:
        self.outputs.append(output.detach().clone())

    def evaluate(self) -> dict:
        return {"accuracy": 0.0}


def official_test(trainer, split: str, images: torch.Tensor) -> torch.Tensor:
    batch = {"img": images, "label": torch.tensor(LABELS)}
    trainer.val_loader = trainer.test_loader = [batch]
    trainer.evaluator = Recorder()
    trainer.test(split)
    return trainer.evaluator.outputs[-1]


def run_once(trainer, named, images, labels, cfg) -> dict:
    """Eval outputs of the official ``test`` and one official training step, with taps."""
    out = {"val": official_test(trainer, "val", images),
           "test": official_test(trainer, "test", images)}
    taps = {"teacher": trainer.model_teacher, "student": trainer.model}
    bn = trainer.model.VPT_image_trans.conv1[1]
    initial = {k: v.clone() for k, v in bn.state_dict().items()}
    as_official = H.official_train_step(trainer, {"img": images, "label": labels}, named)
    bn.load_state_dict(initial)
    with H.without_fp16_rounding():
        step = H.official_train_step(trainer, {"img": images, "label": labels}, named, taps)
    tea_image, tea_text, tea_logits = step["outputs"]["teacher"]
    image_ft, scale = step["outputs"]["student"]
    stu_logits = scale * image_ft @ tea_text.t()
    t = float(cfg.TRAINER.PROMPTKD.TEMPERATURE)
    kd = F.kl_div(F.log_softmax(stu_logits / t, dim=1), F.softmax(tea_logits / t, dim=1),
                  reduction="sum") * t * t / stu_logits.numel()
    total = float(cfg.TRAINER.PROMPTKD.KD_WEIGHT) * kd
    if abs(total.item() - step["summary"]["loss"]) > 1e-4 * max(1.0, abs(total.item())):
        raise RuntimeError(f"the recorded terms give {total.item()}, the official loss "
                           f"{step['summary']['loss']}")
    return out | {"step": step, "grads_official_fp16_cast": as_official["grads"],
                  "teacher_text": tea_text.float(),
                  "teacher_logits": tea_logits.float(), "student_logits": stu_logits.float(),
                  "student_features": image_ft.float(), "kd": kd.float(), "loss": total.float(),
                  "running_mean": bn.running_mean.clone(), "running_var": bn.running_var.clone()}


def teacher_in_fp32(trainer) -> None:
    teacher = trainer.model_teacher
    teacher.float()
    teacher.dtype = teacher.text_encoder.dtype = torch.float32


def run_variant(train, module, code: Path, variant: str, recipe, work: Path) -> tuple:
    config, modal, temperature = VARIANTS[variant]
    opts = ["DATASET.NUM_SHOTS", "0", "TRAINER.MODAL", modal, "TRAINER.PROMPTKD.TEMPERATURE",
            temperature, "TRAINER.PROMPTKD.KD_WEIGHT", "1000.0"] + (
        ["DATASET.SUBSAMPLE_CLASSES", "all"] if modal == "cross" else [])
    cfg = official_cfg(train, opts + PREC_OPTS, trainer="PromptKD",
                       config_file=str(code / f"configs/trainers/PromptKD/{config}.yaml"),
                       dataset_config_file=str(code / "configs/datasets/caltech101.yaml"))
    checkpoint, prompts = teacher_file(recipe, cfg.TRAINER.PROMPTKD.N_CTX_TEXT)
    where = ("teacher_model/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20"
             if modal == "cross" else "teacher_model/Caltech101/VLPromptLearner/model-best.pth.tar")
    (work / where).parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, work / where)
    trainer = H.build_trainer(module.PromptKD, cfg, H.fake_data_manager(CLASSNAMES))
    teacher_state = dict(trainer.model_teacher.named_parameters())
    for key, value in prompts.items():
        if not torch.equal(teacher_state[key].float(), value):
            raise RuntimeError(f"the official code did not load the teacher's {key}")
    trainer.model.VPT_image_trans.float()
    named = H.named_trainables(trainer.model)
    spec = [[n, list(p.shape)] for n, p in named.items()]
    values = value_rule(spec)
    H.round_trip_checkpoint(trainer, values, poison=[])
    images, labels = recipe.images(), torch.tensor(LABELS)
    teacher_in_fp32(trainer)
    exact = run_once(trainer, named, images, labels, cfg)
    m = math.ceil(len(CLASSNAMES) / 2)

    expected = {
        "val_logits": exact["val"], "test_logits": exact["test"],
        "teacher_text_features": exact["teacher_text"], "teacher_logits": exact["teacher_logits"],
        "student_logits": exact["student_logits"], "student_features": exact["student_features"],
        "loss": exact["loss"], "loss_kd": exact["kd"],
        "bn_running_mean_after_step": exact["running_mean"],
        "bn_running_var_after_step": exact["running_var"],
        "teacher_prompts": prompts,
    }
    expected["trainable_values"], expected["trainable_value_summaries"] = H.split_small(values)
    expected["grads"], expected["grad_summaries"] = H.split_small(exact["step"]["grads"])
    expected["grads_official_fp16_cast"], _ = H.split_small(exact["grads_official_fp16_cast"])
    record = {
        "trainer": "PromptKD", "variant": variant,
        "config_file": f"configs/trainers/PromptKD/{config}.yaml",
        "dataset_config_file": "configs/datasets/caltech101.yaml", "script_opts": opts,
        "precision_opts": PREC_OPTS, "config": cfg_subset(cfg, CONFIG_KEYS),
        "classnames": CLASSNAMES, "labels_for_loss": LABELS, "trainable": spec,
        "seeds": H.SEEDS | {"teacher_weights": recipe.TEACHER["seed"], "teacher_prompts": 12},
        "teacher": dict(recipe.TEACHER), "teacher_checkpoint": where,
        "teacher_checkpoint_keys": sorted(prompts), "base_classes": m,
        "loss": exact["loss"].item(), "loss_kd": exact["kd"].item(),
        "checkpoint": "the whole student CustomCLIP state_dict under VLPromptLearner/",
    }
    return record, expected


def main() -> None:
    args = H.command_line(__doc__, dassl=False, variants=list(VARIANTS))
    recipe = H.load_recipe()
    code, args.out = args.official.resolve(), args.out.resolve()
    H.use_official(code, code / "Dassl.pytorch", STUBS)
    train = load_train_module(code)
    module = importlib.import_module("trainers.promptkd")  # the official package, not ours
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "clip").mkdir()
        torch.save(recipe.clip_state_dict(), work / "clip" / "ViT-B-16.pt")
        torch.save(recipe.teacher_state_dict(), work / "clip" / "ViT-L-14.pt")
        os.chdir(work)  # the official code reads ./clip/ and ./teacher_model/
        for variant in args.variants:
            LOG.info("running %s", variant)
            record, expected = run_variant(train, module, code, variant, recipe, work)
            record = H.provenance("zhengli97/PromptKD", args) | record
            record["run"] = H.run_description("trainers/promptkd.py") + (
                "; eval logits from the official test() on val and test")
            H.write_fixture(args.out, variant, record, expected)


if __name__ == "__main__":
    main()
