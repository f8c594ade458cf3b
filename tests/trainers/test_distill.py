"""A distillation method as a declaration plus a term: a frozen tiny teacher, a tiny student,
unlabelled images (the toy images without their labels)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import clip
import trainers  # noqa: F401  (registration)
from engine.config import get_cfg_default
from engine.errors import ConfigError
from engine.trainer import build_trainer
from tests.engine.toy import make_image_folder
from trainers.base import load_teacher, normalize
from trainers.method import Method, assemble, register_method

CLASSNAMES = ["red", "green", "blue"]

# a distillation method is a declaration: unlabelled images and a teacher, the Distill term
DISTILL = Method("TinyDistill", node="COOP", learner="CoOp", terms=("Distill",),
                 needs=("unlabelled", "teacher"), teacher=lambda cfg: clip.tiny_clip(seed=7))
TinyDistill = register_method(DISTILL, module=__name__)
TinyDistillCE = register_method(Method(
    "TinyDistillCE", node="COOP", learner="CoOp", terms=("CE", "Distill"),
    needs=("labelled", "unlabelled", "teacher"), teacher=lambda cfg: clip.tiny_clip(seed=7)),
    module=__name__)


def config(*opts: str):
    cfg = get_cfg_default()
    cfg.merge_from_list(["TRAINER.COOP.N_CTX", "2", "TRAINER.COOP.PREC", "fp32",
                         "DATASET.NAME", "Demo", "TRAINER.DISTILL.T", "2.0", *opts])
    return cfg


def images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_the_term_is_the_tempered_kl_to_the_frozen_teacher_and_teaches():
    student, teacher = clip.tiny_clip(seed=3), clip.tiny_clip(seed=7)
    student.requires_grad_(False)
    teacher.requires_grad_(False)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(0)
    method = assemble(DISTILL, config(), student, CLASSNAMES, teacher=teacher)
    assert method.objective.names == ["distill"] and method.objective.batches == {"unlabelled"}
    batch = images()
    losses = method.losses(None, None, batch)
    assert losses.accuracy is None and "acc" not in losses.figures()

    # by hand: the teacher's zero-shot logits on CoOp's template, T = 2
    prompts = teacher.tokenizer([f"a photo of a {c}." for c in CLASSNAMES])
    with torch.no_grad():
        text = normalize(teacher.encode_text(prompts))
        target = teacher.logit_scale.exp() * normalize(teacher.encode_image(batch)) @ text.t()
        student_logits = method.model(batch)
    expected = F.kl_div(F.log_softmax(student_logits / 2, -1), F.softmax(target / 2, -1),
                        reduction="batchmean") * 4
    torch.testing.assert_close(losses.total.detach(), expected, atol=1e-5, rtol=1e-5)

    optim = torch.optim.SGD(method.trained_parameters(), lr=0.5)
    first = losses.total.item()
    for _ in range(8):
        optim.zero_grad()
        loss = method.losses(None, None, batch).total
        loss.backward()
        optim.step()
    assert method.losses(None, None, batch).total.item() < 0.7 * first
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert method.trained.state_dict().keys() == {"ctx"}  # the teacher never enters a file


def engine_cfg(root: str, out: str, name: str):
    from tests.engine.toy import ToyFolder  # noqa: F401  (registers the toy dataset)

    cfg = get_cfg_default()
    cfg.merge_from_list([
        "DATASET.ROOT", root, "DATASET.NAME", "ToyFolder", "TRAINER.NAME", name,
        "MODEL.BACKBONE.NAME", "tiny", "INPUT.SIZE", "(32, 32)", "OUTPUT_DIR", out, "SEED", "1",
        "USE_CUDA", "False", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "3",
        "DATALOADER.TRAIN_U.SAME_AS_X", "False", "DATALOADER.TRAIN_U.BATCH_SIZE", "2",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.1", "OPTIM.MAX_EPOCH", "1", "VERBOSE", "False",
        "TEST.NO_TEST", "True", "TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "2"])
    return cfg


def test_an_unlabelled_method_trains_over_the_unlabelled_images(tmp_path):
    root = make_image_folder(str(tmp_path / "data"), per_class=2)
    trainer = build_trainer(engine_cfg(root, str(tmp_path / "out"), "TinyDistill"))
    assert trainer.train_loader_x is trainer.unlabelled_loader
    assert trainer.unlabelled_loader.batch_size == 2  # DATALOADER.TRAIN_U's
    start = trainer.model.prompt_learner.ctx.detach().clone()
    seen = []
    step = trainer.compute_losses

    def spy(image, label, unlabelled=None):
        seen.append((image, label, unlabelled.shape[0]))
        return step(image, label, unlabelled)

    trainer.compute_losses = spy
    trainer.train()
    assert seen and all(i is None and y is None and n == 2 for i, y, n in seen)
    assert len(seen) == 3  # six unlabelled images, two per batch
    assert not torch.equal(trainer.model.prompt_learner.ctx, start)


def test_labelled_and_unlabelled_batches_in_one_step(tmp_path):
    root = make_image_folder(str(tmp_path / "data"), per_class=2)
    trainer = build_trainer(engine_cfg(root, str(tmp_path / "out"), "TinyDistillCE"))
    trainer.set_model_mode("train")
    trainer.num_batches, trainer.batch_idx = 2, 0
    batch = next(iter(trainer.train_loader_x))
    figures = trainer.forward_backward(batch)
    assert {"acc", "loss_ce", "loss_distill"} <= set(figures)
    assert figures["loss"] == pytest.approx(figures["loss_ce"] + figures["loss_distill"])
    for _ in range(4):  # the unlabelled loader (3 batches) restarts when it runs out
        trainer.forward_backward(batch)


def test_a_teacher_must_be_named():
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "SomeDistillation"
    with pytest.raises(ConfigError, match="TRAINER.TEACHER.BACKBONE"):
        load_teacher(cfg)
    cfg.TRAINER.TEACHER.BACKBONE = "tiny"
    teacher = load_teacher(cfg)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
