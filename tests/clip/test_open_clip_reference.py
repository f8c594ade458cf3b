"""Our towers without prompts equal open_clip's ``encode_image`` / ``encode_text``.

open_clip is the independent reference. Each full-size model has deterministic random weights
(``open_clip_models.weights``: shapes from open_clip's constructor); open_clip's own features of
them, computed by open_clip's forward passes, are stored in fixtures/open_clip_reference.pt
(``python -m tests.clip.make_open_clip_reference`` writes it; the fingerprint of the weights is
stored with it, so a fixture of other weights cannot pass). The weights are put where open_clip's
download functions find a user's downloaded file (a Hugging Face cache, offline), and our loader
takes them from there by the name a user gives. Each test then swaps the activation of our
loaded model for the other one and checks that the features differ far beyond the tolerance:
the comparison catches a wrong activation (a GELU model run with QuickGELU differs by ~3e-2).
"""

from __future__ import annotations

import shutil

import huggingface_hub.constants
import pytest
import torch
from torch import nn

import clip
from clip.model import QuickGELU
from tests.clip import open_clip_models as models

open_clip = pytest.importorskip("open_clip")

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


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(models.REFERENCE_FILE, weights_only=True)


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache folder, with the hub client offline; deleted after the test
    (it holds up to 0.9 GB, and pytest keeps the folders of past runs)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield tmp_path / "hub"
    shutil.rmtree(tmp_path / "hub", ignore_errors=True)


def _swap_activation(model: clip.CLIP) -> None:
    """Give every MLP of ``model`` the other activation."""
    for module in model.modules():
        mlp = getattr(module, "mlp", None)
        if isinstance(mlp, nn.Sequential):
            mlp.gelu = nn.GELU() if isinstance(mlp.gelu, QuickGELU) else QuickGELU()


def _load_as_a_user(name: str, hub) -> clip.CLIP:
    user_name, repo = NAMED[name]
    state = models.weights(name, models.REFERENCE_MODELS[name])
    files: dict = {"open_clip_pytorch_model.bin": state}  # the hub's default file name
    if user_name.startswith("hf-hub:"):
        files["open_clip_config.json"] = models.hub_config(open_clip.get_model_config(name))
    models.put_in_hub_cache(hub, repo, files)
    del files, state
    model, _ = clip.load(user_name, download_root=hub)
    assert model.backbone.name == user_name
    return model


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NAMED))
def test_towers_equal_open_clip(name: str, reference, offline_hub) -> None:
    expected = reference[name]
    model = _load_as_a_user(name, offline_hub)
    assert model.identity()["fingerprint"] == expected["fingerprint"]
    tokens = model.tokenizer(models.REFERENCE_TEXTS)
    assert torch.equal(tokens, expected["tokens"])
    image = models.reference_image(model.backbone.arch.image_size)
    with torch.no_grad():
        models.assert_fp32_close(model.encode_image(image), expected["image"])
        models.assert_fp32_close(model.encode_text(tokens), expected["text"])
        _swap_activation(model)
        wrong = (model.encode_text(tokens) - expected["text"]).abs().max()
    assert wrong > 1e-3 * expected["text"].abs().max(), "the comparison cannot see the activation"
