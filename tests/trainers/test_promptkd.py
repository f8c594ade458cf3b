"""PromptKD on the tiny CLIP with a tiny teacher (a wider tiny CLIP in a backbone folder): the
distillation term against its formula, the teacher read from a checkpoint in the official
PromptSRC format, the official student keys, and end to end on the Demo dataset: distillation
on the unlabelled training images, then the student evaluated alone from its checkpoint
(the teacher's weights and checkpoint gone), on the base half (val) and the new half (test).
The distillation test prints its time and peak memory."""

from __future__ import annotations

import json
import resource
import shutil
import time

import pytest
import torch
import torch.nn.functional as F

import clip
import datasets  # noqa: F401  (registration)
import trainers  # noqa: F401  (registration)
from engine.config import get_cfg_default
from engine.errors import ConfigError
from engine.trainer import build_trainer
from trainers.promptkd import distillation_loss, map_student_keys

TEACHER_WIDTH = 128


def teacher_backbone(folder) -> clip.CLIP:
    """A tiny CLIP twice as wide as ``tiny``, as an open_clip backbone folder."""
    model = clip.tiny_clip(seed=5, embed_dim=TEACHER_WIDTH, vision_width=TEACHER_WIDTH,
                           text_width=TEACHER_WIDTH)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"embed_dim": TEACHER_WIDTH, "quick_gelu": True,
              "vision_cfg": {"image_size": 32, "layers": 2, "width": TEACHER_WIDTH,
                             "patch_size": 8},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": TEACHER_WIDTH,
                           "heads": 2, "layers": 2}}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return model


def official_teacher_file(path, model: clip.CLIP, n_ctx: int = 2, seed: int = 0) -> dict:
    """A PromptSRC checkpoint as the official code writes it: prompts under IVLP's names inside
    the whole model (frozen CLIP, the zero-shot encoder copy, token buffers), Dassl's dict."""
    g = torch.Generator().manual_seed(seed)
    prompts = {"prompt_learner.ctx": torch.randn(n_ctx, TEACHER_WIDTH, generator=g) * 0.5,
               "image_encoder.VPT": torch.randn(n_ctx, TEACHER_WIDTH, generator=g) * 0.5,
               "image_encoder.transformer.resblocks.1.VPT_shallow":
                   torch.randn(n_ctx, TEACHER_WIDTH, generator=g) * 0.5,
               "text_encoder.transformer.resblocks.1.VPT_shallow":
                   torch.randn(n_ctx, TEACHER_WIDTH, generator=g) * 0.5}
    state = dict(prompts)
    state["image_encoder.conv1.weight"] = model.visual.conv1.weight.clone()
    state["text_encoder.positional_embedding"] = model.positional_embedding.clone()
    state["prompt_learner.ZS_image_encoder.conv1.weight"] = torch.zeros(1)
    state["prompt_learner.token_prefix"] = torch.zeros(8, 1, TEACHER_WIDTH)
    state["logit_scale"] = model.logit_scale.clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "epoch": 20, "optimizer": None, "scheduler": None}, path)
    return prompts


def test_distillation_term_is_t_squared_kl_over_batch_and_classes():
    student, teacher = torch.randn(3, 5), torch.randn(3, 5)
    t = 2.0
    p = F.softmax(teacher / t, dim=1)
    kl = (p * (p.log() - F.log_softmax(student / t, dim=1))).sum()
    torch.testing.assert_close(distillation_loss(student, teacher, t), kl * t * t / 15)


def test_official_student_keys_map_onto_ours():
    official = {"image_encoder.VPT": torch.ones(4, 64),
                "image_encoder.transformer.resblocks.1.VPT_shallow": torch.ones(4, 64),
                "image_encoder.conv1.weight": torch.zeros(1), "logit_scale": torch.zeros(()),
                "VPT_image_trans.conv1.0.weight": torch.ones(128, 64, 1, 1),
                "VPT_image_trans.conv1.1.running_var": torch.ones(128),
                "VPT_image_trans.conv1.3.bias": torch.ones(128)}
    mapped = map_student_keys(official)
    assert sorted(mapped) == ["projector.layers.0.weight", "projector.layers.1.running_var",
                              "projector.layers.3.bias", "prompt_learner.vision_prompts.0",
                              "prompt_learner.vision_prompts.1"]
    assert mapped["projector.layers.0.weight"].shape == (128, 64)


