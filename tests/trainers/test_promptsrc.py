"""PromptSRC on tiny random CLIPs: the frozen features, each term of the objective against its
formula, Gaussian prompt aggregation, the objective on IVLP / MaPLe / CoOp prompts, official
checkpoints and the config node."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import clip
from engine.checkpoint import load_checkpoint
from engine.config import get_cfg_default
from tests.promptsrc_official_form import Outputs, SelfRegulatedCLIP, self_regulating_terms
from trainers.coop import CoOpPromptLearner
from trainers.ivlp import IVLPPromptLearner
from trainers.maple import MaPLePromptLearner
from trainers.promptsrc import PromptSRC, check_learner_settings
from trainers.regularizers import (
    PROMPTSRC_TEMPLATES,
    GaussianPromptAggregation,
    frozen_text_features,
    gaussian_epoch_weights,
    logits_agreement,
)
from trainers.templates import IMAGENET_TEMPLATES

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "trainers" / "PromptSRC"
CLASSNAMES = ["face", "leopard", "sea_lion", "airplane"]


@pytest.fixture(scope="module")
def model():
    return clip.tiny_clip(seed=3, text_layers=3, vision_layers=3).requires_grad_(False)


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def learner_of(kind: str, model):
    torch.manual_seed(0)
    if kind == "IVLP":
        return IVLPPromptLearner(model, CLASSNAMES, 2, 3, 3, 3)
    if kind == "MaPLe":
        return MaPLePromptLearner(model, CLASSNAMES, 2, 3)
    return CoOpPromptLearner(model, CLASSNAMES, 4, "a photo of a")


def regulated(kind: str, model) -> SelfRegulatedCLIP:
    frozen = frozen_text_features(model, CLASSNAMES, templates=PROMPTSRC_TEMPLATES[:3])
    return SelfRegulatedCLIP(model, learner_of(kind, model), frozen)


# --------------------------------------------------------------------------- frozen features


def test_the_sixty_official_templates():
    assert len(PROMPTSRC_TEMPLATES) == len(set(PROMPTSRC_TEMPLATES)) == 60
    assert PROMPTSRC_TEMPLATES[0] == "a photo of a {}."
    assert PROMPTSRC_TEMPLATES[1:3] == ("a bad photo of a {}.", "a photo of many {}.")
    assert PROMPTSRC_TEMPLATES[-1] == "itap of the {}."
    assert set(PROMPTSRC_TEMPLATES) <= set(IMAGENET_TEMPLATES)


def test_frozen_text_features_are_the_template_mean_of_unnormalised_features(model):
    templates = ["a photo of a {}.", "art of the {}.", "a {} in a video game."]
    expected = sum(model.encode_text(clip.tokenize([t.format(c.replace("_", " "))
                                                    for c in CLASSNAMES]))
                   for t in templates) / 3
    got = frozen_text_features(model, CLASSNAMES, templates, max_batch=5)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(got.norm(dim=-1), torch.ones(len(CLASSNAMES)))


def test_frozen_outputs_are_clip_without_prompts_and_without_gradient(model):
    wrapper = regulated("IVLP", model)
    frozen = wrapper.frozen_outputs(images())
    plain = F.normalize(model.encode_image(images()), dim=-1)
    torch.testing.assert_close(frozen.image_features, plain)
    text = F.normalize(wrapper.frozen_text, dim=-1)
    torch.testing.assert_close(frozen.logits, model.logit_scale.exp() * plain @ text.t())
    assert not frozen.logits.requires_grad and not frozen.image_features.requires_grad
    prompted = wrapper.prompted_outputs(images())
    assert prompted.logits.requires_grad
    assert (prompted.image_features - frozen.image_features).abs().max() > 1e-3


def test_no_second_copy_of_clip(model):
    wrapper = regulated("IVLP", model)
    count = sum(p.numel() for p in wrapper.parameters())
    assert count == (sum(p.numel() for p in model.parameters())
                     + sum(p.numel() for p in wrapper.prompt_learner.parameters()))
    assert wrapper.clip is model
    assert sum(m is model.visual or type(m) is type(model.visual) for m in wrapper.modules()) == 1
    assert "frozen_text" not in wrapper.state_dict()  # rebuilt, never saved


def test_frozen_text_of_the_wrong_shape_is_refused(model):
    with pytest.raises(ValueError, match="one per class"):
        SelfRegulatedCLIP(model, learner_of("IVLP", model), torch.zeros(3, 64))


# --------------------------------------------------------------------------- the objective


def random_outputs(seed: int) -> Outputs:
    g = torch.Generator().manual_seed(seed)
    return Outputs(torch.randn(3, 5, generator=g) * 4,
                   F.normalize(torch.randn(3, 8, generator=g), dim=-1),
                   F.normalize(torch.randn(5, 8, generator=g), dim=-1))


def test_each_term_follows_its_formula():
    prompted, frozen = random_outputs(0), random_outputs(1)
    terms = self_regulating_terms(prompted, frozen, text_weight=25, image_weight=10)
    text = (prompted.text_features - frozen.text_features).abs().sum() / 40
    image = (prompted.image_features - frozen.image_features).abs().sum() / 24
    torch.testing.assert_close(terms.text, 25 * text)
    torch.testing.assert_close(terms.image, 10 * image)
    p = prompted.logits.log_softmax(dim=1)
    q = frozen.logits.log_softmax(dim=1)
    kl = (q.exp() * (q - p)).sum() / 15
    torch.testing.assert_close(terms.logits, kl)
    official = F.kl_div(p, q, log_target=True, reduction="sum") / 15
    torch.testing.assert_close(logits_agreement(prompted.logits, frozen.logits), official)
    torch.testing.assert_close(terms.total, 25 * text + 10 * image + kl)
    assert logits_agreement(frozen.logits, frozen.logits).abs() < 1e-6


def test_terms_need_matching_logits():
    with pytest.raises(ValueError, match="differ in shape"):
        self_regulating_terms(random_outputs(0), random_outputs(1)._replace(
            logits=torch.zeros(3, 4)), 1, 1)


def test_trainer_loss_is_cross_entropy_plus_the_terms(model):
    learner = learner_of("IVLP", model)
    method = PromptSRC.assemble(get_cfg_default(), model, CLASSNAMES, learner)
    label = torch.tensor([0, 1, 2, 3])
    losses = method.losses(images(), label)
    loss, figures = losses.total, losses.figures()
    reference = SelfRegulatedCLIP(model, learner, frozen_text_features(model, CLASSNAMES))
    prompted = reference.prompted_outputs(images())
    frozen = reference.frozen_outputs(images())
    expected = (F.cross_entropy(prompted.logits, label)
                + 25 * F.l1_loss(prompted.text_features, frozen.text_features)
                + 10 * F.l1_loss(prompted.image_features, frozen.image_features)
                + F.kl_div(prompted.logits.log_softmax(1), frozen.logits.log_softmax(1),
                           log_target=True, reduction="sum") / 16)
    torch.testing.assert_close(loss, expected)
    assert {"acc", "loss_ce", "loss_scl_text", "loss_scl_image", "loss_scl_logits"} <= set(figures)


@pytest.mark.parametrize("kind", ["IVLP", "MaPLe", "CoOp"])
def test_the_objective_trains_any_prompt_learner(model, kind):
    wrapper = regulated(kind, model).train()
    learner = wrapper.prompt_learner
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.5)
    label = torch.tensor([0, 1, 2, 3])
    losses = []
    for _ in range(4):
        prompted, frozen = wrapper.prompted_outputs(images()), wrapper.frozen_outputs(images())
        terms = self_regulating_terms(prompted, frozen, 25, 10)
        loss = F.cross_entropy(prompted.logits, label) + terms.total
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# --------------------------------------------------------------------------- GPA


def test_gpa_weights_are_the_normalised_gaussian_at_each_epoch():
    e = math.exp(-0.5)
    assert gaussian_epoch_weights(2, 1, 3) == pytest.approx([e / (1 + 2 * e), 1 / (1 + 2 * e),
                                                             e / (1 + 2 * e)])
    weights = gaussian_epoch_weights(15, 1, 20)
    assert sum(weights) == pytest.approx(1)
    assert max(range(20), key=weights.__getitem__) == 14  # epoch 15 (1-based) weighs most
    assert weights[13] == pytest.approx(weights[15]) and weights[0] < 1e-20
    gpa = GaussianPromptAggregation(15, 1, 20)
    assert gpa.weight(15) == weights[14]
    with pytest.raises(ValueError, match="positive"):
        gaussian_epoch_weights(15, 0, 20)


def snapshots(n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(4)
    return [{"ctx": torch.randn(2, 3, generator=g), "w": torch.randn(4, generator=g)}
            for _ in range(n)]


def test_gpa_aggregate_is_the_weighted_sum_over_the_epochs():
    states = snapshots(4)
    gpa = GaussianPromptAggregation(mean=3, std=1.5, max_epoch=4)
    for epoch, state in enumerate(states, start=1):
        assert not gpa.complete
        gpa.accumulate(epoch, state)
    assert gpa.complete
    density = [math.exp(-0.5 * ((e - 3) / 1.5) ** 2) for e in (1, 2, 3, 4)]
    weights = [d / sum(density) for d in density]
    for key in ("ctx", "w"):
        expected = sum(w * s[key] for w, s in zip(weights, states, strict=True))
        torch.testing.assert_close(gpa.aggregate[key], expected)


def test_gpa_refuses_epochs_out_of_order_and_other_tensors():
    gpa = GaussianPromptAggregation(2, 1, 3)
    with pytest.raises(ValueError, match="expected epoch 1"):
        gpa.accumulate(2, snapshots(1)[0])
    gpa.accumulate(1, snapshots(1)[0])
    with pytest.raises(ValueError, match="aggregates"):
        gpa.accumulate(2, {"other": torch.zeros(1)})


def test_gpa_state_round_trip_continues_the_aggregation():
    states = snapshots(3)
    full = GaussianPromptAggregation(2, 1, 3)
    for epoch, state in enumerate(states, start=1):
        full.accumulate(epoch, state)
    first = GaussianPromptAggregation(2, 1, 3)
    first.accumulate(1, states[0])
    first.accumulate(2, states[1])
    resumed = GaussianPromptAggregation(2, 1, 3)
    resumed.load_state_dict(first.state_dict())
    resumed.accumulate(3, states[2])
    for key in full.aggregate:
        assert torch.equal(resumed.aggregate[key], full.aggregate[key])
    with pytest.raises(ValueError, match="resume with the settings"):
        GaussianPromptAggregation(2, 1, 4).load_state_dict(first.state_dict())


# --------------------------------------------------------------------------- official files


def official_promptsrc_state(learner: IVLPPromptLearner, model) -> dict[str, torch.Tensor]:
    """An official PromptSRC ``state_dict``: IVLP's key names in the whole model, the token
    buffers and the frozen image-encoder copy."""
    state = {f"image_encoder.{k}": v.clone() for k, v in model.visual.state_dict().items()}
    state.update({f"prompt_learner.ZS_image_encoder.{k}": v.clone()
                  for k, v in model.visual.state_dict().items()})
    state["text_encoder.positional_embedding"] = model.positional_embedding.clone()
    state["logit_scale"] = model.logit_scale.clone()
    state["prompt_learner.token_prefix"] = torch.zeros(len(CLASSNAMES), 1, 64)
    state["prompt_learner.token_suffix"] = torch.zeros(len(CLASSNAMES), 74, 64)
    state["prompt_learner.ctx"] = learner.ctx.detach().clone()
    for i, p in learner.vision_prompts.items():
        key = ("image_encoder.VPT" if i == "0"
               else f"image_encoder.transformer.resblocks.{i}.VPT_shallow")
        state[key] = p.detach().clone()
    for i, p in learner.text_prompts.items():
        state[f"text_encoder.transformer.resblocks.{i}.VPT_shallow"] = p.detach().clone()
    return state


def write_official_checkpoint(directory: Path, epoch: int, state: dict) -> None:
    """An official Dassl file: the whole model, the optimizer and a pickled scheduler."""
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([weight], lr=0.0025)
    folder = directory / "VLPromptLearner"
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": epoch, "optimizer": optimizer.state_dict(),
                "scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 20),
                "val_result": None}, folder / f"model.pth.tar-{epoch}")


def checkpoint_state(model, state: dict) -> dict:
    """What loading a checkpoint's state dict does for PromptSRC on ``model``."""
    return PromptSRC.checked_learner_state_dict(state, model, "tiny")


