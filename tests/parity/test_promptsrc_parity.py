"""PromptSRC against the official code's outputs on the deterministic ViT-B/16: the eval logits
and the training loss with its four terms.

The trainable tensors are written as an official PromptSRC checkpoint holds them (IVLP's key
names in the whole model, plus token buffers, frozen CLIP weights and the frozen image-encoder
copy ``prompt_learner.ZS_image_encoder.*``, all of which must be dropped) and loaded through the
trainer's official-checkpoint mapping.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.parity import recipe
from tests.promptsrc_official_form import Outputs, SelfRegulatedCLIP, self_regulating_terms
from trainers.base import normalize
from trainers.ivlp import IVLPPromptLearner
from trainers.objective import CrossEntropy, Objective
from trainers.promptsrc import PromptSRC
from trainers.regularizers import (
    ImageAgreement,
    LogitsAgreement,
    TextAgreement,
    frozen_text_features,
)


def official_state_dict(spec: dict, clip_model) -> dict[str, torch.Tensor]:
    state = recipe.trainable_tensors(spec["trainable"])
    n_cls = len(spec["classnames"])
    state["prompt_learner.token_prefix"] = torch.full((n_cls, 1, 512), 7.0)
    state["prompt_learner.token_suffix"] = torch.full((n_cls, 72, 512), 7.0)
    state["prompt_learner.ZS_image_encoder.conv1.weight"] = torch.full((768, 3, 16, 16), 7.0)
    state["prompt_learner.ZS_image_encoder.proj"] = torch.full((768, 512), 7.0)
    state["image_encoder.conv1.weight"] = clip_model.visual.conv1.weight.clone()
    state["text_encoder.transformer.resblocks.5.attn.in_proj_weight"] = (
        clip_model.transformer.resblocks[5].attn.in_proj_weight.clone())
    state["logit_scale"] = clip_model.logit_scale.clone()
    return state


@pytest.fixture(scope="module")
def promptsrc_model(parity_clip):
    spec, expected = recipe.fixture("PromptSRC")
    config = spec["config"]
    learner = IVLPPromptLearner(parity_clip, spec["classnames"], config["N_CTX_TEXT"],
                                config["N_CTX_VISION"], config["PROMPT_DEPTH_TEXT"],
                                config["PROMPT_DEPTH_VISION"], config["CTX_INIT"])
    mapped = PromptSRC.learner_state_dict(official_state_dict(spec, parity_clip))
    assert sorted(mapped) == sorted(learner.state_dict())
    learner.load_state_dict(mapped, strict=True)
    frozen_text = frozen_text_features(parity_clip, spec["classnames"])
    return spec, expected, SelfRegulatedCLIP(parity_clip, learner, frozen_text)


def test_reproduces_official_logits(promptsrc_model):
    _, expected, model = promptsrc_model
    with torch.no_grad():
        logits = model.eval()(recipe.images())
    torch.testing.assert_close(logits, expected["logits"], atol=1e-3, rtol=0)
    torch.testing.assert_close(logits, expected["logits_without_official_fp16_rounding"],
                               atol=1e-4, rtol=0)


def test_reproduces_official_training_loss_with_its_four_terms(promptsrc_model):
    """The terms the PromptSRC trainer assembles (trainers/regularizers.py), on one forward
    output with the frozen image features, give the official loss term by term; so does
    ``self_regulating_terms`` on the same outputs."""
    spec, expected, model = promptsrc_model
    config = spec["config"]
    objective = Objective([CrossEntropy(),
                           TextAgreement(model.frozen_text, weight=config["TEXT_LOSS_WEIGHT"]),
                           ImageAgreement(weight=config["IMAGE_LOSS_WEIGHT"]),
                           LogitsAgreement(model.frozen_text)])
    assert objective.needs_frozen_image
    labels = torch.tensor(spec["labels_for_loss"])
    with torch.no_grad():
        out = model.train().output(recipe.images(), frozen=objective.needs_frozen_image)
        losses = objective(out, labels)
    model.eval()
    assert abs(losses.total.item() - spec["loss"]) / spec["loss"] < 1e-4
    assert abs(losses.total.item() - float(expected["loss"])) / spec["loss"] < 1e-4
    assert min(value.item() for value in losses.terms.values()) > 1e-3  # every term counts

    prompted = Outputs(out.logits, out.image_features, out.text_features)
    frozen_text = normalize(model.frozen_text)
    frozen = Outputs(model.logits(out.frozen_image_features, frozen_text),
                     out.frozen_image_features, frozen_text)
    loss_ce = F.cross_entropy(prompted.logits, labels)
    terms = self_regulating_terms(prompted, frozen, config["TEXT_LOSS_WEIGHT"],
                                  config["IMAGE_LOSS_WEIGHT"])
    assert abs((loss_ce + terms.total).item() - spec["loss"]) / spec["loss"] < 1e-4

    # the tolerance tells the templates apart: one template alone misses the official loss
    one_template = normalize(frozen_text_features(model.clip, spec["classnames"],
                                                  templates=["a photo of a {}."]))
    single = self_regulating_terms(prompted, frozen._replace(text_features=one_template),
                                   config["TEXT_LOSS_WEIGHT"], config["IMAGE_LOSS_WEIGHT"])
    assert abs((loss_ce + single.total).item() - spec["loss"]) / spec["loss"] > 1e-3
