from __future__ import annotations

import pytest
import torch

import clip


@pytest.fixture(scope="module")
def tiny() -> clip.CLIP:
    """A 3-layer tiny ViT CLIP (text and vision), frozen."""
    model = clip.tiny_clip(seed=1, text_layers=3, vision_layers=3)
    return model.requires_grad_(False)


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return clip.tokenize(["a photo of a dog.", "a bad photo of an aircraft carrier.", "x"])


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