def test_official_checkpoint_file_loads(tmp_path, model):
    torch.manual_seed(7)
    trained = IVLPPromptLearner(model, CLASSNAMES, 2, 3, 3, 3)
    write_official_checkpoint(tmp_path, 20, official_promptsrc_state(trained, model))
    checkpoint = load_checkpoint(str(tmp_path / "VLPromptLearner" / "model.pth.tar-20"))
    fresh = learner_of("IVLP", model)
    fresh.load_state_dict(checkpoint_state(model, checkpoint["state_dict"]), strict=True)
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def gpa_rounded(tensor: torch.Tensor, mean: float = 15, std: float = 1,
                epochs: int = 20) -> torch.Tensor:
    """A frozen tensor as the official fp16 GPA leaves it: the sum of its Gaussian-weighted
    fp16 copies, each product and sum rounded to fp16."""
    half, total = tensor.half(), None
    for weight in gaussian_epoch_weights(mean, std, epochs):
        term = half * weight
        total = term if total is None else total + term
    return total.float()


def test_official_files_with_gpa_rounded_frozen_weights_are_accepted(tmp_path, model):
    # the official GPA aggregates the whole model, frozen fp16 weights included, so released
    # files hold them rounded; that is the same backbone, not another one
    torch.manual_seed(7)
    trained = IVLPPromptLearner(model, CLASSNAMES, 2, 3, 3, 3)
    state = official_promptsrc_state(trained, model)
    frozen = [k for k in state if k.startswith(("image_encoder.", "text_encoder."))
              and "VPT" not in k]
    rounded = {k: gpa_rounded(state[k]) for k in frozen}
    assert any(not torch.equal(rounded[k], state[k]) for k in frozen)  # the rounding is real
    state.update(rounded)
    mapped = checkpoint_state(model, state)
    fresh = learner_of("IVLP", model)
    fresh.load_state_dict(mapped, strict=True)
    assert torch.equal(fresh.ctx, trained.ctx)
    # another backbone is still refused
    state["image_encoder.conv1.weight"] = torch.randn_like(state["image_encoder.conv1.weight"])
    with pytest.raises(ValueError, match="another backbone"):
        checkpoint_state(model, state)


