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
from types import SimpleNamespace

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
    pertask = spec["config"]["DATASET.MULTITASK_LABEL_PERTASK"]
    cfg.merge_from_list(spec["script_opts"] + spec["common_opts"] + [
        "DATASET.ROOT", str(tmp_path / "data"),
        "DATASET.DATASET", spec["config"]["DATASET.DATASET"], "DATASET.COOP", "True",
        "DATASET.MULTITASK", "True", "DATASET.MULTITASK_LABEL_PERTASK", str(pertask),
        "TRAINER.NAME", "MVLPT", "OUTPUT_DIR", str(tmp_path / "out"), "USE_CUDA", "False",
        "SEED", "1", "DATALOADER.NUM_WORKERS", "0"])
    cfg.freeze()
    monkeypatch.setattr(trainers.base, "load_clip_model", lambda cfg: clip_model)
    return build_trainer(cfg)


def write_official_checkpoint(spec: dict, directory) -> dict[str, torch.Tensor]:
    """The official ``save_model`` output: the learner's state dict (official names, token
    buffers poisoned with 7) in Dassl's dict, at ``prompt_learner/model-best.pth.tar``."""
    values = recipe.mvlpt_trainable_tensors(spec["trainable"])
    state = {k.removeprefix("prompt_learner."): v for k, v in values.items()}
    node = spec["config"]["TRAINER.MVLPT"]
    n_cls, length = len(spec["classnames"]), spec["text_context_length"]
    n_ctx = node["COOP"]["N_CTX"] or node["COCOOP"]["N_CTX"]
    state["token_prefix"] = torch.full((n_cls, 1, 512), 7.0)
    state["token_suffix"] = torch.full((n_cls, length - 1 - n_ctx, 512), 7.0)
    folder = directory / "prompt_learner"
    folder.mkdir(parents=True)
    optimizer = torch.optim.SGD([torch.nn.Parameter(v.clone()) for v in values.values()], lr=0.002)
    torch.save({"state_dict": state, "epoch": 7, "optimizer": optimizer.state_dict(),
                "scheduler": {}, "val_result": 42.0}, folder / "model-best.pth.tar")
    return values


def assert_sampled_close(ours: torch.Tensor, expected: dict | torch.Tensor, rtol: float) -> None:
    """Compare with a fixture tensor, whole or reduced to its norm and a fixed sample of its
    values (``flat[::step]`` or evenly spaced indices)."""
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(ours.detach().float(), expected.float(),
                                   atol=rtol * float(expected.abs().max()), rtol=rtol)
        return
    flat = ours.detach().reshape(-1).float()
    sample, norm = expected["values"], float(expected["norm"])
    if "step" in expected:
        flat = flat[::expected["step"]][:sample.numel()]
    elif flat.numel() > sample.numel():
        flat = flat[torch.linspace(0, flat.numel() - 1, sample.numel()).round().long()]
    torch.testing.assert_close(flat, sample, atol=rtol * norm / ours.numel() ** 0.5, rtol=rtol)
    assert abs(float(ours.detach().float().norm()) - norm) <= rtol * norm


def training_loss(trainer, labels: torch.Tensor) -> tuple[dict, torch.Tensor, dict]:
    """The trainer's training-mode loss on the fixture images, with the features and logits it
    computed on the way."""
    seen = {}
    logits_of = trainer.model.logits

    def spy(image_features, text_features):
        seen.update(image=image_features, text=text_features)
        seen["logits"] = logits_of(image_features, text_features)
        return seen["logits"]

    trainer.model.logits = spy
    trainer.set_model_mode("train")
    trainer.model.clip.eval()
    with trainer.precision.autocast():
        loss, figures = trainer.compute_loss(recipe.images(), labels)
    return seen, loss, figures


def check_the_data_path(trainer, spec: dict) -> torch.Tensor:
    """Class names in task order, labels offset, domain = task, the batch's tasks."""
    assert trainer.dm.dataset.classnames == spec["classnames"]
    assert [list(t[1:]) for t in trainer.dm.tasks] == list(spec["task_class_ranges"].values())
    for item in trainer.dm.dataset.train_x:
        assert spec["classnames"][item.label] == item.classname
        assert spec["task_names"][item.domain] in trainer.dm.tasks[item.domain]
    starts = torch.tensor([task.start for task in trainer.dm.tasks])
    tasks = torch.bucketize(torch.tensor(spec["labels_for_loss"]), starts, right=True) - 1
    assert tasks.tolist() == spec["tasks_for_loss"]  # the task of a label is the domain's
    assert len(set(tasks.tolist())) == spec["num_tasks_in_batch"]
    return tasks


