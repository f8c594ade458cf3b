"""Shared causal prefixes (clip/prefix.py) change no result: for every learner and class
position, the logits and the gradients of the learned tensors equal those of the unshared path,
and the shared path really ran where the layout allows it (and did not where it does not)."""

from __future__ import annotations

import pytest
import torch

import clip
from clip import prefix as prefix_module
from clip.model import SPEEDUPS_OFF, speedups
from clip.prefix import SharedPrefix
from trainers.base import PromptedCLIP, build_prompted_model
from trainers.cocoop import CoCoOpPromptLearner
from trainers.coop import CoOpPromptLearner
from trainers.ivlp import IVLPPromptLearner
from trainers.maple import MaPLePromptLearner
from trainers.mvlpt import MVLPTPromptLearner
from trainers.regularizers import PROMPTSRC_TEMPLATES, frozen_text_features

# first tokens differ, lengths differ (so length groups split them too)
NAMES = ["cat", "sea lion", "great white shark", "tench", "Granny Smith apple", "jay",
         "red-breasted merganser", "dog"]
TOL = dict(atol=3e-5, rtol=1e-4)
MANY_GROUPS = dict(group_overhead_tokens=0, text_chunk_size=3)  # groups and chunks as well


@pytest.fixture(scope="module")
def model() -> clip.CLIP:
    return clip.tiny_clip(seed=4, text_layers=3, vision_layers=3).requires_grad_(False)


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def learner(kind: str, model: clip.CLIP) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == "CoOp-csc":
            return CoOpPromptLearner(model, NAMES, n_ctx=4, csc=True)
        if kind.startswith("CoOp-"):
            return CoOpPromptLearner(model, NAMES, n_ctx=4, position=kind.split("-")[1])
        if kind == "CoCoOp":
            made = CoCoOpPromptLearner(model, NAMES, n_ctx=4, ctx_init="a photo of a")
            torch.nn.init.normal_(made.meta_net.linear2.weight, std=0.5)
            return made
        if kind in ("IVLP", "PromptSRC"):  # PromptSRC's learner is IVLP's (its 4+4 here)
            n = 2 if kind == "IVLP" else 4
            return IVLPPromptLearner(model, NAMES, n, n, 3, 3)
        if kind == "MaPLe":
            return MaPLePromptLearner(model, NAMES, n_ctx=2, depth=3)
        settings = {"MCoOp-middle": {"coop_n_ctx": 4},
                    "MCoOp-end": {"coop_n_ctx": 4, "class_token_position": "end"},
                    "MUPT": {"coop_n_ctx": 4, "vpt_n_ctx": 2, "project_dim": 32},
                    "MVPT": {"vpt_n_ctx": 2}}[kind]
        return MVLPTPromptLearner(model, NAMES, **settings)


