"""Parity fixture of ProGrad (BeierZhu/Prompt-align), computed by the official code.

The base-to-new setting of ``scripts/base2new_train_prograd.sh`` (config ``rn50_ep100`` with
the backbone switched to ViT-B/16, ``N_CTX 16``, ``CSC False``, class token at the end,
``LOSS.LAMBDA 1.0``, ``SUBSAMPLE_CLASSES base``), in fp32, on the deterministic ViT-B/16 and the
ten Caltech101 class names of the CoOp fixture. Two label sets are recorded, chosen so that the
gradient rule projects in one and leaves the gradient alone in the other.

    python tools/parity/prograd.py --official <Prompt-align work tree> --out <folder>

``--official`` is the repository root (holding ``ProGrad.public/`` and
``Dassl.ProGrad.pytorch/``).
"""

from __future__ import annotations

import logging

import harness as H
import torch
import torch.nn.functional as F
from official_cfg import cfg_subset

LOG = logging.getLogger("parity.prograd")
CLASSNAMES = ["face", "leopard", "motorbike", "accordion", "airplane", "anchor", "ant", "barrel",
              "bass", "beaver"]
CANDIDATE_LABELS = [[0, 1, 2, 3], [9, 8, 7, 6], [4, 5, 6, 7], [1, 3, 5, 7], [2, 4, 6, 8]]
DATASET = "caltech101"
CONFIG = "rn50_ep100"
SCRIPT_OPTS = ["LOSS.LAMBDA", "1.0", "TRAINER.COOP.N_CTX", "16", "TRAINER.COOP.CSC", "False",
               "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "DATASET.NUM_SHOTS", "4",
               "DATASET.SUBSAMPLE_CLASSES", "base"]
OUR_OPTS = ["TRAINER.COOP.PREC", "fp32", "MODEL.BACKBONE.NAME", "ViT-B/16"]
CONFIG_KEYS = ["TRAINER.COOP", "LOSS", "DATASET.NAME", "DATASET.SUBSAMPLE_CLASSES",
               "MODEL.BACKBONE.NAME", "INPUT.SIZE", "OPTIM"]


def prograd_terms(logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                  t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, the official "kl" term: soft-target cross-entropy times T^2)."""
    xe = F.cross_entropy(logits, labels)
    soft = -(F.softmax(teacher / t, -1) * F.log_softmax(logits / t, -1)) * t * t
    return xe, soft.sum(1).mean()


def one_case(trainer, images, labels: list[int], named, lam: float, t: float) -> dict:
    """The official ``forward_backward`` on one label set, with every gradient it formed."""
    model, zs = trainer.model, trainer.zs_clip
    y = torch.tensor(labels)
    step = H.official_train_step(trainer, {"img": images, "label": y}, named,
                                 {"model": model, "zs": zs})
    logits, teacher = step["outputs"]["model"], step["outputs"]["zs"]
    xe, kl = prograd_terms(logits, teacher, y, t)
    if abs(xe.item() - step["summary"]["xe_loss"]) > 1e-6 or \
            abs(kl.item() - step["summary"]["kl_loss"]) > 1e-5:
        raise RuntimeError("the recorded logits do not give the official loss terms")
    (name,) = named
    kl_grad, xe_grad = step["raw_grads"][name]  # loss_b (kl) is back-propagated first
    final = step["grads"][name]
    b = kl_grad / torch.linalg.norm(kl_grad)
    cos = torch.dot((xe_grad / torch.linalg.norm(xe_grad)).flatten(), b.flatten()).item()
    rule = xe_grad - lam * torch.dot(xe_grad.flatten(), b.flatten()) * b if cos < 0 else xe_grad
    if not torch.allclose(rule, final, atol=1e-7, rtol=1e-5):
        raise RuntimeError("the recorded final gradient does not follow the ProGrad rule")
    true_kl = F.kl_div(F.log_softmax(logits / t, -1), F.softmax(teacher / t, -1),
                       reduction="batchmean") * t * t
    unnormalised = xe_grad - lam * torch.dot(xe_grad.flatten(), kl_grad.flatten()) * kl_grad
    slips = {"update_without_projection": H.max_abs(xe_grad, final),
             "update_is_the_sum_of_both_gradients": H.max_abs(xe_grad + kl_grad, final),
             "projection_on_the_unnormalised_kl_gradient": H.max_abs(
                 unnormalised if cos < 0 else xe_grad, final)}
    return {"labels": labels, "xe_loss": xe.item(), "kl_loss": kl.item(),
            "true_kl_divergence": true_kl.item(), "grad_slips_max_abs_change": slips,
            "cos_xe_kl_grads": cos, "projected": cos < 0,
            "tensors": {"labels": y, "grad_xe": xe_grad, "grad_kl": kl_grad,
                        "grad_final": final, "train_logits": logits, "zero_shot_logits": teacher}}


def init_misalignment(prograd, official_clip, state, cfg) -> dict:
    """With an initialisation string whose words and tokens differ in number (a comma), the
    official prompt keeps the string's last token in the frozen suffix, before the class name.
    Shown on OxfordPets' initialisation, with the official ``PromptLearner``."""
    clip_model = official_clip.build_model(dict(state)).float()
    pets = cfg.clone()
    pets.defrost()
    pets.DATASET.NAME = "OxfordPets"
    learner = prograd.PromptLearner(pets, ["abyssinian"], clip_model)
    tokens = learner.tokenized_prompts
    end = int(tokens[0].argmax())
    after = tokens[:, 1 + learner.n_ctx:end]
    return {"dataset": "OxfordPets", "classname": "abyssinian",
            "init_string": prograd.CUSTOM_TEMPLATES["OxfordPets"].replace(" {}.", ""),
            "prompt_tokens_decoded": H.decode_prompts(tokens)[0],
            "tokens_between_context_and_eot": H.decode_prompts(
                torch.cat([tokens[:, :1], after, tokens[:, end:end + 1]], dim=1))[0]}