def test_promptsrc_on_maple_files_map_too(model):
    """PromptSRC on MaPLe's prompts: MaPLe's official key names, through the map MaPLe's
    learner owns."""
    learner = learner_of("MaPLe", model)
    state = {"prompt_learner.ctx": learner.ctx.detach(),
             "prompt_learner.proj.weight": learner.couplings["0"].weight.detach(),
             "prompt_learner.proj.bias": learner.couplings["0"].bias.detach()}
    for i in ("1", "2"):
        j = int(i) - 1
        state[f"prompt_learner.compound_prompts_text.{j}"] = learner.text_prompts[i].detach()
        state[f"prompt_learner.compound_prompt_projections.{j}.weight"] = (
            learner.couplings[i].weight.detach())
        state[f"prompt_learner.compound_prompt_projections.{j}.bias"] = (
            learner.couplings[i].bias.detach())
    mapped = PromptSRC.learner_state_dict(state, "MaPLe")
    assert mapped.keys() == learner.state_dict().keys()
    own = PromptSRC.learner_state_dict(learner.state_dict(), "MaPLe")
    assert own.keys() == learner.state_dict().keys()


# --------------------------------------------------------------------------- configs


def test_config_node_has_the_official_defaults_and_the_learner_key():
    node = get_cfg_default().TRAINER.PROMPTSRC
    assert dict(node) == {"N_CTX_VISION": 4, "N_CTX_TEXT": 4, "CTX_INIT": "a photo of a",
                          "PREC": "fp16", "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9,
                          "TEXT_LOSS_WEIGHT": 25, "IMAGE_LOSS_WEIGHT": 10,
                          "PROMPT_LEARNER": "IVLP"}
    # the aggregation's keys belong to its epoch hook; the official names set them
    assert dict(get_cfg_default().TRAINER.GPA) == {"MEAN": 15, "STD": 1}


