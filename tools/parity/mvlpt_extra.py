"""Parity fixtures of two more MVLPT variants, computed by the official code.

``MVLPT_MCoCoOp`` (the ``COCOOP`` branch of the ELEVATER scripts: ``TRAINER.MVLPT.COCOOP.N_CTX
4`` only) and ``MVLPT_MUPT_pertask`` (the ``UPT`` branch plus ``--multi-task-label_pertask``),
in the setting of the existing MVLPT fixtures: the deterministic ViT-B/16, the 3-task CoOp-data
label space below, the same images, labels, tasks and trainable recipe.

    python tools/parity/mvlpt_extra.py --official <MVLPT work tree> --dassl <Dassl work tree> \
        --out <folder>
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import harness as H
import torch
from official_cfg import cfg_subset, load_train_module, official_cfg

LOG = logging.getLogger("parity.mvlpt")
TASKS = {"Caltech101": ["face", "leopard", "motorbike", "accordion"],
         "OxfordPets": ["abyssinian", "american_bulldog", "american_pit_bull_terrier"],
         "EuroSAT": ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land"]}
LABELS, TASK_IDS = [0, 5, 8, 2], [0, 1, 2, 0]
COMMON_OPTS = ["TRAINER.MVLPT.PREC", "fp32", "TEST.NO_TEST", "False", "TEST.FINAL_MODEL",
               "best_val"]
COOP_OPTS = ["TRAINER.MVLPT.COOP.CLASS_TOKEN_POSITION", "middle", "TRAINER.MVLPT.COOP.CSC",
             "False"]
VARIANTS = {
    # name: (script opts, extra opts the shipped branch passes, --multi-task-label_pertask)
    "MVLPT_MCoCoOp": (["TRAINER.MVLPT.COCOOP.N_CTX", "4"], ["TRAINER.MVLPT.COCOOP.PREC", "fp32"],
                      False),
    "MVLPT_MUPT_pertask": (["TRAINER.MVLPT.VPT.N_CTX", "4", "TRAINER.MVLPT.COOP.N_CTX", "4",
                            "TRAINER.CUT_CONTEXTLEN", "True"], COOP_OPTS, True),
}
CONFIG_KEYS = ["TRAINER.MVLPT", "TRAINER.CUT_CONTEXTLEN", "TRAINER.ACT_CKPT", "DATASET.COOP",
               "DATASET.MULTITASK", "DATASET.MULTITASK_LABEL_PERTASK", "DATASET.DATASET",
               "MODEL.BACKBONE.NAME", "INPUT.SIZE"]
STUBS = {"wilds": {"get_dataset": None}}
ELEVATER_STUBS = {  # the ELEVATER toolkit the ELEVATER-data managers use (not the CoOp layout)
    "trainers.vision_benchmark.evaluation": {"construct_dataloader": None,
                                             "construct_multitask_dataset": None},
    "trainers.vision_benchmark.datasets": {"class_map_metric": {}, "get_metric": None,
                                           "class_map": {}},
}


def build(train, mvlpt, code_dir: Path, variant: str):
    script_opts, extra_opts, pertask = VARIANTS[variant]
    cfg = official_cfg(train, script_opts + COMMON_OPTS + extra_opts,
                       config_file=str(code_dir / "configs/trainers/MVLPT/vit_b16.yaml"),
                       trainer="MVLPT", dataset=",".join(TASKS), multi_task=True,
                       dataset_coop=True, multi_task_label_pertask=pertask, cut_contextlen=False,
                       act_ckpt=1, multi_task_evalkey="average", shots=None)
    classnames = [c for names in TASKS.values() for c in names]
    # MVLPTCOOPDataManager has no ``_labelmap``: the per-task mask reads it from the ELEVATER
    # manager (one entry per task), so the fake manager carries it (see the README, slips).
    dm = H.fake_data_manager(classnames, _num_classes=len(classnames),
                             _task_names=list(TASKS), _labelmap=dict(TASKS),
                             _id2task=dict(enumerate(TASKS)))

    def multitask_flags(trainer) -> None:
        trainer.multi_task = trainer.cfg.DATASET.MULTITASK
        trainer.multi_task_label_pertask = trainer.cfg.DATASET.MULTITASK_LABEL_PERTASK

    trainer = H.build_trainer(mvlpt.MVLPT, cfg, dm, multitask_flags)
    return cfg, trainer, script_opts, extra_opts


def run_variant(train, mvlpt, code_dir: Path, variant: str, images: torch.Tensor) -> tuple:
    cfg, trainer, script_opts, extra_opts = build(train, mvlpt, code_dir, variant)
    model, learner = trainer.model, trainer.model.prompt_learner
    spec = H.trainable_spec(learner, "prompt_learner.")
    values = H.load_recipe().mvlpt_trainable_tensors(spec)  # the fixtures' rule
    H.round_trip_checkpoint(trainer, {k.removeprefix("prompt_learner."): v
                                      for k, v in values.items()},
                            poison=["token_prefix", "token_suffix"])
    labels, tasks = torch.tensor(LABELS), torch.tensor(TASK_IDS)
    named = {"prompt_learner." + n: p for n, p in learner.named_parameters()}

    projections: list = []
    learner.forward_mvlpt_proj = _tap(learner.forward_mvlpt_proj, projections)
    meta: list = []
    if learner.cocoop_ctx is not None:
        H.capture_outputs(learner.meta_net, meta)
    image_out: list = []
    text_out: list = []
    H.capture_outputs(model.image_encoder, image_out)
    H.capture_outputs(model.text_encoder, text_out)

    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(images, task=tasks)
    image_features = image_out[-1].detach().clone()
    text_features = torch.stack([t.detach() for t in text_out]) if len(text_out) > 1 \
        else text_out[-1].detach().clone()
    eval_projection = projections[-1]
    eval_meta = meta[-1].detach().clone() if meta else None

    trainer.set_model_mode("train")
    recorder = H.StepRecorder(trainer, named)
    train_logits: list = []
    H.capture_outputs(model, train_logits)
    trainer.batch_idx, trainer.num_batches = 0, 2  # not the last batch: no scheduler step
    summary = trainer.forward_backward({"img": images, "label": labels, "domain": tasks})
    grads = recorder.grads
    loss = torch.nn.functional.cross_entropy(train_logits[-1].detach(), labels)
    if abs(loss.item() - summary["loss"]) > 1e-6:
        raise RuntimeError("the recorded train logits do not give the official loss")

    expected = {"logits": logits.detach().clone(), "loss": loss, "labels": labels,
                "tasks": tasks, "image_features": image_features,
                "text_features": text_features}
    whole, summaries = H.split_small(grads)
    expected["grads"] = whole
    expected["grad_summaries"] = summaries
    coop, vpt, vpt_deep = eval_projection
    if learner.coop_n_ctx and learner.vpt_n_ctx:
        expected["text_ctx_after_projection"] = coop.detach().clone()
        expected["vpt_shallow_after_projection"] = vpt.detach().clone()
        expected["vpt_deep_after_projection"] = vpt_deep.detach().clone()
    if eval_meta is not None:
        expected["meta_net_output"] = eval_meta
    record = {
        "trainer": "MVLPT", "variant": variant,
        "script_opts": script_opts, "common_opts": COMMON_OPTS + extra_opts,
        "config": cfg_subset(cfg, CONFIG_KEYS),
        "classnames": [c for names in TASKS.values() for c in names],
        "task_names": list(TASKS), "task_class_ranges": _ranges(),
        "prompt_strings": _prompt_strings(learner, trainer),
        "text_context_length": int(learner.tokenized_prompts.shape[1]),
        "eot_positions": learner.tokenized_prompts.argmax(-1).tolist(),
        "trainable": spec,
        "trainable_checksums": {k: [v.double().sum().item(), v.double().norm().item()]
                                for k, v in values.items()},
        "seeds": H.SEEDS, "labels_for_loss": LABELS, "tasks_for_loss": TASK_IDS,
        "loss": loss.item(),
        "loss_from_eval_logits": torch.nn.functional.cross_entropy(logits, labels).item(),
        "train_acc": summary["acc"], "num_tasks_in_batch": summary.get("num_tasks"),
        "params_without_grad": [n for n, g in grads.items() if g is None],
        "grad_summaries_note": "tensors over 16384 values: norm, sum and flat[::step][:256]",
    }
    return trainer, record, expected, values


def _tap(fn, store: list):
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        store.append(tuple(o.detach().clone() if o is not None else None for o in out))
        return out
    return wrapped


def _ranges() -> dict[str, list[int]]:
    out, start = {}, 0
    for task, names in TASKS.items():
        out[task] = [start, start + len(names)]
        start += len(names)
    return out


def _prompt_strings(learner, trainer) -> list[str]:
    n = learner.cocoop_n_ctx or learner.coop_n_ctx
    prefix = " ".join(["X"] * n) if n else "a photo of a "
    return [f"{prefix} {c.replace('_', ' ')}." for c in trainer.dm.dataset.classnames]


def sensitivity(trainer, variant: str, images: torch.Tensor, expected: dict) -> dict:
    """How far the logits (and loss) move under plausible slips of a re-implementation."""
    model, learner = trainer.model, trainer.model.prompt_learner
    tasks, labels = expected["tasks"], expected["labels"]
    trainer.set_model_mode("eval")
    out: dict = {}
    with torch.no_grad():
        if variant == "MVLPT_MUPT_pertask":
            model.multi_task_label_pertask = False
            unmasked = trainer.model_inference(images, task=tasks)
            model.multi_task_label_pertask = True
            expected["logits_without_mask"] = unmasked.clone()
            ranges = torch.tensor([_ranges()[t] for t in TASKS])[tasks]
            cls = torch.arange(unmasked.shape[1])
            inside = (cls >= ranges[:, :1]) & (cls < ranges[:, 1:])
            ce = torch.nn.functional.cross_entropy
            out["no_per_task_mask"] = {
                "max_abs_logit_change": H.max_abs(unmasked, expected["logits"]),
                "loss": ce(unmasked, labels).item()}
            out["mask_with_minus_inf_instead_of_zero"] = {
                "loss": ce(unmasked.masked_fill(~inside, float("-inf")), labels).item()}
        else:
            norms = expected["image_features"].norm(dim=-1, keepdim=True)
            original = learner.forward_cocoop
            learner.forward_cocoop = lambda f: original(f * norms)
            slip = trainer.model_inference(images, task=tasks)
            learner.forward_cocoop = original
            out["meta_net_fed_unnormalised_image_features"] = {
                "max_abs_logit_change": H.max_abs(slip, expected["logits"])}
        saved = {n: p.detach().clone() for n, p in learner.named_parameters()}
        for p in learner.parameters():
            p.zero_()
        zeroed = trainer.model_inference(images, task=tasks)
        for n, p in learner.named_parameters():
            p.copy_(saved[n])
        again = trainer.model_inference(images, task=tasks)
    if not torch.equal(again, expected["logits"]):
        raise RuntimeError("restoring the trainables did not restore the logits")
    return {"max_abs_logit_change_when_trainables_zeroed": H.max_abs(zeroed, expected["logits"]),
            "plausible_slips": out}


def main() -> None:
    args = H.command_line(__doc__, dassl=True, variants=list(VARIANTS))
    recipe = H.load_recipe()
    code = args.official.resolve()
    H.use_official(code, args.dassl.resolve(), STUBS)
    for name, attrs in ELEVATER_STUBS.items():
        H.stub_submodule(name, attrs)
    train = load_train_module(code)
    mvlpt = importlib.import_module("trainers.mvlpt")  # the official packages, not ours
    official_clip = importlib.import_module("clip.clip")
    mvlpt.load_clip_to_cpu = H.clip_loader(official_clip, recipe.clip_state_dict())
    images = recipe.images()
    for variant in args.variants:
        LOG.info("running %s", variant)
        trainer, record, expected, _ = run_variant(train, mvlpt, code, variant, images)
        record.update(sensitivity(trainer, variant, images, expected))
        record = H.provenance("sIncerass/MVLPT", args) | record
        record["run"] = H.run_description("trainers/mvlpt.py")
        H.write_fixture(args.out, variant, record, expected)


if __name__ == "__main__":
    main()
