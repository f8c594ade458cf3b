"""CoPrompt against the official code's outputs on the deterministic ViT-B/16 (fixtures written
by tools/parity/coprompt.py running ShuvenduRoy/CoPrompt; fixtures/CoPrompt.md says what they
hold): eval logits, the training loss term by term and its gradients, for the default setting
(Caltech101, cosine consistency) and a non-default one (DescribableTextures' settings, mse).

The trainable tensors are loaded from the official whole-model state dict (prompts, adapters,
token buffers, both frozen CLIPs) through the trainer's key mapping; the class descriptions are
the ones the generator wrote, rewritten here from the JSON.
"""

from __future__ import annotations

import json

import pytest
import torch

from engine.config import get_cfg_default
from tests.parity import recipe
from trainers.base import check_frozen_weights
from trainers.coprompt import CoPrompt, two_view_losses, with_dataset_settings

TOL = 1e-4


def official_file(spec: dict, expected: dict, clip_model) -> dict[str, torch.Tensor]:
    """What the official checkpoint's state dict holds: the trainables, junk token buffers, the
    frozen CLIP under the model's names and under ``model_distill.``."""
    state = recipe.trainable_tensors(spec["trainable"])
    n_cls = len(spec["classnames"])
    state["prompt_learner.token_prefix"] = torch.full((n_cls, 1, 512), 7.0)
    state["prompt_learner.token_suffix"] = torch.full((n_cls, 72, 512), 7.0)
    state["image_encoder.conv1.weight"] = clip_model.visual.conv1.weight.clone()
    state["logit_scale"] = clip_model.logit_scale.clone()
    state["model_distill.visual.conv1.weight"] = torch.full((768, 3, 16, 16), 7.0)
    state["model_distill.token_embedding.weight"] = torch.full((49408, 512), 7.0)
    for key, value in expected["trainable_values"].items():
        assert torch.equal(state[key], value)
    return state


def official_config(spec: dict, descriptions_dir) -> object:
    cfg = get_cfg_default()
    config = spec["config"]
    cfg.merge_from_list(["DATASET.NAME", config["DATASET.NAME"], "TRAINER.W", 1.0,
                         "TRAINER.DISTILL", config["TRAINER.DISTILL"],
                         "TRAINER.CoPrompt.GPT_DIR", str(descriptions_dir),
                         "TRAINER.CoPrompt.PREC", "fp32"])
    cfg.freeze()
    cfg = with_dataset_settings(cfg)  # the official per-dataset values
    node = config["TRAINER.CoPrompt"]
    ours = cfg.TRAINER.CoPrompt
    assert (ours.N_CTX, ours.PROMPT_DEPTH, ours.W) == (node["N_CTX"], node["PROMPT_DEPTH"],
                                                       config["TRAINER.W"])
    return cfg


@pytest.mark.parametrize("name", ["CoPrompt", "CoPrompt_dtd_mse"])
def test_reproduces_official_logits_loss_terms_and_gradients(parity_clip, tmp_path, name):
    spec, expected = recipe.fixture(name)
    (tmp_path / spec["descriptions_file"]).parent.mkdir(parents=True)
    (tmp_path / spec["descriptions_file"]).write_text(json.dumps(spec["descriptions"]))
    cfg = official_config(spec, tmp_path / "gpt_file")
    classnames = spec["classnames"]
    learner = CoPrompt.make_prompt_learner(cfg, classnames, parity_clip)
    method = CoPrompt.assemble(cfg, parity_clip, classnames, learner)
    state = official_file(spec, expected, parity_clip)
    check_frozen_weights(state, parity_clip, "ViT-B/16")
    learner.load_state_dict(CoPrompt.learner_state_dict(state), strict=True)
    text_term = method.objective["text_consistency"]
    torch.testing.assert_close(text_term.descriptions, expected["description_features"],
                               atol=1e-5, rtol=0)

    images = recipe.images()
    second = torch.randn(4, 3, 224, 224,
                         generator=torch.Generator().manual_seed(spec["second_view_seed"]))
    method.model.eval()
    with torch.no_grad():
        logits = method.model(images)
    torch.testing.assert_close(logits, expected["logits_without_official_fp16_rounding"],
                               atol=TOL, rtol=0)
    torch.testing.assert_close(logits, expected["logits"], atol=1e-3, rtol=0)

    method.model.train()
    text_term.choose = lambda k: spec["description_index_picked"]
    labels = torch.tensor(spec["labels_for_loss"])
    losses = two_view_losses(method, [images, second], labels)
    w = spec["w"]
    assert abs(losses.total.item() - spec["loss"]) < TOL
    assert abs(losses.terms["ce"].item() - spec["loss_ce"]) < TOL
    assert abs(losses.terms["text_consistency"].item() / w - spec["loss_text"]) < TOL
    assert abs(losses.terms["image_consistency"].item() / w - spec["loss_image"]) < TOL
    assert abs(losses.total.item() - spec["loss_official_fp16_rounding"]) < 1e-3
    assert min(losses.terms[k].item() for k in ("text_consistency", "image_consistency")) > 1e-5

    losses.total.backward()
    ours = {k: p.grad for k, p in learner.named_parameters()}
    whole = CoPrompt.learner_state_dict(expected["grads"])
    summaries = CoPrompt.learner_state_dict(expected["grad_summaries"])
    assert sorted(whole | summaries) == sorted(ours)
    for key, grad in whole.items():
        torch.testing.assert_close(ours[key], grad, atol=TOL, rtol=1e-3)
    for key, summary in summaries.items():
        sample = ours[key].flatten()[::summary["step"]][:summary["sample"].numel()]
        torch.testing.assert_close(sample, summary["sample"], atol=TOL, rtol=1e-3)
        assert abs(ours[key].double().norm().item() - summary["norm"]) < 1e-3 * summary["norm"]
