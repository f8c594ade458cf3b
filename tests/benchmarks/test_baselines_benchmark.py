"""The benchmark's CoPrompt and PromptKD set-ups (benchmarks/baselines.py) on the tiny scale."""

import pytest
import torch

from benchmarks import baselines, measure
from benchmarks.activations import saved_activation_bytes
from benchmarks.workload import CPU, FULL, TINY, class_names, trainer_config


def test_teacher_has_vit_l14_shape_at_full_size():
    teacher = baselines.teacher_scale(FULL)
    assert (teacher.embed_dim, teacher.vision_width, teacher.vision_layers) == (768, 1024, 24)
    assert (teacher.text_width, teacher.text_heads, teacher.patch_size) == (768, 12, 14)


def test_promptkd_step_trains_the_student_only_against_the_teacher():
    cfg = trainer_config("PromptKD", TINY, "fp32")
    names = class_names(4)
    run = measure.build_trainer("PromptKD", cfg, TINY.build_clip(), names, torch.device("cpu"),
                                TINY)
    teacher = run.method.teacher
    assert teacher.clip.embed_dim == baselines.teacher_scale(TINY).embed_dim
    # the student's class vectors are the teacher's text features
    assert torch.equal(run.method.trained.teacher_text_features,
                       run.method.objective["kd"].class_vectors)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trained = [p.clone() for p in run.method.trained.parameters()]
    image = torch.randn(4, 3, TINY.image_resolution, TINY.image_resolution)
    run.model.train()
    measure.train_step(run, image, torch.zeros(4, dtype=torch.long))
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(a, b) for a, b in zip(trained, run.method.trained.parameters(),
                                                   strict=True))
    # the teacher runs without gradients: nothing of it is saved for the backward pass
    params = {p.untyped_storage().data_ptr() for p in run.model.parameters()}
    student = saved_activation_bytes(run, image, None, params)
    teacher_params = {p.untyped_storage().data_ptr() for p in teacher.parameters()}
    assert 0 < student
    assert saved_activation_bytes(run, image, None, params | teacher_params) == student
    assert baselines.teacher_bytes(teacher) > sum(
        p.numel() * 4 for p in run.model.clip.parameters())


def test_promptkd_without_a_scale_is_a_clear_error():
    cfg = trainer_config("PromptKD", TINY, "fp32")
    with pytest.raises(ValueError, match="pass scale"):
        measure.build_trainer("PromptKD", cfg, TINY.build_clip(), class_names(2),
                              torch.device("cpu"))


def test_coprompt_reads_the_descriptions_the_benchmark_writes():
    cfg = trainer_config("CoPrompt", TINY, "fp32")
    names = class_names(3)
    run = measure.build_trainer("CoPrompt", cfg, TINY.build_clip(), names, torch.device("cpu"))
    features = run.method.objective["text_consistency"].descriptions
    assert features.shape[:2] == (baselines.DESCRIPTIONS, len(names))
    trained, saved = baselines.trained_numbers(run.method)
    assert trained > 0 and saved >= trained * 4


def test_side_by_side_gives_the_official_step_our_mma_blocks_and_batch():
    from benchmarks import side_by_side

    cfg = trainer_config("MultiModalAdapter", CPU, "fp32")
    node = cfg.TRAINER.MMADAPTER
    batch, placement = side_by_side.settings("mma")
    assert batch == cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 16
    assert placement == ["--start", str(node.ADAPTER_START), "--end", str(node.ADAPTER_END)]
    assert (node.ADAPTER_START, node.ADAPTER_END) == (2, 2)  # the official 5-12 capped at 2
    text = 'log line\n{"side": "x", "step_s": 1}\nmore\n{"side": "official", "step_s": 2}\n'
    assert side_by_side._last_json(text) == {"side": "official", "step_s": 2}
