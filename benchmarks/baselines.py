"""The benchmark's set-up for the two methods that need more than a config: CoPrompt (its
LLM-written class descriptions) and PromptKD (its teacher, a second and larger backbone).

CoPrompt reads its descriptions from files; the benchmark writes :data:`DESCRIPTIONS` sentences
per class into a temporary folder (their number changes only the one-off frozen text features,
not the step). PromptKD's student distils from a teacher of ViT-L/14's shape at the scale's
reduction (:func:`teacher_scale`; at full size ViT-L/14 itself), prompted as the official
teacher (IVLP, 4 + 4 tokens, depth capped at the scale's layers), random weights: nothing is
downloaded. Its step is the official one: the teacher's logits on the batch (no gradients), the
student's against the teacher's cached class text features, the KD loss, backward, SGD step.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import torch
from torch import nn

DESCRIPTIONS = 5
_FOLDERS: list[tempfile.TemporaryDirectory] = []  # alive as long as the process


def teacher_scale(scale):
    """ViT-L/14's shape at ``scale``'s reduction: embedding and text 1.5x the student's, vision
    4/3x (to a multiple of 64), 14-pixel patches; ViT-L/14's 24 image layers at full depth."""
    full = scale.vision_layers == 12
    return dataclasses.replace(
        scale, name=f"teacher of {scale.name}", embed_dim=scale.embed_dim * 3 // 2,
        vision_width=max(64, round(scale.vision_width * 4 / 3 / 64) * 64),
        text_width=scale.text_width * 3 // 2, text_heads=max(1, scale.text_heads * 3 // 2),
        patch_size=14 if scale.patch_size == 16 else scale.patch_size,
        vision_layers=24 if full else scale.vision_layers)


def write_descriptions(classnames: list[str]) -> tuple[str, dict[str, list[str]]]:
    """A new temporary folder and :data:`DESCRIPTIONS` sentences for each class."""
    folder = tempfile.TemporaryDirectory(prefix="coprompt-descriptions-")
    _FOLDERS.append(folder)
    text = {name: [f"a photo of a {name}, description {k}." for k in range(DESCRIPTIONS)]
            for name in classnames}
    return folder.name, text


def coprompt_config(cfg, classnames: list[str]):
    """``cfg`` reading descriptions the benchmark writes for ``classnames``."""
    from trainers.coprompt import description_file

    folder, text = write_descriptions(classnames)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TRAINER.CoPrompt.GPT_DIR = folder
    Path(description_file(cfg)).write_text(json.dumps(text), encoding="utf-8")
    return cfg


class DistillationMethod:
    """PromptKD's student and objective with the :class:`~trainers.base.PromptMethod` surface
    the benchmark drives (``model``, ``trained``, ``objective``, ``losses``, ``backward``)."""

    def __init__(self, model: nn.Module, student: nn.Module, objective, teacher) -> None:
        self.model, self.trained, self.objective, self.teacher = model, student, objective, teacher

    def losses(self, image: torch.Tensor, label: torch.Tensor | None = None):
        """The step of the official loop: the labels are never read."""
        return self.objective(None, None, self.model.output(image))

    def param_groups(self, lr: float) -> None:
        return None

    def backward(self, losses, backward) -> None:
        backward(losses.total)


def build_teacher(scale, classnames: list[str], cfg):
    """The frozen, prompted teacher at ``scale``'s reduction of ViT-L/14."""
    from trainers.base import PromptedCLIP
    from trainers.ivlp import IVLPPromptLearner

    shape = teacher_scale(scale)
    backbone = shape.build_clip(seed=1)
    node = cfg.TRAINER.PROMPTKD
    depth = min(9, shape.text_layers, shape.vision_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        learner = IVLPPromptLearner(backbone, classnames, n_ctx_text=4, n_ctx_vision=4,
                                    depth_text=depth, depth_vision=depth,
                                    ctx_init=node.CTX_INIT)
    return PromptedCLIP(backbone, learner.requires_grad_(False)).eval()


def build_promptkd(cfg, clip_model: nn.Module, classnames: list[str], scale):
    """PromptKD's student on ``clip_model`` (the official config's learner), its projector to
    the teacher's width, the teacher's cached class text features and the KD objective."""
    from trainers.learners import learner_entry
    from trainers.method import learner_settings
    from trainers.objective import build_objective
    from trainers.parts import PartContext
    from trainers.promptkd import DistilledCLIP, FeatureProjector, PromptKD, Student

    declaration = PromptKD.declaration
    teacher = build_teacher(scale, classnames, cfg)
    settings, _ = learner_settings(declaration, PartContext(cfg, clip_model, classnames), "VPT")
    learner = learner_entry("VPT").cls(clip_model, classnames, **settings)
    student = Student(learner, FeatureProjector(clip_model.embed_dim, teacher.clip.embed_dim),
                      len(classnames))
    objective = build_objective(declaration.terms, PartContext(cfg, clip_model, classnames,
                                                            teacher=teacher))
    student.teacher_text_features.copy_(objective["kd"].class_vectors)
    return DistillationMethod(DistilledCLIP(clip_model, student), student, objective, teacher)


def teacher_bytes(teacher: nn.Module) -> int:
    """Bytes of the teacher's weights (backbone and prompts) as held."""
    return sum(t.numel() * t.element_size() for t in teacher.state_dict().values())


def trained_numbers(method) -> tuple[int, int]:
    """(trained scalars, bytes of what a checkpoint holds: the trained module's state, its
    persistent buffers included) of a built method."""
    trained = sum(p.numel() for p in method.trained.parameters() if p.requires_grad)
    saved = sum(t.numel() * t.element_size() for t in method.trained.state_dict().values())
    return trained, saved


def teacher_memory(scale, classes: int = 10, batches: tuple[int, int] = (1, 2),
                   batch: int = 8) -> dict:
    """PromptKD's teacher at ``scale`` (ViT-L/14 at full size), counted apart from the
    student: its weights, and what its image forward on ``batch`` images would save for a
    backward pass (counted on two small batches, taken to ``batch`` on their line: linear in
    the batch). It runs without gradients, so a step holds only one layer's share of that at a
    time; the count bounds it."""
    from benchmarks.activations import saved_bytes
    from benchmarks.workload import class_names, trainer_config

    cfg = trainer_config("PromptKD", scale, "fp32")
    teacher = build_teacher(scale, class_names(classes), cfg)
    shape = teacher_scale(scale)
    parameters = {t.untyped_storage().data_ptr() for t in teacher.state_dict().values()}

    def count(n: int) -> int:
        image = torch.randn(n, 3, shape.image_resolution, shape.image_resolution,
                            requires_grad=True)  # frozen weights: a graph only from the input
        schedule = teacher.prompt_learner()
        with torch.enable_grad():
            return saved_bytes(lambda: teacher.clip.encode_image(image, schedule.vision),
                               parameters)

    small, large = (count(n) for n in batches)
    per_image = (large - small) / (batches[1] - batches[0])
    return {"teacher": shape.name, "embed_dim": shape.embed_dim,
            "vision_width": shape.vision_width, "vision_layers": shape.vision_layers,
            "weight_bytes": teacher_bytes(teacher), "batch": batch,
            "forward_saved_bytes_bound": round(large + per_image * (batch - batches[1])),
            "counted_batches": {str(n): b for n, b in zip(batches, (small, large), strict=True)}}


if __name__ == "__main__":
    import argparse

    from benchmarks.workload import SCALES

    parser = argparse.ArgumentParser(description="PromptKD's teacher memory, counted")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    result = teacher_memory(SCALES[args.scale])
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
