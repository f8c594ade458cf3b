"""MVLPT (MCoOp, MVPT, MUPT) against the official code's outputs on the deterministic ViT-B/16.

Everything goes the way a user's run goes: the three tasks are CoOp-layout datasets on disk,
composed by the multitask data path (labels offset, domain = task); the MVLPT trainer is built
from the official config and command-line keys; the trainable tensors are written as the
official ``save_model`` writes them (a Dassl dict under ``prompt_learner/model-best.pth.tar``,
class-name token buffers included) and loaded by the engine's ``load_model``. One training-mode
forward and backward per variant gives logits, features, loss and gradients.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import trainers.base
from engine.config import get_cfg_default
from engine.trainer import build_trainer
from tests.datasets.layouts import build_tasks
from tests.parity import recipe
from trainers.base import normalize

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "trainers" / "MVLPT" / "vit_b16.yaml"


def build_mvlpt(spec: dict, tmp_path, clip_model, monkeypatch):
    """The MVLPT trainer of a fixture, on its three tasks written to disk."""
    ranges = spec["task_class_ranges"]
    tasks = {name: spec["classnames"][ranges[name][0]:ranges[name][1]]
             for name in spec["task_names"]}
    build_tasks(str(tmp_path / "data"), tasks)
    cfg = get_cfg_default()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list(spec["script_opts"] + spec["common_opts"] + [
        "DATASET.ROOT", str(tmp_path / "data"),
        "DATASET.DATASET", spec["config"]["DATASET.DATASET"], "DATASET.COOP", "True",
        "DATASET.MULTITASK", "True", "TRAINER.NAME", "MVLPT",
        "OUTPUT_DIR", str(tmp_path / "out"), "USE_CUDA", "False", "SEED", "1",
        "DATALOADER.NUM_WORKERS", "0"])
    cfg.freeze()
    monkeypatch.setattr(trainers.base, "load_clip_model", lambda cfg: clip_model)
    return build_trainer(cfg)


def write_official_checkpoint(spec: dict, directory) -> dict[str, torch.Tensor]:
    """The official ``save_model`` output: the learner's state dict (official names, token
    buffers poisoned with 7) in Dassl's dict, at ``prompt_learner/model-best.pth.tar``."""
    values = recipe.mvlpt_trainable_tensors(spec["trainable"])
    state = {k.removeprefix("prompt_learner."): v for k, v in values.items()}
    n_cls, length = len(spec["classnames"]), spec["text_context_length"]
    n_ctx = spec["config"]["TRAINER.MVLPT"]["COOP"]["N_CTX"]
    state["token_prefix"] = torch.full((n_cls, 1, 512), 7.0)
    state["token_suffix"] = torch.full((n_cls, length - 1 - n_ctx, 512), 7.0)
    folder = directory / "prompt_learner"
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 7, "optimizer": {}, "scheduler": {},
                "val_result": 42.0}, folder / "model-best.pth.tar")
    return values


def assert_sampled_close(ours: torch.Tensor, expected: dict, rtol: float) -> None:
    """Compare with a reduced fixture tensor: a fixed sample of its values and its norm."""
    flat = ours.detach().reshape(-1).float()
    sample = expected["values"]
    if flat.numel() > sample.numel():
        flat = flat[torch.linspace(0, flat.numel() - 1, sample.numel()).round().long()]
    scale = expected["norm"] / expected["norm"].new_tensor(ours.numel()).sqrt()
    torch.testing.assert_close(flat, sample, atol=rtol * float(scale), rtol=rtol)
    assert abs(float(ours.detach().float().norm()) - float(expected["norm"])) <= rtol * float(
        expected["norm"])


