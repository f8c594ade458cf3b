"""benchmarks/shared.py on a tiny CLIP: the shared-prefix step agrees with the unshared one, and
the cached ELEVATER step trains the same prompts as the step from images."""

from __future__ import annotations

import pytest
import torch

import clip
from benchmarks import shared


@pytest.fixture
def tiny(monkeypatch):
    model = clip.tiny_clip(seed=1, image_resolution=224, patch_size=32).requires_grad_(False)
    monkeypatch.setattr(shared, "recipe_clip", lambda: model)
    return model


def test_steps_time_both_modes_with_equal_logits(tiny):
    rows = shared.steps(classes=6, batch=2, repeat=1)
    assert [r["variant"] for r in rows] == ["MCoOp", "MUPT"]
    for row in rows:
        assert row["on"]["steps"] == row["unshared"]["steps"] == 1
        assert row["logits_max_abs_diff"] < 1e-4


def test_elevater_step_from_cached_features_is_the_step_from_images(tiny, monkeypatch):
    grads, start = [], {}
    real = shared.measure.train_step

    def recording(run, image, label):
        learner = run.method.learner
        start.setdefault("state", {k: v.clone() for k, v in learner.state_dict().items()})
        learner.load_state_dict(start["state"])  # both steps from the same prompts
        real(run, image, label)
        grads.append(learner.ctx.grad.clone())

    monkeypatch.setattr(shared.measure, "train_step", recording)
    row = shared.elevater_step(tiny, repeat=1, classes=4, batch=3)
    assert row["step_s_from_images"] > 0 and row["step_s_from_cache"] > 0
    from_images, from_cache = grads
    assert torch.allclose(from_images, from_cache, atol=1e-6)


def test_the_sweep_evaluates_dtd_base_and_new_halves():
    halves = shared.dtd_halves()
    assert [len(halves["base"]), len(halves["new"])] == [24, 23]
    assert halves["base"][0] == "banded" and not set(halves["base"]) & set(halves["new"])


def test_cocoop_can_be_evaluated_at_its_test_batch_size():
    cfg = shared.method_config(*shared.METHODS["CoCoOp"])
    features = torch.arange(12.0).view(4, 3)
    assert shared.evaluation_batch(features, cfg, test_batch=False) is features
    batch = shared.evaluation_batch(features, cfg, test_batch=True)
    assert cfg.DATALOADER.TEST.BATCH_SIZE == 100 and batch.shape == (100, 3)
    assert torch.equal(batch[4:8], features) and torch.equal(batch[96:], features)