def check_outputs(seen: dict, loss: torch.Tensor, figures: dict, spec: dict,
                  expected: dict) -> None:
    torch.testing.assert_close(seen["logits"].detach(), expected["logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(seen["image"], normalize(expected["image_features"]), atol=1e-5,
                               rtol=0)
    if isinstance(expected["text_features"], dict):  # per image (MCoCoOp), normalised, reduced
        assert_sampled_close(seen["text"], expected["text_features"], rtol=1e-4)
    else:
        torch.testing.assert_close(seen["text"], normalize(expected["text_features"]),
                                   atol=1e-5, rtol=0)
    assert abs(loss.item() - spec["loss"]) < 1e-5
    assert figures["acc"] == spec["train_acc"]
    # what the tolerance catches: the smallest plausible slip moves the logits by far more
    slips = spec.get("max_abs_logit_change_under_plausible_slips") or {
        name: slip["max_abs_logit_change"] for name, slip in spec["plausible_slips"].items()
        if "max_abs_logit_change" in slip}
    assert min(slips.values()) > 10 * 1e-4


def check_gradients(trainer, loss: torch.Tensor, expected: dict, keep: bool = False) -> None:
    learner = trainer.model.prompt_learner
    learner.zero_grad()
    loss.backward(retain_graph=keep)
    params = dict(learner.named_parameters())
    assert len(params) == len(expected["grads"])
    for name, grad in expected["grads"].items():
        ours = next(iter(trainer.map_official_state_dict({name: None})))
        assert_sampled_close(params[ours].grad, grad, rtol=1e-4)


_PLAIN_IMAGE_FEATURES: list[tuple[torch.Tensor, torch.Tensor]] = []


def reuse_plain_image_features(clip_model, monkeypatch) -> None:
    """The image tower without prompts gives the same features to every variant that has no
    visual prompts (MCoOp, MCoCoOp): compute them once for these tests."""
    encode = clip_model.encode_image

    def once(image, prompts=None, **options):
        if prompts is not None:
            return encode(image, prompts, **options)
        for seen, features in _PLAIN_IMAGE_FEATURES:
            if torch.equal(seen, image):
                return features.clone()
        _PLAIN_IMAGE_FEATURES.append((image.clone(), encode(image, None, **options)))
        return _PLAIN_IMAGE_FEATURES[-1][1].clone()

    monkeypatch.setattr(clip_model, "encode_image", once)


@pytest.mark.parametrize("variant", ["MCoOp", "MVPT", "MUPT_pertask", "MCoCoOp"])
def test_reproduces_official_logits_loss_and_gradients(variant, parity_clip, tmp_path,
                                                       monkeypatch):
    """As few passes at full size as the five fixtures allow (the time budget): MUPT and MUPT
    with the per-task mask share one forward pass (same tensors; the mask acts on the loss, whose
    value tells the 0-mask from a -inf one), the gradients of MUPT's loss cover the visual
    prompts' path (MVPT's gradients are not computed again), and the plain image features of
    MCoOp and MCoCoOp are computed once."""
    spec, expected = recipe.fixture(f"MVLPT_{variant}")
    trainer = build_mvlpt(spec, tmp_path, parity_clip, monkeypatch)
    reuse_plain_image_features(parity_clip, monkeypatch)
    check_the_data_path(trainer, spec)
    write_official_checkpoint(spec, tmp_path / "official")
    trainer.load_model(str(tmp_path / "official"))
    with torch.set_grad_enabled(variant != "MVPT"):  # MVPT: no backward pass (see above)
        seen, loss, figures = training_loss(trainer, torch.tensor(spec["labels_for_loss"]))
    learner = trainer.model.prompt_learner
    if variant == "MUPT_pertask":
        plain_spec, plain = recipe.fixture("MVLPT_MUPT")
        labels = torch.tensor(plain_spec["labels_for_loss"])
        plain_loss = torch.nn.functional.cross_entropy(seen["logits"], labels)
        check_outputs(seen, plain_loss, figures | {"acc": plain_spec["train_acc"]}, plain_spec,
                      plain)
        check_gradients(trainer, plain_loss, plain)
        with torch.no_grad():
            ctx, visual = learner.prompts()
        assert_sampled_close(ctx, plain["text_ctx_after_projection"], rtol=1e-5)
        assert_sampled_close(visual[:1], plain["vpt_shallow_after_projection"], rtol=1e-5)
        assert_sampled_close(visual[1:], plain["vpt_deep_after_projection"], rtol=1e-5)
        # the official model multiplies the logits by the task mask (0, not -inf) also when
        # evaluating, where it cannot change a per-task result: here it acts on the loss only
        torch.testing.assert_close(seen["logits"].detach(), expected["logits_without_mask"],
                                   atol=1e-4, rtol=0)
        seen["logits"] = seen["logits"] * trainer.objective["ce"].mask(labels, 10)
        # the logged training accuracy is that of every class's logits (MUPT's, above); the
        # official one is taken on the masked logits
        assert figures["acc"] == plain_spec["train_acc"]
        figures = figures | {"acc": spec["train_acc"]}
    check_outputs(seen, loss, figures, spec, expected)
    if "meta_net_output" in expected:
        assert_sampled_close(learner.meta_net(seen["image"]), expected["meta_net_output"],
                             rtol=1e-4)
    if variant in ("MCoOp", "MCoCoOp"):
        check_gradients(trainer, loss, expected)


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
    with pytest.raises(ValueError, match=r"1 unexpected \(vpt_embeddings_extra\)"):
        trainer.load_model(str(tmp_path / "official"))


def test_soft_targets_as_the_official_forward_backward(parity_clip, tmp_path, monkeypatch):
    """ELEVATER's label vectors: one-hot gives the integer-label loss, multi-hot targets are
    divided by their sum (the fixture's ``soft_target_checks``)."""
    spec, expected = recipe.fixture("MVLPT_MCoOp")
    checks = spec["soft_target_checks"]
    trainer = build_mvlpt(spec, tmp_path, parity_clip, monkeypatch)
    out = SimpleNamespace(logits=expected["logits"])  # the official logits of the batch
    one_hot = torch.nn.functional.one_hot(torch.tensor(spec["labels_for_loss"]), 10)
    assert abs(trainer.objective(out, one_hot).total.item() - checks["loss_onehot_targets"]) < 1e-5
    multi = torch.zeros(4, 10)
    for row, classes in enumerate(checks["multilabel_targets"]):
        multi[row, classes] = 1
    losses = trainer.objective(out, multi)
    assert abs(losses.total.item() - checks["loss_multihot_targets"]) < 1e-5
    assert losses.figures()["acc"] == checks["acc_multihot_targets"]