@pytest.mark.parametrize("variant", ["MCoOp", "MVPT", "MUPT"])
def test_reproduces_official_logits_loss_and_gradients(variant, parity_clip, tmp_path,
                                                       monkeypatch):
    spec, expected = recipe.fixture(f"MVLPT_{variant}")
    trainer = build_mvlpt(spec, tmp_path, parity_clip, monkeypatch)
    # the multitask data path: class names in task order, labels offset, domain = task
    assert trainer.dm.dataset.classnames == spec["classnames"]
    assert [list(t[1:]) for t in trainer.dm.tasks] == list(spec["task_class_ranges"].values())
    for item in trainer.dm.dataset.train_x:
        assert spec["classnames"][item.label] == item.classname
        assert spec["task_names"][item.domain] in trainer.dm.tasks[item.domain]
    labels = torch.tensor(spec["labels_for_loss"])
    assert trainer.tasks_of(labels).tolist() == spec["tasks_for_loss"]

    values = write_official_checkpoint(spec, tmp_path / "official")
    trainer.load_model(str(tmp_path / "official"))
    learner = trainer.model.prompt_learner
    seen = {}
    logits_of = trainer.model.logits

    def spy(image_features, text_features):
        seen.update(image=image_features, text=text_features)
        return logits_of(image_features, text_features)

    trainer.model.logits = spy
    trainer.set_model_mode("train")
    trainer.model.clip.eval()
    with trainer.precision.autocast():
        loss, figures = trainer.compute_loss(recipe.images(), labels)
    loss.backward()
    logits = trainer.model.logits(seen["image"], seen["text"])

    torch.testing.assert_close(logits, expected["logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(seen["image"], normalize(expected["image_features"]), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(seen["text"], normalize(expected["text_features"]), atol=1e-5,
                               rtol=0)
    assert abs(loss.item() - spec["loss"]) < 1e-5
    assert figures["acc"] == spec["train_acc"]
    assert figures["num_tasks"] == spec["num_tasks_in_batch"]
    params = dict(learner.named_parameters())
    assert sorted(params) == sorted(k.removeprefix("prompt_learner.") for k in values)
    for name, grad in expected["grads"].items():
        assert_sampled_close(params[name.removeprefix("prompt_learner.")].grad, grad, rtol=1e-4)
    if variant == "MUPT":
        with torch.no_grad():
            ctx, visual = learner.prompts()
        assert_sampled_close(ctx, expected["text_ctx_after_projection"], rtol=1e-5)
        assert_sampled_close(visual[:1], expected["vpt_shallow_after_projection"], rtol=1e-5)
        assert_sampled_close(visual[1:], expected["vpt_deep_after_projection"], rtol=1e-5)
    # what the tolerance catches: the smallest plausible slip moves the logits by far more
    slips = spec["max_abs_logit_change_under_plausible_slips"]
    assert min(slips.values()) > 10 * 1e-4


def test_released_upt_names_and_token_buffers_load(parity_clip, tmp_path, monkeypatch):
    """The released UPT files call the coupling block ``upt_proj``; any other unknown key is an
    error (the official loader's strict=False would drop it)."""
    spec, _ = recipe.fixture("MVLPT_MUPT")
    trainer = build_mvlpt(spec, tmp_path, parity_clip, monkeypatch)
    values = write_official_checkpoint(spec, tmp_path / "official")
    path = tmp_path / "official" / "prompt_learner" / "model-best.pth.tar"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"] = {k.replace("mvlpt_proj.", "upt_proj."): v
                                for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, path)
    trainer.load_model(str(tmp_path / "official"))
    block = trainer.model.prompt_learner.mvlpt_proj.resblocks[0]
    assert torch.equal(block.attn.in_proj_weight,
                       values["prompt_learner.mvlpt_proj.resblocks.0.attn.in_proj_weight"])
    checkpoint["state_dict"]["vpt_embeddings_extra"] = torch.zeros(1)
    torch.save(checkpoint, path)
    with pytest.raises(RuntimeError, match="vpt_embeddings_extra"):
        trainer.load_model(str(tmp_path / "official"))


def test_soft_targets_as_the_official_forward_backward(parity_clip, tmp_path, monkeypatch):
    """ELEVATER's label vectors: one-hot gives the integer-label loss, multi-hot targets are
    divided by their sum (the fixture's ``soft_target_checks``)."""
    spec, expected = recipe.fixture("MVLPT_MCoOp")
    checks = spec["soft_target_checks"]
    trainer = build_mvlpt(spec, tmp_path, parity_clip, monkeypatch)
    trainer.model = lambda image: expected["logits"]  # the official logits of the batch
    one_hot = torch.nn.functional.one_hot(torch.tensor(spec["labels_for_loss"]), 10)
    loss, _ = trainer.compute_loss(recipe.images(), one_hot)
    assert abs(loss.item() - checks["loss_onehot_targets"]) < 1e-5
    multi = torch.zeros(4, 10)
    for row, classes in enumerate(checks["multilabel_targets"]):
        multi[row, classes] = 1
    loss, figures = trainer.compute_loss(recipe.images(), multi)
    assert abs(loss.item() - checks["loss_multihot_targets"]) < 1e-5
    assert figures["acc"] == checks["acc_multihot_targets"]
