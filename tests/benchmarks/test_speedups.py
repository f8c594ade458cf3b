"""The speed switches of clip/model.py change no result: text features, logits and gradients
are equal with each optimisation on and off (cut sequences, length groups, chunks, SDPA against
nn.MultiheadAttention's path, cached against per-batch class text features)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import clip
from clip import model as clip_model
from clip.model import SPEEDUPS, SPEEDUPS_OFF, Speedups, speedups, text_groups
from trainers.base import PromptedCLIP
from trainers.cocoop import CoCoOpPromptLearner, ConditionalPromptedCLIP
from trainers.maple import MaPLePromptLearner

# class names whose prompts have different token lengths (one much longer than the others)
NAMES = ["cat", "sea lion", "great white shark", "American black bear", "dog",
         "Granny Smith apple", "tench", "red-breasted merganser", "x", "water ouzel dipper",
         "Rhodesian Ridgeback", "jay"]
TOL = dict(atol=2e-5, rtol=1e-5)
MANY_GROUPS = dict(group_overhead_tokens=0)  # a group per distinct length


@pytest.fixture(scope="module")
def model() -> clip.CLIP:
    return clip.tiny_clip(seed=3, text_layers=3, vision_layers=3).requires_grad_(False)


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return clip.tokenize([f"a photo of a {name}." for name in NAMES])


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def text_prompts(count: int, per_sequence: bool) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(1)
    first = torch.randn(count, 2, 64, generator=g) if per_sequence else torch.randn(2, 64,
                                                                                     generator=g)
    return [first, None, torch.randn(2, 64, generator=g)]


def encode(model: clip.CLIP, tokens: torch.Tensor, prompts=None, **changes) -> torch.Tensor:
    with torch.no_grad(), speedups(**changes):
        return model.encode_text_embeddings(model.token_embedding(tokens), tokens.argmax(-1),
                                            prompts)


@pytest.mark.parametrize("changes", [
    SPEEDUPS_OFF,
    {"length_groups": False},
    {"text_truncation": False},
    MANY_GROUPS,
    {**MANY_GROUPS, "text_chunk_size": 2},
    {"length_groups": False, "text_chunk_size": 5},
    {"attention": "mha"},
], ids=["all-off", "no-groups", "77-tokens", "many-groups", "groups+chunks", "chunks", "mha"])
@pytest.mark.parametrize("per_sequence", [False, True], ids=["shared", "per-sequence"])
def test_text_features_equal_whatever_the_switches(model, tokens, changes, per_sequence):
    prompts = text_prompts(len(NAMES), per_sequence)
    reference = encode(model, tokens, prompts)
    assert torch.allclose(encode(model, tokens, prompts, **changes), reference, **TOL)


def test_zero_shot_text_features_equal_without_prompts(model, tokens):
    assert torch.allclose(encode(model, tokens, None, **MANY_GROUPS, text_chunk_size=3),
                          encode(model, tokens, None, **SPEEDUPS_OFF), **TOL)


def test_groups_follow_lengths_and_chunks_cap_the_passes(tokens):
    eot = tokens.argmax(-1)
    plan = text_groups(eot, 77, Speedups(group_overhead_tokens=0, text_chunk_size=2))
    seen = torch.cat([idx for idx, _ in plan])
    assert sorted(seen.tolist()) == list(range(len(NAMES)))  # every sequence once
    for idx, length in plan:
        assert len(idx) <= 2
        assert length == int(eot[idx].max()) + 1  # each pass cut to its own longest sequence
    assert len({length for _, length in plan}) > 2


def test_small_class_sets_run_in_one_pass(tokens):
    """The default overhead keeps a dozen prompts in one pass (no slowdown at 10 classes)."""
    eot = tokens.argmax(-1)
    assert text_groups(eot, 77, Speedups()) == [(None, int(eot.max()) + 1)]
    assert text_groups(eot, 77, Speedups(text_truncation=False)) == [(None, 77)]


def test_grouping_splits_where_it_saves_more_than_the_overhead():
    eot = torch.tensor([5] * 100 + [40])  # one long prompt among many short ones
    plan = text_groups(eot, 77, Speedups(group_overhead_tokens=100))
    assert sorted(length for _, length in plan) == [6, 41]
    plan = text_groups(eot, 77, Speedups(group_overhead_tokens=10_000))
    assert plan == [(None, 41)]


def test_text_tower_runs_77_tokens_only_without_truncation(model, tokens):
    lengths = []
    hook = model.transformer.register_forward_pre_hook(
        lambda _, args: lengths.append(args[0].shape[1]))
    try:
        encode(model, tokens, text_truncation=False)
        encode(model, tokens, length_groups=False, shared_prefix=False)
        encode(model, tokens, **MANY_GROUPS, shared_prefix=False)
    finally:
        hook.remove()
    longest = int(tokens.argmax(-1).max()) + 1
    assert lengths[0] == 77 and lengths[1] == longest
    assert len(lengths) > 3 and max(lengths[2:]) == longest and min(lengths[2:]) < longest


def test_mha_switch_runs_the_official_attention(model, tokens, monkeypatch):
    calls = []
    official = F.multi_head_attention_forward

    def spy(*args, **kwargs):
        calls.append(kwargs.get("attn_mask") is not None)
        return official(*args, **kwargs)

    monkeypatch.setattr(clip_model.F, "multi_head_attention_forward", spy)
    with torch.no_grad():
        fast = model.encode_image(images())
        assert not calls
        with speedups(attention="mha"):
            slow = model.encode_image(images())
        assert calls and not any(calls)  # the vision tower has no mask
        calls.clear()
        encode(model, tokens, attention="mha")
        assert calls and all(calls)  # the text tower's causal mask
    assert torch.allclose(fast, slow, **TOL)


def test_gradients_equal_with_groups_and_chunks(model, tokens):
    """Training through grouped, chunked passes gives the gradients of one 77-token pass."""
    grads = []
    for changes in (SPEEDUPS_OFF, {**MANY_GROUPS, "text_chunk_size": 3}):
        prompts = [p.clone().requires_grad_(True) if p is not None else None
                   for p in text_prompts(len(NAMES), per_sequence=True)]
        with speedups(**changes):
            features = model.encode_text_embeddings(model.token_embedding(tokens),
                                                    tokens.argmax(-1), prompts)
        (features * torch.linspace(-1, 1, features.shape[1])).sum().backward()
        grads.append([prompts[0].grad, prompts[2].grad])
    for slow, fast in zip(*grads, strict=True):
        assert torch.allclose(slow, fast, atol=1e-5, rtol=1e-4)


def test_maple_logits_equal_on_off_and_cached(model):
    learner = MaPLePromptLearner(model, NAMES, n_ctx=2, depth=3)
    prompted = PromptedCLIP(model, learner).eval()
    with torch.no_grad():
        with speedups(**SPEEDUPS_OFF):
            slow = prompted(images())
        calls = []
        hook = model.transformer.register_forward_pre_hook(lambda *_: calls.append(1))
        try:
            with prompted.caching_text_features(), speedups(**MANY_GROUPS, shared_prefix=False):
                cached = [prompted(images()) for _ in range(3)]
        finally:
            hook.remove()
    passes = len(text_groups(learner.class_tokens.eot, 77, Speedups(**MANY_GROUPS)))
    assert len(calls) == passes  # the class text features were computed once for 3 batches
    for logits in cached:
        assert torch.allclose(logits, slow, **TOL)


def test_cocoop_per_image_prompts_follow_their_sequences(model):
    """CoCoOp writes a different context into every (image, class) prompt: grouping must carry
    each one with its sequence."""
    with torch.random.fork_rng(devices=[]):  # the same learner whatever ran before
        torch.manual_seed(0)
        learner = CoCoOpPromptLearner(model, NAMES, n_ctx=4, ctx_init="a photo of a")
        torch.nn.init.normal_(learner.meta_net.linear2.weight, std=0.5)
    prompted = ConditionalPromptedCLIP(model, learner).eval()
    with torch.no_grad():
        with speedups(**SPEEDUPS_OFF):
            slow = prompted(images())
        with speedups(**MANY_GROUPS, text_chunk_size=5):
            fast = prompted(images())
    assert torch.allclose(fast, slow, **TOL)
    # each image's own context: the two images' class logits differ in shape, not by a shift
    assert not torch.allclose(slow[0] - slow[0].mean(), slow[1] - slow[1].mean(), atol=1e-2)


def test_speedups_restore_and_reject_bad_values():
    before = Speedups(**vars(SPEEDUPS))
    with speedups(**SPEEDUPS_OFF) as current:
        assert current.attention == "mha" and not current.text_truncation
    assert SPEEDUPS == before
    with pytest.raises(TypeError, match="unknown speedups"):
        with speedups(truncation=False):
            pass
    with pytest.raises(ValueError, match="attention must be one of"):
        with speedups(attention="flash"):
            pass
    with pytest.raises(ValueError, match=">= 0"):
        with speedups(text_chunk_size=-1):
            pass
    assert SPEEDUPS == before


def test_per_sequence_prompt_of_the_wrong_count_is_an_error(model, tokens):
    with pytest.raises(ValueError, match="one per sequence"):
        encode(model, tokens, [torch.zeros(5, 2, 64)], **MANY_GROUPS)