def main() -> None:
    args = H.command_line(__doc__, dassl=False)
    run = H.bundled_trainer(args.official, "ProGrad.public", "trainers.prograd", "ProGrad",
                            f"configs/trainers/ProGrad/{CONFIG}.yaml", DATASET,
                            SCRIPT_OPTS + OUR_OPTS, CLASSNAMES)
    recipe, state, prograd, official_clip = run.recipe, run.state, run.module, run.clip
    cfg, trainer, named, spec, values = run.cfg, run.trainer, run.named, run.spec, run.values
    model, learner = trainer.model, trainer.model.prompt_learner
    images = recipe.images()
    taps = {"image": model.image_encoder, "text": model.text_encoder}
    logits, seen = H.official_eval(trainer, images, taps)
    lam, t = float(cfg.LOSS.LAMBDA), float(cfg.LOSS.T)

    cases: list[dict] = []
    for labels in CANDIDATE_LABELS:
        case = one_case(trainer, images, labels, named, lam, t)
        if all(c["projected"] != case["projected"] for c in cases):
            cases.append(case)
            LOG.info("labels %s: cos %.4f", labels, case["cos_xe_kl_grads"])
        if len(cases) == 2:
            break
    if len(cases) < 2:
        LOG.warning("only one decision of the gradient rule occurs among the candidate labels")
    zeroed = H.zeroed_logits(trainer, learner, images)
    zs_model = trainer.zs_clip.clip_model
    misalignment = init_misalignment(prograd, official_clip, state, cfg)
    expected = {
        "logits": logits, "image_features": seen["image"], "text_features": seen["text"],
        "zero_shot_logits": cases[0]["tensors"]["zero_shot_logits"],
        "zero_shot_text_features": trainer.zs_clip.text_features.detach().clone(),
        "trainable_values": values,
        "cases": [c.pop("tensors") for c in cases],
    }
    template = prograd.CUSTOM_TEMPLATES[cfg.DATASET.NAME]
    record = H.provenance("BeierZhu/Prompt-align", args) | {
        "trainer": "ProGrad",
        "dassl": "Dassl.ProGrad.pytorch bundled in the repository",
        "config_file": f"configs/trainers/ProGrad/{CONFIG}.yaml",
        "dataset_config_file": f"configs/datasets/{DATASET}.yaml",
        "script_opts": SCRIPT_OPTS, "our_opts": OUR_OPTS, "config": cfg_subset(cfg, CONFIG_KEYS),
        "classnames": CLASSNAMES,
        "prompt_tokens_decoded": H.decode_prompts(learner.tokenized_prompts),
        "zero_shot_template": template,
        "zero_shot_prompts": [template.format(c.replace("_", " ")) for c in CLASSNAMES],
        "zero_shot_logit_scale": zs_model.logit_scale.exp().item(),
        "trainable": spec, "seeds": H.SEEDS,
        "labels_for_loss": cases[0]["labels"], "loss": cases[0]["xe_loss"],
        "checkpoint_keys": sorted(learner.state_dict()),
        "lambda": lam, "T": t, "cases": cases, "ctx_init_misalignment": misalignment,
        "max_abs_logit_change_when_trainables_zeroed": H.max_abs(zeroed, logits),
        "run": H.run_description("ProGrad.public/trainers/prograd.py with Dassl.ProGrad's "
                                 "prograd_backward_and_update"),
    }
    H.write_fixture(args.out, "ProGrad", record, expected)


if __name__ == "__main__":
    main()
