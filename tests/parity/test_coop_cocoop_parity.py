"""CoOp and CoCoOp against the official code's outputs on the deterministic ViT-B/16.

The trainable tensors are written in the official checkpoint format (the ``prompt_learner``
module's state dict, class-name token buffers included) and loaded through the trainers'
official-checkpoint mapping.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.parity import recipe
from trainers.base import PromptedCLIP, normalize
from trainers.cocoop import CoCoOp, CoCoOpPromptLearner, ConditionalPromptedCLIP
from trainers.coop import CoOp, CoOpPromptLearner


def official_prompt_learner_file(spec: dict, n_cls: int) -> dict[str, torch.Tensor]:
    """What the official trainer saves under ``prompt_learner/``: its tensors without the
    ``prompt_learner.`` prefix, plus the token buffers (which must be ignored)."""
    tensors = recipe.trainable_tensors(spec["trainable"])
    state = {k.removeprefix("prompt_learner."): v for k, v in tensors.items()}
    state["token_prefix"] = torch.full((n_cls, 1, 512), 7.0)
    state["token_suffix"] = torch.full((n_cls, 60, 512), 7.0)
    return state


def test_coop_reproduces_official_logits_and_loss(parity_clip):
    spec, expected = recipe.fixture("CoOp")
    config = spec["config"]
    learner = CoOpPromptLearner(parity_clip, spec["classnames"], config["N_CTX"],
                                config["CTX_INIT"], config["CSC"], config["CLASS_TOKEN_POSITION"])
    state = CoOp.learner_state_dict(official_prompt_learner_file(spec, len(spec["classnames"])))
    learner.load_state_dict(state, strict=True)
    model = PromptedCLIP(parity_clip, learner).eval()
    images = recipe.images()
    with torch.no_grad():
        image_features, text_features = model.features(images)
        logits = model.logits(image_features, text_features)
    torch.testing.assert_close(logits, expected["logits"], atol=1e-3, rtol=0)
    torch.testing.assert_close(text_features, normalize(expected["text_features"]), atol=1e-5,
                               rtol=0)
    loss = F.cross_entropy(logits, torch.tensor(spec["labels_for_loss"]))
    assert abs(loss.item() - spec["loss"]) < 1e-4


def test_coop_logits_depend_on_the_loaded_context(parity_clip):
    """The tolerance is meaningful: the official numbers are far from an untrained context."""
    spec, expected = recipe.fixture("CoOp")
    learner = CoOpPromptLearner(parity_clip, spec["classnames"], 16)
    with torch.no_grad():
        learner.ctx.zero_()
        logits = PromptedCLIP(parity_clip, learner).eval()(recipe.images())
    assert (logits - expected["logits"]).abs().max() > 0.5


def test_cocoop_reproduces_official_logits_and_loss(parity_clip):
    spec, expected = recipe.fixture("CoCoOp")
    config = spec["config"]
    learner = CoCoOpPromptLearner(parity_clip, spec["classnames"], config["N_CTX"],
                                  config["CTX_INIT"])
    state = CoCoOp.learner_state_dict(official_prompt_learner_file(spec, len(spec["classnames"])))
    learner.load_state_dict(state, strict=True)
    model = ConditionalPromptedCLIP(parity_clip, learner).eval()
    with torch.no_grad():
        image_features, text_features = model.features(recipe.images())
        logits = model.logits(image_features, text_features)
    torch.testing.assert_close(logits, expected["logits"], atol=1e-3, rtol=0)
    torch.testing.assert_close(text_features, normalize(expected["text_features"]), atol=1e-5,
                               rtol=0)
    loss = F.cross_entropy(logits, torch.tensor(spec["labels_for_loss"]))
    assert abs(loss.item() - spec["loss"]) < 1e-4
