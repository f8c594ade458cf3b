"""CoOp, CoCoOp and zero-shot CLIP on the tiny CLIP and the synthetic Demo dataset."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

import clip
import datasets  # noqa: F401  (registration)
import trainers  # noqa: F401  (registration)
from engine.config import get_cfg_default
from engine.trainer import build_trainer
from trainers.base import PromptedCLIP, normalize
from trainers.cocoop import CoCoOpPromptLearner, ConditionalPromptedCLIP
from trainers.coop import CoOpPromptLearner
from trainers.templates import IMAGENET_TEMPLATES_SELECT, dataset_template

CLASSNAMES = ["red", "green", "blue", "yellow", "orange", "purple", "gray", "cyan"]


def demo_cfg(tmp_path, trainer: str, *opts: str):
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/datasets/demo.yaml")
    cfg.merge_from_file("configs/trainers/CoOp/demo_tiny.yaml")
    cfg.merge_from_list([
        "DATASET.ROOT", str(tmp_path / "data"), "OUTPUT_DIR", str(tmp_path / "out"),
        "TRAINER.NAME", trainer, "SEED", "1", "USE_CUDA", "False", "OPTIM.MAX_EPOCH", "2",
        "TRAINER.COCOOP.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
        "DATASET.NUM_SHOTS", "2", *opts])
    return cfg


@pytest.fixture
def model():
    return clip.tiny_clip()


def images(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("trainer, keys", [
    ("CoOp", {"ctx"}),
    ("CoCoOp", {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias",
                "meta_net.linear2.weight", "meta_net.linear2.bias"}),
])
def test_only_the_prompt_learner_trains_and_is_saved(tmp_path, trainer, keys):
    t = build_trainer(demo_cfg(tmp_path, trainer, "TRAINER.COOP.CSC", "False"))
    learner = t.model.prompt_learner
    assert set(learner.state_dict()) == keys
    optimized = {id(p) for group in t.optim.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in learner.parameters()}
    assert not any(p.requires_grad for p in t.clip_model.parameters())
    frozen = {k: v.clone() for k, v in t.clip_model.state_dict().items()}
    t.train()
    assert all(torch.equal(v, t.clip_model.state_dict()[k]) for k, v in frozen.items())
    saved = torch.load(tmp_path / "out" / "prompt_learner" / "model.pth.tar-2",
                       weights_only=True)
    assert set(saved["state_dict"]) == keys


@pytest.mark.parametrize("build", [
    lambda m: PromptedCLIP(m, CoOpPromptLearner(m, CLASSNAMES, n_ctx=4)),
    lambda m: PromptedCLIP(m, CoOpPromptLearner(m, CLASSNAMES, n_ctx=4, csc=True)),
    lambda m: PromptedCLIP(m, CoOpPromptLearner(m, CLASSNAMES, n_ctx=4, position="middle")),
    lambda m: PromptedCLIP(m, CoOpPromptLearner(m, CLASSNAMES, ctx_init="a photo of a")),
    lambda m: ConditionalPromptedCLIP(m, CoCoOpPromptLearner(m, CLASSNAMES, n_ctx=4)),
])
def test_a_few_sgd_steps_lower_the_loss_on_a_fixed_batch(model, build):
    prompted = build(model.requires_grad_(False))
    x, y = images(8), torch.arange(8) % len(CLASSNAMES)
    optimizer = torch.optim.SGD(prompted.prompt_learner.parameters(), lr=1e-4)
    losses = []
    for _ in range(6):
        loss = F.cross_entropy(prompted(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_ctx_init_sets_the_number_and_values_of_the_context(model):
    learner = CoOpPromptLearner(model, CLASSNAMES, n_ctx=16, ctx_init="a_photo_of a")
    tokens = clip.tokenize("a photo of a")
    expected = model.token_embedding(tokens)[0, 1:5]
    assert learner.n_ctx == 4
    torch.testing.assert_close(learner.ctx.detach(), expected)
    assert learner.class_tokens.tokens[0].tolist() == clip.tokenize("a photo of a red.")[0].tolist()


@pytest.mark.parametrize("position", ["front", "middle"])
def test_class_token_position_rearranges_name_and_context(model, position):
    learner = CoOpPromptLearner(model, ["yellow_green", "red"], n_ctx=4, position=position)
    embeddings = learner().text_embeddings
    name = model.token_embedding(torch.tensor(clip.encode("yellow green")))
    ctx = learner.ctx.detach()
    if position == "front":
        expected = torch.cat([name, ctx])
    else:
        expected = torch.cat([ctx[:2], name, ctx[2:]])
    torch.testing.assert_close(embeddings[0, 1:1 + 4 + len(name)], expected)
    # the period and end-of-text token stay where they were
    torch.testing.assert_close(embeddings[:, 5 + len(name):],
                               learner.class_tokens.embeddings[:, 5 + len(name):])


def test_save_load_and_evaluate_give_identical_logits(tmp_path):
    cfg = demo_cfg(tmp_path, "CoCoOp")
    t = build_trainer(cfg)
    t.train()
    x = images()
    t.set_model_mode("eval")
    with torch.no_grad():
        before = t.model_inference(x)
    fresh = build_trainer(cfg)
    fresh.load_model(str(tmp_path / "out"), epoch=2)
    fresh.set_model_mode("eval")
    with torch.no_grad():
        after = fresh.model_inference(x)
    assert torch.equal(before, after)


def official_coop_file(path, ctx: torch.Tensor, n_cls: int) -> None:
    """A checkpoint as the official CoOp writes it: a pickled scheduler holding the optimizer,
    and the class-name token buffers of its own classes."""
    param = torch.nn.Parameter(ctx.clone())
    optimizer = torch.optim.SGD([param], lr=0.002)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 50)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {"ctx": ctx, "token_prefix": torch.zeros(n_cls, 1, 64),
                               "token_suffix": torch.zeros(n_cls, 72, 64)},
                "epoch": 3, "optimizer": optimizer.state_dict(), "scheduler": scheduler,
                "val_result": None}, path)


def test_official_coop_checkpoint_evaluates_on_other_classes(tmp_path, caplog):
    ctx = torch.randn(4, 64, generator=torch.Generator().manual_seed(5))
    official_coop_file(tmp_path / "official" / "prompt_learner" / "model.pth.tar-3", ctx, 100)
    t = build_trainer(demo_cfg(tmp_path, "CoOp", "TRAINER.COOP.CSC", "False"))
    t.load_model(str(tmp_path / "official"), epoch=3)
    assert torch.equal(t.model.prompt_learner.ctx.detach(), ctx)
    with caplog.at_level(logging.INFO):
        accuracy = t.test()
    assert 0 <= accuracy <= 100
    assert "* accuracy:" in caplog.text


def test_cached_evaluation_equals_per_batch_evaluation(tmp_path, monkeypatch):
    t = build_trainer(demo_cfg(tmp_path, "CoOp", "DATALOADER.TEST.BATCH_SIZE", "7"))
    calls = []
    encode = t.model.encode_schedule_text
    monkeypatch.setattr(t.model, "encode_schedule_text", lambda s: calls.append(1) or encode(s))
    logits = {}
    for cached in (True, False):
        t.cache_eval_text_features = cached
        outputs = []
        process = type(t.evaluator).process.__get__(t.evaluator)
        monkeypatch.setattr(t.evaluator, "process", lambda out, label, outputs=outputs,
                            process=process: outputs.append(out) or process(out, label))
        calls.clear()
        t.test()
        logits[cached] = torch.cat(outputs)
        n_calls = len(calls)
        assert n_calls == (1 if cached else len(t.test_loader))
    assert len(t.test_loader) > 1
    torch.testing.assert_close(logits[True], logits[False], atol=1e-5, rtol=0)


def test_zero_shot_clip_uses_the_dataset_template(tmp_path, model):
    t = build_trainer(demo_cfg(tmp_path, "ZeroshotCLIP"))
    prompts = [dataset_template("Demo").format(c) for c in t.dm.dataset.classnames]
    expected = normalize(t.clip_model.encode_text(clip.tokenize(prompts)))
    torch.testing.assert_close(t.text_features, expected)
    logits = t.model_inference(images())
    assert logits.shape == (4, len(CLASSNAMES))


def test_zero_shot_clip2_averages_the_normalised_features_of_its_templates(tmp_path):
    t = build_trainer(demo_cfg(tmp_path, "ZeroshotCLIP2"))
    templates = [*IMAGENET_TEMPLATES_SELECT, "a photo of a {}."]
    features = torch.stack([
        normalize(t.clip_model.encode_text(clip.tokenize([tp.format(c) for c in CLASSNAMES])))
        for tp in templates])
    torch.testing.assert_close(t.text_features, normalize(features.mean(0)))
    with pytest.raises(RuntimeError, match="--eval-only"):
        t.train()


def test_fp16_on_a_cpu_trains_in_fp32_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        t = build_trainer(demo_cfg(tmp_path, "CoOp", "TRAINER.COOP.PREC", "fp16"))
    assert "fp32" in caplog.text
    assert t.clip_model.dtype == torch.float32


def test_bf16_autocast_trains_a_step(tmp_path):
    t = build_trainer(demo_cfg(tmp_path, "CoOp", "TRAINER.COOP.PREC", "bf16"))
    batch = next(iter(t.train_loader_x))
    before = t.model.prompt_learner.ctx.detach().clone()
    t.batch_idx, t.num_batches = 0, 2
    summary = t.forward_backward(batch)
    assert torch.isfinite(torch.tensor(summary["loss"]))
    assert not torch.equal(before, t.model.prompt_learner.ctx.detach())
    assert t.model.prompt_learner.ctx.dtype == torch.float32


def test_an_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="PREC"):
        build_trainer(demo_cfg(tmp_path, "CoOp", "TRAINER.COOP.PREC", "fp8"))
