"""TCP against its official code's outputs on the deterministic ViT-B/16 (fixtures written by
tools/parity/tcp.py running the official code): eval logits, the class-aware tokens, the text
features, the training loss term by term and the gradients of every trainable, at the official
insertion layer (8, Caltech101's prompts) and at layer 4 (OxfordPets' prompts).

The trainables are loaded from an official ``prompt_learner`` checkpoint's state dict through
the trainer's key mapping.
"""

from __future__ import annotations

import pytest
import torch

from tests.parity import recipe
from tests.parity.test_kgcoop_prograd_dept_parity import (
    TOL,
    assembled,
    official_config,
    prompt_learner_file,
)
from trainers.tcp import TCP


def tcp_method(spec: dict, parity_clip, layer: int | None = None):
    cfg = official_config(spec, "OPTIM", "ALPHA", "TRAINER.COCOOP.PREC")
    cfg.merge_from_list(["TRAINER.TCP.LAYER", layer or spec["insertion_layer"]])
    values = recipe.trainable_tensors(spec["trainable"])
    state = prompt_learner_file(values, len(spec["classnames"]))
    assert sorted(state) == spec["checkpoint_keys"]
    return assembled(TCP, cfg, spec, parity_clip, state)


def assert_grad(ours: torch.Tensor, expected: dict | torch.Tensor) -> None:
    if torch.is_tensor(expected):
        torch.testing.assert_close(ours, expected, atol=TOL, rtol=1e-3)
        return
    flat = ours.detach().flatten().double()
    assert flat.norm().item() == pytest.approx(expected["norm"], rel=1e-4)
    assert flat.sum().item() == pytest.approx(expected["sum"], abs=TOL * 10, rel=1e-4)
    sample = ours.detach().flatten()[::expected["step"]][:len(expected["sample"])]
    torch.testing.assert_close(sample, expected["sample"], atol=TOL, rtol=1e-3)


def assert_eval_matches(method, expected: dict) -> None:
    """Eval-mode logits, image and text features (before normalisation) as the fixture's."""
    method.model.eval()
    with torch.no_grad():
        out = method.model.output(recipe.images())
    torch.testing.assert_close(out.logits, expected["logits"], atol=TOL, rtol=0)
    torch.testing.assert_close(out.image_embeddings, expected["image_features"], atol=TOL,
                               rtol=0)
    torch.testing.assert_close(out.text_embeddings, expected["text_features"], atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["TCP", "TCP_layer4_pets"])
def test_tcp_reproduces_official_logits_loss_and_gradients(parity_clip, name):
    spec, expected = recipe.fixture(name)
    method = tcp_method(spec, parity_clip)
    learner = method.learner
    assert learner.layer == spec["insertion_layer"]
    tokens = learner.class_tokens.tokens
    assert [parity_clip.tokenizer.decode(t[1:e].tolist()).strip()
            for t, e in zip(tokens, learner.class_tokens.eot, strict=True)] == spec[
        "prompt_tokens_decoded"]
    torch.testing.assert_close(learner.class_features, expected["handcrafted_text_features"],
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(learner.class_aware_tokens(), expected["class_aware_tokens"],
                               atol=TOL, rtol=0)
    labels = torch.tensor(spec["labels_for_loss"])
    assert_eval_matches(method, expected)
    method.model.train()
    out = method.model.output(recipe.images())
    losses = method.objective(out, labels)
    assert abs(losses.total.item() - spec["loss"]) < TOL
    assert abs(losses.terms["ce"].item() - spec["loss_ce"]) < TOL
    assert abs(losses.terms["kg"].item() / spec["kg_weight"] - spec["loss_kg"]) < 1e-5
    method.backward(losses, lambda total: total.backward())
    ours = {f"prompt_learner.{k}": p.grad for k, p in learner.named_parameters()}
    assert sorted(ours) == sorted([*expected["grads"], *expected["grad_summaries"]])
    for key, grad in {**expected["grads"], **expected["grad_summaries"]}.items():
        assert_grad(ours[key], grad)


def test_tcp_insertion_layer_matters(parity_clip):
    """The layer-4 fixture is not what layer 8 computes (the setting is tested, not inert)."""
    spec, expected = recipe.fixture("TCP_layer4_pets")
    with torch.no_grad():
        logits = tcp_method(spec, parity_clip, layer=8).model(recipe.images())
    assert (logits - expected["logits"]).abs().max().item() > 100 * TOL