@pytest.mark.parametrize("name, epochs, depth, mean, std", [
    ("vit_b16_c2_ep20_batch4_4+4ctx.yaml", 20, 9, 15, 1),
    ("vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml", 20, 3, 6, 10),
    ("vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml", 50, 9, 30, 30),
])
def test_official_config_files_merge(name, epochs, depth, mean, std):
    cfg = get_cfg_default()
    cfg.merge_from_file(str(CONFIGS / name))
    node = cfg.TRAINER.PROMPTSRC
    assert (node.PROMPT_DEPTH_VISION, node.PROMPT_DEPTH_TEXT) == (depth, depth)
    assert (node.N_CTX_VISION, node.N_CTX_TEXT, node.CTX_INIT, node.PREC) == (
        4, 4, "a photo of a", "fp16")
    assert (node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT, cfg.TRAINER.GPA.MEAN,
            cfg.TRAINER.GPA.STD) == (25, 10, mean, std)
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.WARMUP_CONS_LR) == (0.0025, epochs, 1e-5)
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 4 and cfg.MODEL.BACKBONE.NAME == "ViT-B/16"


@pytest.mark.parametrize("changes, message", [
    ({"PROMPT_LEARNER": "VPT"}, "one of IVLP, MaPLe, CoOp"),
    ({"PROMPT_DEPTH_TEXT": 0}, "must be >= 1"),
    ({"PROMPT_LEARNER": "MaPLe", "N_CTX_VISION": 2}, "N_CTX_VISION = N_CTX_TEXT"),
])
def test_impossible_learner_settings_are_explained(changes, message):
    node = get_cfg_default().TRAINER.PROMPTSRC
    node.merge_from_list([item for k, v in changes.items() for item in (k, v)])
    with pytest.raises(ValueError, match=message):
        check_learner_settings(node)


