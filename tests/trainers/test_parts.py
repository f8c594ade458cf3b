"""Methods as parts on the tiny CLIP: the learner registry and the builder, the objective, step
hooks and heads, TRAINER.PARTS, the combination configs, and every config file merging."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import clip
import datasets  # noqa: F401  (registration)
import trainers  # noqa: F401  (registration)
from engine import TRAINER_REGISTRY
from engine.config import get_cfg_default
from trainers.base import PromptedCLIP, PromptTrainer, build_prompted_model
from trainers.cocoop import ConditionalPromptedCLIP
from trainers.coop import CoOpPromptLearner
from trainers.dept import DecoupledHead
from trainers.ivlp import IVLPPromptLearner
from trainers.learners import PROMPT_LEARNER_REGISTRY, NodeView, build_prompt_learner
from trainers.maple import MaPLePromptLearner
from trainers.objective import CrossEntropy, Objective, StepHook, Term, run_backward
from trainers.prograd import ProGradHook
from trainers.promptsrc import PromptSRC
from trainers.vpt import FixedTextPromptedCLIP

REPO = Path(__file__).resolve().parents[2]
CLASSNAMES = ["face", "leopard", "sea_lion", "airplane"]


@pytest.fixture(scope="module")
def model():
    return clip.tiny_clip(seed=3).requires_grad_(False)


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


LABELS = torch.tensor([0, 1, 2, 3])


# --------------------------------------------------------------------------- learners


def test_every_learner_is_registered_with_its_node_and_prompted_model():
    expected = {"CoOp": ("COOP", PromptedCLIP), "CoCoOp": ("COCOOP", ConditionalPromptedCLIP),
                "IVLP": ("IVLP", PromptedCLIP), "MaPLe": ("MAPLE", PromptedCLIP),
                "VPT": ("VPT", FixedTextPromptedCLIP)}
    cfg = get_cfg_default()
    for name, (node, model_cls) in expected.items():
        entry = PROMPT_LEARNER_REGISTRY.get(name)
        assert entry.node == node
        assert getattr(entry.cls, "prompted_model", PromptedCLIP) is model_cls
        assert set(entry.settings(cfg.TRAINER[node])) <= set(
            entry.cls.__init__.__code__.co_varnames)
    with pytest.raises(KeyError, match="Did you mean 'MaPLe'"):
        PROMPT_LEARNER_REGISTRY.get("Maple")


def test_a_learner_built_by_name_and_keywords_is_the_one_built_by_hand(model):
    torch.manual_seed(0)
    by_hand = PromptedCLIP(model, IVLPPromptLearner(model, CLASSNAMES, 2, 3, 2, 1))
    torch.manual_seed(0)
    by_name = build_prompted_model(model, "IVLP", CLASSNAMES, n_ctx_vision=3, n_ctx_text=2,
                                   depth_vision=1, depth_text=2, ctx_init="a photo of a")
    assert type(by_name) is PromptedCLIP and by_name.clip is model
    with torch.no_grad():
        torch.testing.assert_close(by_name(images()), by_hand(images()), atol=0, rtol=0)
    with pytest.raises(ValueError, match="needs the class names"):
        build_prompted_model(model, "CoOp")
    with pytest.raises(ValueError, match="built already"):
        build_prompted_model(model, by_hand.prompt_learner, n_ctx=3)


def test_settings_come_from_a_node_by_key_name(model):
    """PromptSRC's node names MaPLe's settings N_CTX_TEXT / PROMPT_DEPTH_TEXT (read through a
    renaming view, as PromptSRC's declaration does); MaPLe's own node N_CTX / PROMPT_DEPTH:
    the same learner either way."""
    cfg = get_cfg_default()
    cfg.merge_from_list(["TRAINER.MAPLE.N_CTX", "3", "TRAINER.MAPLE.PROMPT_DEPTH", "2",
                         "TRAINER.PROMPTSRC.N_CTX_TEXT", "3",
                         "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2"])
    torch.manual_seed(0)
    own = build_prompt_learner("MaPLe", model, CLASSNAMES, cfg.TRAINER.MAPLE)
    torch.manual_seed(0)
    other = build_prompt_learner("MaPLe", model, CLASSNAMES, NodeView(
        cfg.TRAINER.PROMPTSRC, {"N_CTX": "N_CTX_TEXT", "PROMPT_DEPTH": "PROMPT_DEPTH_TEXT"}))
    assert isinstance(own, MaPLePromptLearner) and own.depth == 2 and own.ctx.shape[0] == 3
    for key, value in own.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)


def test_parts_key_picks_a_learner_from_its_own_node_for_any_trainer(model):
    cfg = get_cfg_default()
    cfg.merge_from_list(["TRAINER.PARTS.PROMPT_LEARNER", "MaPLe", "TRAINER.MAPLE.PROMPT_DEPTH",
                         "2", "TRAINER.MAPLE.N_CTX", "3"])
    for trainer in ("CoOp", "KgCoOp", "PromptSRC"):
        learner = TRAINER_REGISTRY.get(trainer).make_prompt_learner(cfg, CLASSNAMES, model)
        assert isinstance(learner, MaPLePromptLearner)
        assert (learner.depth, learner.ctx.shape[0]) == (2, 3)
    # PromptSRC's own key still builds from PromptSRC's node
    cfg = get_cfg_default()
    cfg.merge_from_list(["TRAINER.PROMPTSRC.PROMPT_LEARNER", "CoOp",
                         "TRAINER.PROMPTSRC.N_CTX_TEXT", "3", "TRAINER.PROMPTSRC.CTX_INIT", ""])
    learner = PromptSRC.make_prompt_learner(cfg, CLASSNAMES, model)
    assert isinstance(learner, CoOpPromptLearner) and learner.ctx.shape == (3, 64)


def test_two_learner_keys_that_disagree_are_refused():
    cfg = get_cfg_default()
    cfg.merge_from_list(["TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.PROMPT_LEARNER",
                         "MaPLe", "TRAINER.PARTS.PROMPT_LEARNER", "CoOp"])
    with pytest.raises(ValueError, match="name the learner in one of them"):
        PromptSRC.check_cfg(cfg)


@pytest.mark.parametrize("key, value, message", [
    ("TERMS", "['KgCoop']", "Did you mean 'KgCoOp'"),
    ("STEP_HOOKS", "['Prograd']", "Unknown step hook"),
    ("HEAD", "DEPT", "Unknown head"),
    ("PROMPT_LEARNER", "Maple", "Unknown prompt learner"),
])
def test_unknown_part_names_are_explained(key, value, message):
    cfg = get_cfg_default()
    cfg.merge_from_list(["TRAINER.COOP.PREC", "fp32", f"TRAINER.PARTS.{key}", value])
    with pytest.raises(KeyError, match=message):
        TRAINER_REGISTRY.get("CoOp").check_cfg(cfg)


# --------------------------------------------------------------------------- objective


class Doubled(Term):
    name = "doubled"

    def forward(self, out, label):
        return 2 * out.logits.float().mean()


def test_objective_sums_weighted_terms_and_logs_each(model):
    prompted = build_prompted_model(model, "CoOp", CLASSNAMES, n_ctx=4)
    out = prompted.output(images())
    reference = Doubled(summed=False)
    reference.name = "reference"
    objective = Objective([CrossEntropy(weight=0.5), Doubled(weight=3.0), reference])
    losses = objective(out, LABELS)
    ce = F.cross_entropy(out.logits, LABELS)
    torch.testing.assert_close(losses.total, 0.5 * ce + 3.0 * 2 * out.logits.mean())
    torch.testing.assert_close(losses.terms["reference"], 2 * out.logits.mean())
    figures = losses.figures()
    assert set(figures) == {"acc", "loss_ce", "loss_doubled", "loss_reference"}
    assert figures["loss_ce"] == pytest.approx(0.5 * ce.item(), rel=1e-6)
    with pytest.raises(ValueError, match="distinct"):
        Objective([CrossEntropy(), CrossEntropy()])
    with pytest.raises(ValueError, match="at least one summed"):
        Objective([reference])


def test_frozen_image_features_are_computed_only_when_a_term_asks(model):
    prompted = build_prompted_model(model, "IVLP", CLASSNAMES, n_ctx_text=2, n_ctx_vision=2,
                                    depth_text=1, depth_vision=1)
    assert prompted.output(images()).frozen_image_features is None
    frozen = prompted.output(images(), frozen=True).frozen_image_features
    torch.testing.assert_close(frozen, F.normalize(model.encode_image(images()), dim=-1))
    assert not frozen.requires_grad
    # without vision prompts the prompted pass is the frozen one: its features, detached
    for name, settings in (("CoOp", {"n_ctx": 4}), ("CoCoOp", {"n_ctx": 4})):
        out = build_prompted_model(model, name, CLASSNAMES, **settings).output(images(), True)
        torch.testing.assert_close(out.frozen_image_features,
                                   F.normalize(model.encode_image(images()), dim=-1))
        assert not out.frozen_image_features.requires_grad


class Recording(StepHook):
    def __init__(self, name: str, seen: list) -> None:
        self.name, self.seen = name, seen

    def backward(self, losses, params, backward):
        self.seen.append(f"{self.name} before")
        backward(losses.total)
        self.seen.append(f"{self.name} after")


def test_step_hooks_wrap_the_backward_first_outermost(model):
    prompted = build_prompted_model(model, "CoOp", CLASSNAMES, n_ctx=4)
    losses = Objective([CrossEntropy()])(prompted.output(images()), LABELS)
    seen: list[str] = []
    params = list(prompted.prompt_learner.parameters())
    run_backward([Recording("a", seen), Recording("b", seen)], losses, params,
                 lambda total: seen.append("backward") or total.backward())
    assert seen == ["a before", "b before", "backward", "b after", "a after"]
    assert params[0].grad is not None and params[0].grad.abs().sum() > 0


# --------------------------------------------------------------------------- combinations


COMBINATIONS = {  # config: (trainer, learner class, terms, step hooks, head, tiny overrides)
    "MaPLe/vit_b16_c2_ep5_batch4_2ctx_kgcoop": (
        "MaPLe", MaPLePromptLearner, ["ce", "kg"], [], None,
        ["TRAINER.MAPLE.PROMPT_DEPTH", "2"]),
    "IVLP/vit_b16_c2_ep5_batch4_2+2ctx_prograd": (
        "IVLP", IVLPPromptLearner, ["ce", "prograd_kl"], [ProGradHook], None,
        ["TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2"]),
    "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_dept": (
        "PromptSRC", IVLPPromptLearner, ["ce", "scl_text", "scl_image", "scl_logits", "head_ce"],
        [], DecoupledHead, ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2",
                            "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
                            "DATASET.SUBSAMPLE_CLASSES", "base"]),
}


@pytest.mark.parametrize("config", sorted(COMBINATIONS))
def test_combination_configs_run_the_right_parts(model, config):
    trainer, learner_cls, terms, hooks, head, overrides = COMBINATIONS[config]
    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / f"{config}.yaml"))
    cfg.merge_from_list(["MODEL.BACKBONE.NAME", "tiny", "INPUT.SIZE", "(32, 32)", *overrides])
    cls = TRAINER_REGISTRY.get(trainer)
    cls.check_cfg(cfg)
    torch.manual_seed(0)
    method = cls.assemble(cfg, model, CLASSNAMES, cls.make_prompt_learner(cfg, CLASSNAMES, model))
    assert isinstance(method.learner, learner_cls)
    assert method.objective.names == terms
    assert [type(h) for h in method.step_hooks] == hooks
    assert type(method.model.head) is (head or type(None))
    # one real optimisation step moves every trained tensor
    before = {k: v.clone() for k, v in method.trained.state_dict().items()}
    optimizer = torch.optim.SGD(method.param_groups(0.1) or method.trained.parameters(), lr=0.1)
    losses = method.losses(images(), LABELS)
    method.backward(losses, lambda total: total.backward())
    optimizer.step()
    after = method.trained.state_dict()
    assert all(not torch.equal(after[k], v) for k, v in before.items())


def test_promptsrc_with_dept_saves_and_aggregates_the_head(model):
    cfg = get_cfg_default()
    path = REPO / "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_dept.yaml"
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "DATASET.SUBSAMPLE_CLASSES",
                         "base", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2"])
    learner = PromptSRC.make_prompt_learner(cfg, CLASSNAMES, model)
    method = PromptSRC.assemble(cfg, model, CLASSNAMES, learner)
    keys = set(method.trained.state_dict())
    assert {"linear_probe_proj.weight", "film_lp_img.scale", "prompt_learner.ctx"} <= keys
    groups = method.param_groups(0.0025)
    assert groups[1]["lr"] == pytest.approx(0.0025 * 6.5)
    assert {id(p) for g in groups for p in g["params"]} == {
        id(p) for p in method.trained.parameters()}
    # on new classes the head does not apply: the same checkpoint loads without it
    cfg.merge_from_list(["DATASET.SUBSAMPLE_CLASSES", "new"])
    new = PromptSRC.assemble(cfg, model, CLASSNAMES, learner)
    assert new.model.head is None and "head_ce" not in new.objective.names
    mapped = PromptSRC.trained_parts_state_dict(method.trained.state_dict(), new.trained)
    new.trained.load_state_dict(mapped, strict=True)


# --------------------------------------------------------------------------- configs


CONFIG_FILES = sorted((REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_file_merges(path):
    cfg = get_cfg_default()
    cfg.merge_from_file(str(path))
    assert cfg.TRAINER.PARTS.HEAD in ("", "DePT")


def test_ctx_init_takes_true_from_the_official_configs_and_words_after():
    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml"))
    assert cfg.TRAINER.COOP.CTX_INIT is True
    cfg.merge_from_list(["TRAINER.COOP.CTX_INIT", "a photo of a"])
    assert cfg.TRAINER.COOP.CTX_INIT == "a photo of a"
    with pytest.raises(ValueError, match="Type mismatch"):
        cfg.merge_from_list(["TRAINER.COOP.CTX_INIT", "3"])
    with pytest.raises(ValueError, match="Type mismatch"):
        cfg.merge_from_list(["TRAINER.COCOOP.CTX_INIT", "True"])


def test_no_trainer_defines_a_loss_of_its_own():
    """Every registered prompt trainer computes its loss through its objective (parts)."""
    prompt_trainers = [TRAINER_REGISTRY.get(n) for n in TRAINER_REGISTRY.registered_names()
                       if issubclass(TRAINER_REGISTRY.get(n), PromptTrainer)]
    assert len(prompt_trainers) >= 12
    assert all(t.compute_loss is PromptTrainer.compute_loss for t in prompt_trainers)
