"""``tiny-demo``: the shipped tiny CLIP pre-trained on colours (clip/tiny_demo.py) and its
generator (tools/demo_clip.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import clip
from clip import tiny_demo
from clip.errors import WeightsError
from tools import demo_clip

# the range the pre-training was designed for (tools/demo_clip.py): clearly above chance (25%
# on the 4 base classes), clearly below what prompt learning reaches from it
ZERO_SHOT_RANGE = (40.0, 75.0)


@pytest.fixture(scope="module")
def shipped() -> clip.CLIP:
    model, _ = clip.load("tiny-demo")
    return model


def test_loads_by_name_as_tinys_architecture_with_trained_weights(shipped: clip.CLIP) -> None:
    assert "tiny-demo" in clip.available_models()
    assert shipped.backbone.name == "tiny-demo" and not shipped.training
    assert shipped.backbone.arch == clip.tiny_backbone().arch
    assert clip.describe("tiny-demo").arch == clip.tiny_backbone().arch
    random = clip.tiny_clip(seed=tiny_demo.BASE_SEED).state_dict()
    state = shipped.state_dict()
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    assert not torch.equal(state["text_projection"], random["text_projection"])
    # the words of the pre-training captions were trained; the rest of the vocabulary is tiny's
    red = shipped.tokenizer.encode("red")[0]
    changed = (state["token_embedding.weight"] != random["token_embedding.weight"]).any(1)
    assert changed[red] and 20 < int(changed.sum()) < 1000


def test_deterministic(shipped: clip.CLIP) -> None:
    again, _ = clip.load("tiny-demo")
    for key, value in shipped.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_shipped_zero_shot_accuracy_is_in_the_designed_range(shipped: clip.CLIP,
                                                             tmp_path: Path) -> None:
    base = demo_clip.zero_shot_accuracy(shipped, *demo_clip.demo_test_set(tmp_path, 4))
    low, high = ZERO_SHOT_RANGE
    assert low <= base <= high, f"tiny-demo's zero-shot accuracy {base}% (designed: {low}-{high})"
    random = clip.tiny_clip(seed=tiny_demo.BASE_SEED)
    assert demo_clip.zero_shot_accuracy(random, *demo_clip.demo_test_set(tmp_path, 4)) < low


def _one_line_error(path: Path, match: str) -> None:
    with pytest.raises(WeightsError, match=match) as error:
        tiny_demo.tiny_demo_clip(path)
    assert "\n" not in str(error.value) and "python -m tools.demo_clip" in str(error.value)


def test_missing_or_damaged_file_is_a_one_line_error(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "absent.safetensors", "missing")
    data = tiny_demo.WEIGHTS.read_bytes()
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF  # a byte of a tensor
    (tmp_path / "flipped.safetensors").write_bytes(bytes(flipped))
    _one_line_error(tmp_path / "flipped.safetensors", "checksum")
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    _one_line_error(tmp_path / "truncated.safetensors", "cannot be read")
    (tmp_path / "garbage.safetensors").write_bytes(b"not a weight file")
    _one_line_error(tmp_path / "garbage.safetensors", "cannot be read")


def test_the_generator_trains_and_writes_what_the_loader_reads(tmp_path: Path) -> None:
    model, losses = demo_clip.pretrain(steps=6)
    assert sum(losses[-3:]) / 3 < losses[0], losses
    again, losses_again = demo_clip.pretrain(steps=2)
    assert losses_again == losses[:2]  # deterministic
    path = tiny_demo.write(model.state_dict(), tmp_path / "w.safetensors")
    loaded = tiny_demo.tiny_demo_clip(path).state_dict()
    initial = clip.tiny_state_dict(tiny_demo.BASE_SEED)["token_embedding.weight"]
    for key, value in model.state_dict().items():
        expected = value.to(torch.float16).float()  # stored in fp16
        if key == "token_embedding.weight":  # rows never trained keep tiny's fp32 values
            expected = torch.where((value != initial).any(1, keepdim=True), expected, value)
        assert torch.equal(loaded[key], expected), key
    # only what changed is stored: far less than the 49408-row token embedding
    assert path.stat().st_size < 1_000_000


def test_shipped_file_is_small() -> None:
    assert tiny_demo.WEIGHTS.stat().st_size < 1_000_000
