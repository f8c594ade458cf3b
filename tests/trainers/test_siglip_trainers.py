"""Every trainer on ``tiny-siglip``: CoOp, MaPLe, PromptSRC and MVLPT train and evaluate; every
trainer with a demo config builds and takes a step; the logits carry SigLIP's bias, and the
sigmoid loss (TRAINER.PARTS.LOSS) is SigLIP's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import datasets  # noqa: F401  (registration)
import trainers  # noqa: F401  (registration)
from engine.config import get_cfg_default
from engine.trainer import build_trainer
from tests.datasets.test_demo import demo_config, demo_trainers
from trainers.base import normalize

SIGLIP_INPUT = ["MODEL.BACKBONE.NAME", "tiny-siglip", "INPUT.PIXEL_MEAN", "[0.5, 0.5, 0.5]",
                "INPUT.PIXEL_STD", "[0.5, 0.5, 0.5]", "INPUT.RESIZE_MODE", "squash"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from datasets.demo import generate

    root = tmp_path_factory.mktemp("demo_data")
    generate(root)
    return root


def siglip_cfg(root, out, trainer: str, *opts: str):
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/datasets/demo.yaml")
    cfg.merge_from_file(demo_config(trainer))
    cfg.merge_from_list(["DATASET.ROOT", str(root), "OUTPUT_DIR", str(out), "TRAINER.NAME",
                         trainer, "SEED", "1", "USE_CUDA", "False", *SIGLIP_INPUT, *opts])
    return cfg


def one_step(t) -> dict:
    batch = next(iter(t.train_loader_x))
    t.set_model_mode("train")
    t.epoch, t.batch_idx, t.num_batches = 0, 0, len(t.train_loader_x)
    return t.forward_backward(batch)


@pytest.mark.parametrize("trainer", ["CoOp", "MaPLe", "PromptSRC", "MVLPT"])
def test_trains_and_evaluates_on_tiny_siglip(trainer, demo_root, tmp_path):
    t = build_trainer(siglip_cfg(demo_root, tmp_path, trainer, "OPTIM.MAX_EPOCH", "1",
                                 "DATASET.NUM_SHOTS", "2"))
    assert t.clip_model.backbone.name == "tiny-siglip"
    before = {k: v.clone() for k, v in t.model.prompt_learner.state_dict().items()}
    t.train()
    moved = [k for k, v in t.model.prompt_learner.state_dict().items()
             if not torch.equal(v, before[k])]
    assert moved, "the prompts did not move"
    accuracy = t.test()
    assert 0.0 <= accuracy <= 100.0
    # the evaluation logits are SigLIP's: scaled cosine plus the learned bias
    image = next(iter(t.test_loader))["img"][:4]
    t.set_model_mode("eval")
    with torch.no_grad():
        logits = t.model_inference(image)
        image_features, text_features = t.model.features(image)
    clip_model = t.model.clip
    expected = clip_model.logit_scale.exp() * image_features @ text_features.t() - 12.0
    torch.testing.assert_close(logits.float(), expected.float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("trainer", demo_trainers())
def test_every_trainer_builds_and_steps_on_tiny_siglip(trainer, demo_root, tmp_path):
    t = build_trainer(siglip_cfg(demo_root, tmp_path, trainer))
    batch = next(iter(t.train_loader_x))
    if trainer not in ("ZeroshotCLIP", "ZeroshotCLIP2"):
        summary = one_step(t)
        assert all(torch.isfinite(torch.tensor(v)) for v in summary.values())
    t.set_model_mode("eval")
    with torch.no_grad():
        images = batch["img"]  # CoPrompt's training batches hold two views of each image
        images = images[0] if isinstance(images, list) else images
        logits = t.model_inference(images)
    assert torch.isfinite(logits).all() and logits.shape[0] == len(images)


def test_zero_shot_predicts_what_the_sigmoid_model_predicts(demo_root, tmp_path):
    t = build_trainer(siglip_cfg(demo_root, tmp_path, "ZeroshotCLIP"))
    image = next(iter(t.test_loader))["img"][:4]
    with torch.no_grad():
        logits = t.model_inference(image)
        features = normalize(t.clip_model.encode_image(image))
    probabilities = torch.sigmoid(features @ t.text_features.t() * 100.0 - 12.0)
    torch.testing.assert_close(torch.sigmoid(logits), probabilities, rtol=1e-5, atol=1e-6)


def test_sigmoid_loss_is_siglips(demo_root, tmp_path):
    t = build_trainer(siglip_cfg(demo_root, tmp_path, "CoOp", "TRAINER.PARTS.LOSS", "sigmoid"))
    batch = next(iter(t.train_loader_x))
    out = t.model.output(batch["img"])
    loss = t.objective(out, batch["label"])
    signs = 2 * F.one_hot(batch["label"], out.logits.shape[1]) - 1
    expected = -F.logsigmoid(signs * out.logits).sum() / len(batch["label"])
    torch.testing.assert_close(loss.terms["sigmoid"], expected)
    with pytest.raises(ValueError, match="TRAINER.PARTS.LOSS"):
        build_trainer(siglip_cfg(demo_root, tmp_path, "CoOp", "TRAINER.PARTS.LOSS", "hinge"))


def test_the_data_pipeline_squashes_as_the_backbone_was_trained(tmp_path):
    """INPUT.RESIZE_MODE squash: the test transform equals the backbone's own preprocessing
    (both sides resized, no crop); the default crops."""
    from PIL import Image

    import clip
    from engine.data.transforms import build_transform

    pixels = torch.randint(0, 255, (48, 80, 3), generator=torch.Generator().manual_seed(0))
    image = Image.fromarray(pixels.to(torch.uint8).numpy())
    _, preprocess = clip.load("tiny-siglip")
    cfg = siglip_cfg(tmp_path, tmp_path, "CoOp", "INPUT.INTERPOLATION", "bicubic")
    squashed = build_transform(cfg, is_train=False)(image)
    torch.testing.assert_close(squashed, preprocess(image))
    cfg.defrost()
    cfg.INPUT.RESIZE_MODE = "shortest"
    assert not torch.allclose(build_transform(cfg, is_train=False)(image), squashed)


def test_the_input_is_checked_against_siglips_preprocessing(tmp_path, caplog):
    import clip
    from trainers.base import check_input

    backbone = clip.describe("tiny-siglip")
    cfg = get_cfg_default()
    cfg.merge_from_file(demo_config("CoOp"))  # OpenAI's mean and std, set explicitly
    with pytest.raises(ValueError, match=r"PIXEL_MEAN .* was trained with \[0.5, 0.5, 0.5\]"):
        check_input(cfg, backbone)
    cfg.merge_from_list(["INPUT.PIXEL_MEAN", "[0.5, 0.5, 0.5]", "INPUT.PIXEL_STD",
                         "[0.5, 0.5, 0.5]"])
    with caplog.at_level("WARNING"):
        check_input(cfg, backbone)
    assert "resized by bicubic (squash)" in caplog.text
    caplog.clear()
    cfg.merge_from_list(["INPUT.RESIZE_MODE", "squash"])
    with caplog.at_level("WARNING"):
        check_input(cfg, backbone)
    assert "squash" not in caplog.text
