"""MMA against its official code's outputs on the deterministic ViT-B/16 (fixtures written by
tools/parity/mma.py running the official code): eval logits, image and text features, the
training loss and the gradients of every adapter (the official backward scales them by
1 / ADAPTER_SCALE), for the shipped config (blocks 5-12, scale 0.001) and for blocks 9-11 with
scale 0.1.

The adapters are loaded from an official ``adapter_learner`` checkpoint's state dict (with its
class-prompt buffers) through the trainer's key mapping.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.parity import recipe
from tests.parity.test_kgcoop_prograd_dept_parity import TOL, assembled, official_config
from tests.parity.test_tcp_parity import assert_eval_matches, assert_grad
from trainers.mma import GradientScale, MultiModalAdapter


def mma_method(spec: dict, parity_clip):
    cfg = official_config(spec, "OPTIM")
    values = recipe.trainable_tensors(spec["trainable"])
    state = {k.removeprefix("adapter_learner."): v for k, v in values.items()}
    state["token_embedding"] = torch.full((len(spec["classnames"]), 77, 512), 7.0)
    state["tokenized_prompts"] = torch.zeros(len(spec["classnames"]), 77, dtype=torch.long)
    assert sorted(state) == spec["checkpoint_keys"]
    return assembled(MultiModalAdapter, cfg, spec, parity_clip, state)


@pytest.mark.parametrize("name", ["MMA", "MMA_blocks9to11"])
def test_mma_reproduces_official_logits_loss_and_gradients(parity_clip, name, monkeypatch):
    spec, expected = recipe.fixture(name)
    method = mma_method(spec, parity_clip)
    learner = method.learner
    tokens = learner.class_tokens
    assert [parity_clip.tokenizer.decode(t[1:e].tolist()).strip()
            for t, e in zip(tokens.tokens, tokens.eot, strict=True)] == spec[
        "prompt_tokens_decoded"]
    images, labels = recipe.images(), torch.tensor(spec["labels_for_loss"])
    assert_eval_matches(method, expected)
    method.model.train()
    losses = method.losses(images, labels)
    assert abs(losses.total.item() - spec["loss"]) < TOL
    method.backward(losses, lambda total: total.backward())
    ours = {f"adapter_learner.{k}": p.grad for k, p in learner.named_parameters()}
    assert sorted(ours) == sorted([*expected["grads"], *expected["grad_summaries"]])
    for key, grad in {**expected["grads"], **expected["grad_summaries"]}.items():
        assert_grad(ours[key], grad)
    # the adapters' gradients are 1 / scale times autograd's own (the official rule)
    scale = spec["config"]["TRAINER.MMADAPTER"]["ADAPTER_SCALE"]
    param = dict(learner.named_parameters())[
        f"text_adapter.{spec['config']['TRAINER.MMADAPTER']['ADAPTER_END']}.up.bias"]
    monkeypatch.setattr(GradientScale, "apply", lambda x, s: x)
    plain = torch.autograd.grad(F.cross_entropy(method.model.output(images).logits, labels),
                                param)[0]
    torch.testing.assert_close(param.grad * scale, plain, atol=1e-7, rtol=1e-3)


def test_mma_adapters_leave_the_frozen_clip_as_it_was(parity_clip):
    """Outside the prompted forward the same CLIP computes plain CLIP features."""
    spec, _ = recipe.fixture("MMA_blocks9to11")
    method = mma_method(spec, parity_clip)
    images = recipe.images()[:1]
    with torch.no_grad():
        plain = parity_clip.encode_image(images)
        adapted = method.model.output(images).image_embeddings
        again = parity_clip.encode_image(images)
    assert torch.equal(plain, again) and (adapted - plain).abs().max() > 1e-3
    assert parity_clip.transformer.residual_adapters is None
    assert not any(k.startswith("adapter") or "adapter" in k for k in parity_clip.state_dict())
