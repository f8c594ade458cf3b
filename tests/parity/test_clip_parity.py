"""Zero-shot CLIP against what OpenAI's code computes on the recipe's ViT-B/16 weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import clip
from tests.parity import recipe


def test_tokens_equal_the_official_tokenizer() -> None:
    spec, _ = recipe.fixture("CLIP")
    texts = [spec["template"].format(name) for name in spec["classnames"]]
    assert clip.tokenize(texts).tolist() == spec["tokens"]


def test_features_and_logits_match_the_official_code(parity_clip: clip.CLIP) -> None:
    spec, expected = recipe.fixture("CLIP")
    texts = [spec["template"].format(name) for name in spec["classnames"]]
    with torch.no_grad():
        image_features = parity_clip.encode_image(recipe.images())
        text_features = parity_clip.encode_text(clip.tokenize(texts))
    logits = parity_clip.logit_scale.exp() * (
        F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).t())
    torch.testing.assert_close(image_features, expected["image_features"], atol=1e-4, rtol=0)
    torch.testing.assert_close(text_features, expected["text_features"], atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, expected["logits"], atol=1e-3, rtol=0)
    assert (logits.argmax(-1) == expected["logits"].argmax(-1)).all()


def test_forward_returns_the_official_logits(parity_clip: clip.CLIP) -> None:
    spec, expected = recipe.fixture("CLIP")
    with torch.no_grad():
        per_image, per_text = parity_clip(recipe.images(), torch.tensor(spec["tokens"]))
    torch.testing.assert_close(per_image, expected["logits"], atol=1e-3, rtol=0)
    torch.testing.assert_close(per_text, expected["logits"].t(), atol=1e-3, rtol=0)
