"""IVLP and MaPLe against the official code's outputs on the deterministic ViT-B/16.

The trainable tensors are written as an official full-model checkpoint's ``state_dict`` holds
them (prompts under their official names, plus class-name token buffers and frozen CLIP weights,
which must be dropped) and loaded through the trainers' official-checkpoint mapping.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.parity import recipe
from trainers.base import PromptedCLIP, normalize
from trainers.ivlp import IVLP, IVLPPromptLearner
from trainers.maple import MaPLe, MaPLePromptLearner


def official_state_dict(spec: dict, clip_model) -> dict[str, torch.Tensor]:
    """The trainable tensors under their official full-model keys, with junk token buffers and
    a few frozen CLIP weights of the same backbone under the official module names."""
    state = recipe.trainable_tensors(spec["trainable"])
    n_cls = len(spec["classnames"])
    state["prompt_learner.token_prefix"] = torch.full((n_cls, 1, 512), 7.0)
    state["prompt_learner.token_suffix"] = torch.full((n_cls, 74, 512), 7.0)
    state["image_encoder.conv1.weight"] = clip_model.visual.conv1.weight.clone()
    state["image_encoder.transformer.resblocks.3.ln_1.weight"] = (
        clip_model.visual.transformer.resblocks[3].ln_1.weight.clone())
    state["text_encoder.positional_embedding"] = clip_model.positional_embedding.clone()
    state["text_encoder.transformer.resblocks.5.attn.in_proj_weight"] = (
        clip_model.transformer.resblocks[5].attn.in_proj_weight.clone())
    state["logit_scale"] = clip_model.logit_scale.clone()
    return state


def build_learner(name: str, spec: dict, clip_model):
    config = spec["config"]
    if name == "IVLP":
        return IVLP, IVLPPromptLearner(
            clip_model, spec["classnames"], config["N_CTX_TEXT"], config["N_CTX_VISION"],
            config["PROMPT_DEPTH_TEXT"], config["PROMPT_DEPTH_VISION"], config["CTX_INIT"])
    return MaPLe, MaPLePromptLearner(clip_model, spec["classnames"], config["N_CTX"],
                                     config["PROMPT_DEPTH"], config["CTX_INIT"])


def checkpoint_state(trainer_cls, clip_model, state: dict) -> dict:
    """What loading a checkpoint's state dict does for ``trainer_cls`` on ``clip_model``."""
    return trainer_cls.checked_learner_state_dict(state, clip_model, "ViT-B/16")


@pytest.mark.parametrize("name", ["IVLP", "MaPLe"])
def test_reproduces_official_logits_features_and_loss(parity_clip, name):
    spec, expected = recipe.fixture(name)
    trainer_cls, learner = build_learner(name, spec, parity_clip)
    state = official_state_dict(spec, parity_clip)
    learner.load_state_dict(checkpoint_state(trainer_cls, parity_clip, state), strict=True)
    model = PromptedCLIP(parity_clip, learner).eval()
    with torch.no_grad():
        image_features, text_features = model.features(recipe.images())
        logits = model.logits(image_features, text_features)
    torch.testing.assert_close(logits, expected["logits"], atol=1e-3, rtol=0)
    # the official forward rounds prompts to fp16; without that rounding we agree far closer
    torch.testing.assert_close(logits, expected["logits_without_official_fp16_rounding"],
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(image_features, normalize(expected["image_features"]),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(text_features, normalize(expected["text_features"]),
                               atol=1e-5, rtol=0)
    loss = F.cross_entropy(logits, torch.tensor(spec["labels_for_loss"]))
    assert abs(loss.item() - spec["loss"]) < 1e-4
    assert abs(loss.item() - float(expected["loss"])) < 1e-4


@pytest.mark.parametrize("name", ["IVLP", "MaPLe"])
def test_every_official_trainable_tensor_lands_in_the_learner(parity_clip, name):
    """One learner parameter per official tensor, same shape; the fixture records that the
    logits move by several units when these tensors are zeroed, so none is ignored silently."""
    spec, _ = recipe.fixture(name)
    trainer_cls, learner = build_learner(name, spec, parity_clip)
    mapped = trainer_cls.learner_state_dict(official_state_dict(spec, parity_clip))
    ours = learner.state_dict()
    assert sorted(mapped) == sorted(ours)
    assert len(mapped) == len(spec["trainable"])
    assert all(mapped[k].shape == ours[k].shape for k in ours)
    assert spec["max_abs_logit_change_when_trainables_zeroed"] > 1.0


def test_frozen_weights_of_another_backbone_are_reported(parity_clip):
    spec, _ = recipe.fixture("MaPLe")
    state = official_state_dict(spec, parity_clip)
    state["image_encoder.conv1.weight"] = state["image_encoder.conv1.weight"] + 0.1
    with pytest.raises(ValueError, match="another backbone"):
        checkpoint_state(MaPLe, parity_clip, state)