# --------------------------------------------------------------------------- with the engine


def engine_cfg(image_root: str, output_dir: str, learner: str = "IVLP"):
    """A PromptSRC config on the toy images (tiny CLIP, 3 epochs); seeds the generators as
    train.py does, so runs built from it start the same."""
    from engine.utils import set_random_seed
    from tests.engine.toy import ToyFolder  # noqa: F401  (registers the toy dataset)

    set_random_seed(1)

    cfg = get_cfg_default()
    cfg.merge_from_list([
        "DATASET.ROOT", image_root, "DATASET.NAME", "ToyFolder", "TRAINER.NAME", "PromptSRC",
        "MODEL.BACKBONE.NAME", "tiny", "INPUT.SIZE", "(32, 32)", "OUTPUT_DIR", output_dir,
        "SEED", "1", "USE_CUDA", "False", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "6",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "3",
        "TRAIN.CHECKPOINT_FREQ", "1", "VERBOSE", "False",
        "TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.PROMPT_LEARNER", learner,
        "TRAINER.PROMPTSRC.N_CTX_VISION", "2", "TRAINER.PROMPTSRC.N_CTX_TEXT", "2",
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
        "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1",
    ])
    cfg.freeze()
    return cfg


class Interrupted(Exception):
    pass


def recording(trainer, stop_after: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Record the learner after each epoch (before aggregation); optionally stop the run once
    the checkpoint of epoch ``stop_after`` (1-based) is written."""
    seen: list[dict[str, torch.Tensor]] = []
    (hook,) = trainer.method.epoch_hooks
    aggregate, after_epoch = hook.after_epoch, trainer.after_epoch

    def record(*args):
        seen.append({k: v.clone() for k, v in trainer.model.prompt_learner.state_dict().items()})
        aggregate(*args)

    def maybe_stop():
        after_epoch()
        if stop_after is not None and trainer.epoch + 1 == stop_after:
            raise Interrupted

    hook.after_epoch, trainer.after_epoch = record, maybe_stop
    return seen


def test_training_ends_on_the_aggregate_and_a_resumed_run_continues_it(tmp_path):
    from engine.trainer import build_trainer
    from tests.engine.toy import make_image_folder

    root = make_image_folder(str(tmp_path / "data"), per_class=2)
    trainer = build_trainer(engine_cfg(root, str(tmp_path / "full")))
    assert trainer.get_model_names() == ["VLPromptLearner"]
    seen = recording(trainer)
    trainer.train()
    assert len(seen) == 3
    weights = gaussian_epoch_weights(2, 1, 3)
    learner = trainer.model.prompt_learner.state_dict()
    for key, value in learner.items():
        expected = sum(w * s[key] for w, s in zip(weights, seen, strict=True))
        torch.testing.assert_close(value, expected)
        assert not torch.equal(value, seen[-1][key])
    last = load_checkpoint(str(tmp_path / "full" / "VLPromptLearner" / "model.pth.tar-3"))
    assert last["state_dict"].keys() == learner.keys()  # only what trains
    assert all(torch.equal(last["state_dict"][k], v) for k, v in learner.items())
    assert last["extras"]["epoch_hooks"]["GPA"]["last_epoch"] == 3

    interrupted = build_trainer(engine_cfg(root, str(tmp_path / "resumed")))
    recording(interrupted, stop_after=2)
    with pytest.raises(Interrupted):
        interrupted.train()
    resumed = build_trainer(engine_cfg(root, str(tmp_path / "resumed")))
    tail = recording(resumed)
    resumed.train()
    assert len(tail) == 1  # only epoch 3 ran; epochs 1-2 came from the checkpoint's GPA state
    for key, value in resumed.model.prompt_learner.state_dict().items():
        torch.testing.assert_close(value, learner[key], atol=1e-6, rtol=0)

    # an official PromptSRC directory evaluates through load_model
    official = tmp_path / "official"
    write_official_checkpoint(official, 20, official_promptsrc_state(
        trainer.model.prompt_learner, trainer.clip_model))
    resumed.load_model(str(official), epoch=20)
    for key, value in learner.items():
        assert torch.equal(resumed.model.prompt_learner.state_dict()[key], value)
    assert resumed.test() == trainer.test()


def test_promptsrc_on_maple_prompts_trains_with_the_engine(tmp_path):
    from engine.trainer import build_trainer
    from tests.engine.toy import make_image_folder

    root = make_image_folder(str(tmp_path / "data"), per_class=2)
    trainer = build_trainer(engine_cfg(root, str(tmp_path / "out"), learner="MaPLe"))
    assert isinstance(trainer.model.prompt_learner, MaPLePromptLearner)
    before = {k: v.clone() for k, v in trainer.model.prompt_learner.state_dict().items()}
    trainer.train()
    after = trainer.model.prompt_learner.state_dict()
    assert all(not torch.equal(after[k], v) for k, v in before.items())
