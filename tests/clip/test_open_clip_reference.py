"""Our towers without prompts equal open_clip's ``encode_image`` / ``encode_text``.

open_clip is the independent reference: each model is built by open_clip's own constructor
(deterministic random weights, no download), its state dict is put where open_clip's download
functions find a user's downloaded file (a Hugging Face cache, offline), and our loader takes it
from there by the name a user gives. Each test also swaps the activation of our loaded model for
the other one and checks that the features then differ far beyond the tolerance: the comparison
catches a wrong activation (a GELU model run with OpenAI's QuickGELU differs by ~1e-2).
"""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch
from torch import nn

import clip
from clip.model import QuickGELU
from tests.clip import open_clip_models

open_clip = pytest.importorskip("open_clip")

TEXTS = ["a photo of a dog.", "a bad photo of an aircraft carrier."]

# open_clip model -> (how a user names its weights, the hub repository the name reads)
NAMED = {
    "ViT-B-32": ("open_clip:ViT-B-32/laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
    "ViT-B-16": ("open_clip:ViT-B-16/laion2b_s34b_b88k", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"),
    "ViT-B-16-quickgelu": ("open_clip:ViT-B-16-quickgelu/dfn2b", "apple/DFN2B-CLIP-ViT-B-16"),
    "ViT-L-14": ("open_clip:ViT-L-14/datacomp_xl_s13b_b90k",
                 "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K"),
    # every pretrained tag of RN50 is QuickGELU: its GELU config comes as a hub repository
    "RN50": ("hf-hub:example/RN50-gelu", "example/RN50-gelu"),
}


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache folder, with the hub client offline."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def _reference(name: str) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor,
                                   torch.Tensor]:
    """(open_clip's state dict, an image, open_clip's tokens of TEXTS, its image and text
    features)."""
    model = open_clip_models.create(name, seed=sum(map(ord, name)))
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    tokens = open_clip.get_tokenizer(name)(TEXTS)
    with torch.no_grad():
        image_features, text_features = model.encode_image(image), model.encode_text(tokens)
    return model.state_dict(), image, tokens, image_features, text_features


def _swap_activation(model: clip.CLIP) -> None:
    """Give every MLP of ``model`` the other activation."""
    for module in model.modules():
        mlp = getattr(module, "mlp", None)
        if isinstance(mlp, nn.Sequential):
            mlp.gelu = nn.GELU() if isinstance(mlp.gelu, QuickGELU) else QuickGELU()


def _check(name: str, offline_hub) -> None:
    user_name, repo = NAMED[name]
    state, image, reference_tokens, image_ref, text_ref = _reference(name)
    files: dict = {"open_clip_model.safetensors": state}
    if user_name.startswith("hf-hub:"):
        files["open_clip_config.json"] = open_clip_models.hub_config(
            open_clip.get_model_config(name))
    open_clip_models.put_in_hub_cache(offline_hub, repo, files)
    del state
    model, _ = clip.load(user_name, download_root=offline_hub)
    assert model.backbone.name == user_name
    tokens = model.tokenizer(TEXTS)
    assert torch.equal(tokens, reference_tokens)
    with torch.no_grad():
        image_features, text_features = model.encode_image(image), model.encode_text(tokens)
        open_clip_models.assert_fp32_close(image_features, image_ref)
        open_clip_models.assert_fp32_close(text_features, text_ref)
        _swap_activation(model)
        wrong = (model.encode_text(tokens) - text_ref).abs().max()
    assert wrong > 1e-3 * text_ref.abs().max(), "the comparison cannot see the activation"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NAMED))
def test_towers_equal_open_clip(name: str, offline_hub) -> None:
    _check(name, offline_hub)
