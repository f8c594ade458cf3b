"""Our SigLIP towers without prompts equal open_clip's ``encode_image`` / ``encode_text``, and
our logits equal its sigmoid model's (scaled cosine plus the learned bias).

open_clip is the independent reference: fixtures/open_clip_siglip_reference.pt holds its own
features and logits of ViT-B-16-SigLIP, ViT-B-16-SigLIP2 and ViT-SO400M-14-SigLIP holding
deterministic random weights (``python -m tests.clip.make_siglip_reference`` writes it). The
weights reach our loader as a user's do, by each way of naming them: open_clip's tag (from a
Hugging Face cache, offline), a ``hf-hub:`` repository, a local folder. Each test then shows
that the comparison sees the text tower's mask and the logit bias.
"""

from __future__ import annotations

import shutil

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F

import clip
from clip.tiny_siglip import tiny_tokenizer
from tests.clip import open_clip_models as models
from tests.clip.make_siglip_reference import SIGLIP_MODELS, SIGLIP_REFERENCE_FILE, weights_digest

open_clip = pytest.importorskip("open_clip")

# open_clip model -> how a user names its weights
NAMED = {"ViT-B-16-SigLIP": "open_clip:ViT-B-16-SigLIP/webli",
         "ViT-B-16-SigLIP2": "hf-hub:timm/ViT-B-16-SigLIP2",
         "ViT-SO400M-14-SigLIP": "folder"}


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(SIGLIP_REFERENCE_FILE, weights_only=True)


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield tmp_path / "hub"
    shutil.rmtree(tmp_path / "hub", ignore_errors=True)


def _tokenizer_json() -> bytes:
    """A tokenizer file for the repository (the features are compared on stored token ids)."""
    return tiny_tokenizer().to_str().encode()


def _load_as_a_user(name: str, state: dict, hub, tmp_path) -> clip.CLIP:
    user_name = NAMED[name]
    config = models.hub_config(open_clip.get_model_config(name),
                               {"mean": [0.5] * 3, "std": [0.5] * 3, "resize_mode": "squash"})
    files: dict = {"open_clip_pytorch_model.bin": state, "tokenizer.json": _tokenizer_json()}
    if user_name == "folder":
        folder = tmp_path / "siglip"
        folder.mkdir()
        torch.save(state, folder / "open_clip_pytorch_model.bin")
        (folder / "open_clip_config.json").write_bytes(config)
        (folder / "tokenizer.json").write_bytes(files["tokenizer.json"])
        user_name = str(folder)
    else:
        if user_name.startswith("hf-hub:"):
            files["open_clip_config.json"] = config
        repo = open_clip.get_model_config(name)["text_cfg"]["hf_tokenizer_name"]
        models.put_in_hub_cache(hub, repo, files)
    model, preprocess = clip.load(user_name, download_root=hub)
    assert model.backbone.name == user_name
    assert model.backbone.preprocess.resize_mode == "squash"
    return model


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NAMED))
def test_siglip_towers_and_logits_equal_open_clip(name, reference, offline_hub, tmp_path):
    expected = reference[name]
    state = models.weights(name, SIGLIP_MODELS[name])
    assert weights_digest(state) == expected["weights"]
    model = _load_as_a_user(name, state, offline_hub, tmp_path)
    del state
    assert isinstance(model, clip.siglip.SigLIP) and not model.transformer.causal
    # our ids carry the placeholder where CLIP's start-of-text token is
    tokens = torch.cat([torch.full((2, 1), model.tokenizer.pad_id), expected["tokens"]], dim=1)
    image = models.reference_image(model.backbone.arch.image_size)
    with torch.no_grad():
        image_features = model.encode_image(image)
        text_features = model.encode_text(tokens)
        models.assert_fp32_close(image_features, expected["image"])
        models.assert_fp32_close(text_features, expected["text"])
        logits = model.logits(F.normalize(image_features, dim=-1),
                              F.normalize(text_features, dim=-1))
        torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=1e-4)
        # the comparison sees the mask and the bias
        assert (logits - model.logit_bias - expected["logits"]).abs().max() > 1e-2
        for block in model.transformer.resblocks:
            block.causal = True
        wrong = (model.encode_text(tokens) - expected["text"]).abs().max()
    assert wrong > 1e-3 * expected["text"].abs().max(), "the comparison cannot see the mask"
