"""OpenAI's tokenize through open_clip's BPE."""

from __future__ import annotations

import pytest
import torch

import clip

SOT, EOT = 49406, 49407


def test_layout_start_text_end_then_zeros() -> None:
    out = clip.tokenize("a photo of a face.")
    assert out.dtype == torch.long and out.shape == (1, 77)
    assert out[0, :8].tolist() == [SOT, 320, 1125, 539, 320, 1710, 269, EOT]
    assert out[0, 8:].abs().sum() == 0
    assert clip.tokenize(["a", "b c"], context_length=10).shape == (2, 10)


def test_encode_gives_name_lengths_without_special_tokens() -> None:
    assert clip.encode("a photo of a face.") == [320, 1125, 539, 320, 1710, 269]
    assert clip.encode("  A   Photo ") == clip.encode("a photo")
    assert len(clip.encode("aircraft carrier")) == 2
    assert clip.decode(clip.encode("a photo of a face.")).strip() == "a photo of a face ."
    tok = clip._Tokenizer()
    assert tok.encoder["<start_of_text>"] == SOT and tok.eot_token == EOT


def test_too_long_raises_unless_truncated() -> None:
    long = " ".join(["cat"] * 80)
    with pytest.raises(RuntimeError, match="cat cat .* truncate=True"):
        clip.tokenize(["fine", long])
    out = clip.tokenize(long, truncate=True)
    assert out[0, -1] == EOT and out[0, 0] == SOT
    assert out[0, 1:-1].tolist() == clip.encode(long)[:75]
    exact = " ".join(["cat"] * 75)  # 75 + 2 tokens: fits exactly
    assert clip.tokenize(exact)[0, -1] == EOT


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="strings"):
        clip.tokenize([1, 2])
    with pytest.raises(ValueError, match="context_length"):
        clip.tokenize("a", context_length=1)