def run(prompted: PromptedCLIP, **changes) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits of a few images and the gradients of a loss on them, w.r.t. what trains."""
    params = {n: p for n, p in prompted.prompt_learner.named_parameters() if p.requires_grad}
    for p in params.values():
        p.grad = None
    with speedups(**changes):
        logits = prompted(images())
    weights = torch.linspace(-1, 1, logits.numel()).view_as(logits)
    (logits * weights).sum().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in params.items() if p.grad is not None}


def close(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | float) -> bool:
    """Equal within fp32 rounding of sums over many terms: 1e-5 of the largest magnitude."""
    return bool((a - b).abs().max() <= 1e-5 * scale + 1e-6)


def assert_same(a, b) -> None:
    logits_a, grads_a = a
    logits_b, grads_b = b
    assert close(logits_a, logits_b, logits_b.abs().max())
    assert grads_a.keys() == grads_b.keys() and grads_a
    scale = max(g.abs().max() for g in grads_b.values())  # the step's largest gradient
    for name in grads_a:
        assert close(grads_a[name], grads_b[name], scale), name


@pytest.fixture
def shared_runs(monkeypatch) -> list[prefix_module.SharedPrefix]:
    """The prefixes the shared path ran with."""
    ran = []
    real = prefix_module.encode_with_prefix

    def spy(model, embeddings, eot, prompts, shared):
        ran.append(shared)
        return real(model, embeddings, eot, prompts, shared)

    monkeypatch.setattr(prefix_module, "encode_with_prefix", spy)
    return ran


SHARED = {  # the prefix each layout shares: start of text + the context before the name (+
    # the prompt words after a short context that every class prompt has: "of a")
    "CoOp-end": 5, "CoOp-middle": 3, "IVLP": 5, "PromptSRC": 5, "MaPLe": 5, "MCoOp-middle": 3,
    "MCoOp-end": 5, "MUPT": 3, "CoCoOp": 5}


# the class name first, a context per class, a fixed text computed once (in the first run)
@pytest.mark.parametrize("kind", [*SHARED, "CoOp-front", "CoOp-csc", "MVPT"])
def test_logits_and_gradients_equal_the_unshared_path(model, kind, shared_runs):
    prompted = build_prompted_model(model, learner(kind, model)).train()
    unshared = run(prompted, shared_prefix=False)
    official = run(prompted, **SPEEDUPS_OFF)
    assert not shared_runs
    shared = run(prompted)
    grouped = run(prompted, **MANY_GROUPS)
    if kind in SHARED:
        assert shared_runs and {s.length for s in shared_runs} == {SHARED[kind]}
    else:
        assert not shared_runs
    assert_same(shared, unshared)
    assert_same(shared, official)
    assert_same(grouped, unshared)


def test_cocoop_shares_one_prefix_per_image(model, shared_runs):
    prompted = build_prompted_model(model, learner("CoCoOp", model))
    with torch.no_grad():
        prompted(images(3))
    assert shared_runs == [SharedPrefix(5, groups=3)]


def test_zero_shot_and_frozen_features_share_the_template(model, shared_runs):
    tokens = clip.tokenize([f"a photo of a {name}." for name in NAMES])
    with torch.no_grad():
        shared = model.encode_text(tokens)
        assert [s.length for s in shared_runs] == [5]  # start of text + "a photo of a"
        with speedups(**SPEEDUPS_OFF):
            unshared = model.encode_text(tokens)
            frozen_unshared = frozen_text_features(model, NAMES, PROMPTSRC_TEMPLATES[:4])
        frozen_shared = frozen_text_features(model, NAMES, PROMPTSRC_TEMPLATES[:4])
    assert torch.allclose(shared, unshared, **TOL)
    assert torch.allclose(frozen_shared, frozen_unshared, **TOL)


def test_activation_checkpointing_keeps_the_gradients(model):
    prompted = build_prompted_model(model, learner("MCoOp-middle", model)).train()
    unshared = run(prompted, shared_prefix=False)
    model.transformer.checkpoint_segments = 2
    try:
        shared = run(prompted)
    finally:
        model.transformer.checkpoint_segments = 1
    assert_same(shared, unshared)


def test_declared_prefix_with_deep_prompts_reaching_past_it(model, shared_runs):
    """A slot longer than the prefix: its tail is written into the suffixes."""
    tokens = clip.tokenize([f"a photo of a {name}." for name in NAMES])
    g = torch.Generator().manual_seed(2)
    embeddings = model.token_embedding(tokens)
    prompts = [torch.randn(4, 64, generator=g).requires_grad_(True), None,
               torch.randn(4, 64, generator=g).requires_grad_(True)]
    grads = []
    for changes, declared in (({"shared_prefix": False}, None), ({}, 3)):
        for p in prompts[::2]:
            p.grad = None
        with speedups(**changes):
            out = model.encode_text_embeddings(embeddings, tokens.argmax(-1), prompts, declared)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        grads.append((out.detach(), prompts[0].grad.clone(), prompts[2].grad.clone()))
    assert [s.length for s in shared_runs] == [3]
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, **TOL)


def test_no_sharing_where_it_cannot_be_exact(model, shared_runs):
    tokens = clip.tokenize([f"a photo of a {name}." for name in NAMES])
    eot = tokens.argmax(-1)
    with torch.no_grad():
        embeddings = model.token_embedding(tokens)
        per_sequence = [None, torch.randn(len(NAMES), 2, 64)]  # a deep prompt per class
        model.encode_text_embeddings(embeddings, eot, per_sequence)
        block = model.transformer.resblocks[1]
        block.prefix_shareable = False  # e.g. an adapter that differs per class
        try:
            model.encode_text_embeddings(embeddings, eot)
        finally:
            del block.prefix_shareable
    assert not shared_runs
    with pytest.raises(ValueError, match="groups must be equal"):
        model.encode_text_embeddings(embeddings, eot, None, SharedPrefix(3, groups=3))


@pytest.mark.parametrize("kind", ["MCoOp-middle", "CoCoOp", "MaPLe", "IVLP"])
def test_suffixes_run_packed_unless_passes_are_capped(model, kind, monkeypatch):
    """The suffixes run packed (no padding; the last block at the end-of-text tokens only),
    also under deep prompts that stay inside the prefix (MaPLe's, IVLP's), except where
    ``text_chunk_size`` caps the sequences per pass."""
    packed = []
    real = prefix_module.run_packed

    def spy(*args):
        packed.append(args[1].shape[0])
        return real(*args)

    monkeypatch.setattr(prefix_module, "run_packed", spy)
    prompted = build_prompted_model(model, learner(kind, model)).train()
    with speedups(text_chunk_size=2):
        capped = run(prompted)
    assert not packed
    assert_same(run(prompted), capped)
    assert packed and packed[-1] == len(NAMES) * (len(images()) if kind == "CoCoOp" else 1)