def demo_cfg(tmp_path, *opts: str):
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/datasets/demo.yaml")
    cfg.merge_from_file("configs/trainers/PromptKD/demo_tiny.yaml")
    cfg.merge_from_list([
        "DATASET.ROOT", str(tmp_path / "data"), "OUTPUT_DIR", str(tmp_path / "out"),
        "TRAINER.NAME", "PromptKD", "SEED", "1", "USE_CUDA", "False",
        "TRAINER.PROMPTKD.TEACHER_NAME", str(tmp_path / "teacher"),
        "TRAINER.PROMPTKD.TEACHER_CKPT", str(tmp_path / "teacher_ckpt" / "model-best.pth.tar"),
        "VERBOSE", "False", *opts])
    return cfg


def test_missing_teacher_checkpoint_is_a_one_line_error(tmp_path):
    teacher_backbone(tmp_path / "teacher")
    trainer = build_trainer(demo_cfg(tmp_path, "OPTIM.MAX_EPOCH", "1"))
    with pytest.raises(ConfigError, match=r"teacher checkpoint .* does not exist: download"):
        trainer.train()


def test_distils_from_an_official_teacher_file_and_the_student_evaluates_alone(tmp_path):
    teacher_model = teacher_backbone(tmp_path / "teacher")
    prompts = official_teacher_file(tmp_path / "teacher_ckpt" / "model-best.pth.tar",
                                    teacher_model)
    cfg = demo_cfg(tmp_path, "OPTIM.MAX_EPOCH", "2", "TEST.NO_TEST", "True")
    trainer = build_trainer(cfg)
    assert trainer.num_classes == 8 and trainer.val_loader is not None
    student = trainer._models["VLPromptLearner"]
    before = {k: v.clone() for k, v in student.state_dict().items()}
    start, peak_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainer.train()
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"PromptKD tiny distillation: 2 epochs in {elapsed:.1f} s; peak RSS {peak / 1024:.0f} "
          f"MiB (before: {peak_before / 1024:.0f} MiB)")

    teacher = trainer.teacher
    assert torch.equal(teacher.prompt_learner.ctx, prompts["prompt_learner.ctx"])
    assert torch.equal(teacher.prompt_learner.vision_prompts["1"],
                       prompts["image_encoder.transformer.resblocks.1.VPT_shallow"])
    with torch.no_grad():
        stored = teacher.text_side().features
    after = student.state_dict()
    torch.testing.assert_close(after["teacher_text_features"], stored)
    assert stored.shape == (8, TEACHER_WIDTH)
    changed = [k for k in before if k != "teacher_text_features"
               and not torch.equal(before[k], after[k])]
    assert {"prompt_learner.vision_prompts.0", "projector.layers.0.weight",
            "projector.layers.1.running_mean"} <= set(changed)
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not any(p.requires_grad for p in trainer.clip_model.parameters())

    # the student alone: the teacher's weights and checkpoint are gone (its description, which
    # gives the projector's width, stays)
    (tmp_path / "teacher" / "open_clip_pytorch_model.bin").unlink()
    shutil.rmtree(tmp_path / "teacher_ckpt")
    fresh = build_trainer(demo_cfg(tmp_path, "OUTPUT_DIR", str(tmp_path / "eval")))
    fresh.load_model(str(tmp_path / "out"), epoch=2)
    assert fresh.teacher is None
    images = next(iter(fresh.test_loader))["img"]
    fresh.set_model_mode("eval")
    trainer.set_model_mode("eval")
    with torch.no_grad():
        trainer.model.rows = slice(4, None)
        fresh.model.rows = slice(4, None)
        torch.testing.assert_close(fresh.model(images), trainer.model(images))
    assert 0 <= fresh.test("val") <= 100 and 0 <= fresh.test("test") <= 100
    assert fresh.teacher is None


def test_maple_student_trains_its_text_prompts_through_the_couplings(tmp_path):
    """The combination config: PromptKD distilling into MaPLe's prompts (the vision prompts of
    the student are its couplings of the text prompts)."""
    teacher_model = teacher_backbone(tmp_path / "teacher")
    official_teacher_file(tmp_path / "teacher_ckpt" / "model-best.pth.tar", teacher_model)
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/trainers/PromptKD/vit_b16_c2_ep20_batch8_4+4ctx_maple.yaml")
    parts = cfg.TRAINER.PARTS.PROMPT_LEARNER
    cfg = demo_cfg(tmp_path, "OPTIM.MAX_EPOCH", "1", "TEST.NO_TEST", "True",
                   "TRAINER.PARTS.PROMPT_LEARNER", parts, "TRAINER.MAPLE.PROMPT_DEPTH", "2")
    trainer = build_trainer(cfg)
    learner = trainer.student.prompt_learner
    assert type(learner).__name__ == "MaPLePromptLearner"
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    trainer.train()
    after = learner.state_dict()
    assert {"ctx", "text_prompts.1", "couplings.0.weight", "couplings.1.weight"} <= {
        k for k in before if not torch.equal(before[k], after[k])}
