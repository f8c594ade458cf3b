"""Backbone descriptions: OpenAI's table, open_clip's configs and tags, refusals, names,
tokenizers, identity, and open_clip folders and hub repositories read offline."""

from __future__ import annotations

import importlib

import huggingface_hub.constants
import pytest
import torch

import clip
from clip.backbones import OPENAI, Architecture, open_clip_backbone
from tests.clip import open_clip_models
from tests.clip.open_clip_models import assert_fp32_close as close

open_clip = pytest.importorskip("open_clip")
weights = importlib.import_module("clip.load")

# OpenAI's names -> open_clip's configs of the same models
OPENAI_IN_OPEN_CLIP = {"RN50": "RN50", "RN101": "RN101", "RN50x4": "RN50x4",
                       "RN50x16": "RN50x16", "RN50x64": "RN50x64", "ViT-B/32": "ViT-B-32",
                       "ViT-B/16": "ViT-B-16", "ViT-L/14": "ViT-L-14",
                       "ViT-L/14@336px": "ViT-L-14-336"}


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def test_openai_table_equals_open_clips_configs_of_openais_weights() -> None:
    assert list(OPENAI) == clip.available_models()[:9]
    for name, open_clip_name in OPENAI_IN_OPEN_CLIP.items():
        described = open_clip_backbone(f"{open_clip_name}/openai")
        assert described.arch == OPENAI[name], name
        assert described.preprocess == clip.Preprocess()
        assert clip.describe(name).arch == OPENAI[name]


def test_activation_and_preprocessing_come_from_the_tag() -> None:
    laion = clip.describe("open_clip:ViT-B-16/laion2b_s34b_b88k")
    assert laion.arch.activation == "gelu" and laion.arch == dataclass_replace(
        OPENAI["ViT-B/16"], activation="gelu")
    # open_clip's ViT-B-16 config says GELU, but these weights were trained with QuickGELU
    assert clip.describe("open_clip:ViT-B-16/openai").arch.activation == "quick_gelu"
    assert clip.describe("open_clip:ViT-B-16/dfn2b").arch.activation == "quick_gelu"
    assert clip.describe("open_clip:ViT-B-16-quickgelu/dfn2b").arch.activation == "quick_gelu"
    large = clip.describe("open_clip:ViT-L-14/laion2b_s32b_b82k")
    assert large.preprocess.mean == large.preprocess.std == (0.5, 0.5, 0.5)
    assert clip.describe("open_clip:ViT-H-14/dfn5b").preprocess.resize_mode == "squash"
    assert clip.describe("open_clip:ViT-B-16/LAION2B-S34B-B88K").name == laion.name


def dataclass_replace(arch: Architecture, **changes) -> Architecture:
    import dataclasses

    return dataclasses.replace(arch, **changes)


@pytest.mark.parametrize("name", ["ViT-H-14", "ViT-bigG-14", "RN50x64"])
def test_our_towers_have_open_clips_parameter_shapes(name: str) -> None:
    """Heads (ViT-H's 80-channel heads), MLP ratios (bigG's 4.9231), sizes: built on the meta
    device from our description and by open_clip's constructor, the same tensors."""
    with torch.device("meta"):
        ours = clip.CLIP.from_backbone(open_clip_backbone(name, require_tag=False))
        theirs = open_clip.create_model(name, device="meta")
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()}
    visual = getattr(ours.visual, "transformer", None)
    if visual is not None:
        assert visual.heads == theirs.visual.transformer.resblocks[0].attn.num_heads


@pytest.mark.parametrize("name, reason", [
    ("nllb-clip-base-siglip", "hf_model_name"),  # SigLIP with a Hugging Face text tower
    ("EVA02-B-16/merged2b_s8b_b131k", "image tower from timm"),
    ("coca_ViT-B-32/laion2b_s13b_b90k", "multimodal text decoder"),
    ("ViT-L-14-CLIPA/datacomp1b", "non-causal text tower"),
    ("ViT-M-16-alt", "layer scale"),
    ("ViT-H-14-worldwide/metaclip2_worldwide", "the tokenizer facebook/xlm-v-base"),
])
def test_families_outside_clips_shape_are_refused(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as err:
        open_clip_backbone(name, require_tag=False)
    assert "Supported: OpenAI's RN50" in str(err.value)
    assert "ViT-B-16-quickgelu" in str(err.value)


def test_bad_names() -> None:
    with pytest.raises(ValueError, match="name the pretrained weights.*laion2b_s34b_b88k"):
        clip.describe("open_clip:ViT-B-16")
    with pytest.raises(ValueError, match="no pretrained tag 'nope'.*laion2b_s34b_b88k"):
        clip.describe("open_clip:ViT-B-16/nope")
    with pytest.raises(ValueError, match="no model 'ViT-B/16' .open_clip's names have dashes"):
        clip.describe("open_clip:ViT-B/16/openai")
    with pytest.raises(RuntimeError, match="backbone 'ViT-B/17' not found.*Supported"):
        clip.describe("ViT-B/17")


def test_architecture_is_validated() -> None:
    arch = OPENAI["ViT-B/16"]
    with pytest.raises(ValueError, match="activation"):
        dataclass_replace(arch, activation="relu")
    with pytest.raises(ValueError, match="not divisible by 5 heads"):
        dataclass_replace(arch, vision_heads=5)
    with pytest.raises(ValueError, match="multiple of 16"):
        dataclass_replace(arch, image_size=230)


# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_belongs_to_the_backbone() -> None:
    short, long = clip.Tokenizer(context_length=16), clip.Tokenizer()
    assert short("a photo of a dog.").shape == (1, 16)
    assert long("a photo of a dog.").shape == (1, 77)  # one does not change the other
    assert short("a photo of a dog.").shape == (1, 16)
    assert torch.equal(long(["a dog"]), clip.tokenize(["a dog"]))
    model = clip.tiny_clip()
    assert model.tokenizer == clip.Tokenizer(77)


def test_end_of_text_is_found_by_its_id() -> None:
    tok = clip.Tokenizer(context_length=8)
    tokens = torch.tensor([[tok.sot_id, 5, tok.eot_id, 0, 0, 0, 0, 0],
                           [tok.sot_id, 5, 6, tok.eot_id, 0, tok.eot_id, 0, 0]])
    assert tok.eot_positions(tokens).tolist() == [2, 3]
    with pytest.raises(ValueError, match=r"rows \[1\].*no end-of-text"):
        tok.eot_positions(torch.tensor([[tok.sot_id, 5, tok.eot_id], [tok.sot_id, 5, 6]]))
    # a token id above the end-of-text id (another vocabulary) would fool argmax
    tokens = torch.tensor([[tok.sot_id, 5, tok.eot_id, 60000]])
    assert tok.eot_positions(tokens).item() == 2 and tokens.argmax(-1).item() == 3


# --------------------------------------------------------------------------- identity


def test_identity_names_the_backbone_and_fingerprints_the_weights() -> None:
    model = clip.tiny_clip(seed=3)
    identity = model.identity()
    assert identity["backbone"] == "tiny"
    assert clip.load("tiny")[0].identity() == clip.tiny_clip(seed=0).identity()
    half = clip.convert_weights(clip.tiny_clip(seed=3), torch.float16)
    assert half.identity() == identity
    assert clip.tiny_clip(seed=4).identity()["fingerprint"] != identity["fingerprint"]
    assert clip.tiny_clip(seed=3, activation="gelu").identity()["backbone"] == "tiny-gelu"


# --------------------------------------------------------------------------- open_clip files


def test_open_clip_folder_equals_open_clip(tmp_path) -> None:
    """open_clip's own tiny GELU model (32-channel heads), saved as an open_clip folder, loads
    by its path (and with open_clip's ``local-dir:`` prefix) and computes open_clip's
    features."""
    reference = open_clip_models.tiny_open_clip_folder(tmp_path / "tiny")
    model, preprocess = clip.load(str(tmp_path / "tiny"))
    assert model.backbone.arch.activation == "gelu" and model.backbone.arch.vision_heads == 4
    assert model.backbone.preprocess.mean == (0.5, 0.5, 0.5)
    assert preprocess.transforms[-1].mean == (0.5, 0.5, 0.5)
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tokens = model.tokenizer(["a photo of a dog.", "x"])
    with torch.no_grad():
        close(model.encode_image(image), reference.encode_image(image))
        close(model.encode_text(tokens), reference.encode_text(tokens))
    prefixed, _ = clip.load(f"local-dir:{tmp_path / 'tiny'}")
    assert prefixed.identity()["fingerprint"] == model.identity()["fingerprint"]


def test_bare_state_dict_with_an_open_clip_architecture(tmp_path) -> None:
    reference = open_clip_models.tiny_open_clip_folder(tmp_path / "tiny")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v
                                           for k, v in reference.state_dict().items()}},
               tmp_path / "epoch_3.pt")  # an open_clip training checkpoint
    config = tmp_path / "tiny" / "open_clip_config.json"
    model, _ = clip.load(str(tmp_path / "epoch_3.pt"), arch=str(config))
    assert model.backbone.name == f"{tmp_path / 'epoch_3.pt'} as {config}"
    tokens = model.tokenizer(["a dog"])
    with torch.no_grad():
        close(model.encode_text(tokens), reference.encode_text(tokens))
    with pytest.raises(ValueError, match="bare state dict"):
        clip.load(str(tmp_path / "epoch_3.pt"))


def test_hub_repository_outside_clips_shape_is_refused_before_its_weights(offline_hub) -> None:
    # a SigLIP without a text projection
    repo = "timm/ViT-SO400M-16-SigLIP-i18n-256"
    config = open_clip_models.hub_config(open_clip.get_model_config(repo.split("/")[1]))
    open_clip_models.put_in_hub_cache(offline_hub, repo, {"open_clip_config.json": config})
    with pytest.raises(ValueError, match="not a SigLIP this project can run.*proj_type.*Supported"):
        clip.load(f"hf-hub:{repo}", download_root=offline_hub)


def test_hub_repository_of_a_quick_gelu_tag_runs_quick_gelu(offline_hub) -> None:
    """A repository config without ``quick_gelu`` (open_clip's ViT-B-16 config) for weights
    that open_clip's tag table says were trained with QuickGELU (DFN-2B)."""
    config = open_clip_models.hub_config(open_clip.get_model_config("ViT-B-16"))
    open_clip_models.put_in_hub_cache(offline_hub, "apple/DFN2B-CLIP-ViT-B-16",
                                      {"open_clip_config.json": config})
    described = clip.describe("hf-hub:apple/DFN2B-CLIP-ViT-B-16", download_root=offline_hub)
    assert described.arch == OPENAI["ViT-B/16"]  # QuickGELU, ViT-B/16's shape


def test_offline_errors_name_the_file_and_where_to_put_it(offline_hub, monkeypatch) -> None:
    with pytest.raises(RuntimeError) as err:
        clip.load("open_clip:ViT-B-16/laion2b_s34b_b88k", download_root=offline_hub)
    message = str(err.value)
    for part in ("open_clip_pytorch_model.bin", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
                 "MODEL.BACKBONE.ARCH to open_clip:ViT-B-16/laion2b_s34b_b88k",
                 "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K", str(offline_hub)):
        assert part in message
    with pytest.raises(RuntimeError, match="open_clip_config.json of hf-hub:org/missing"):
        clip.load("hf-hub:org/missing", download_root=offline_hub)
    # without the hub client, open_clip downloads from the tag's URL into ~/.cache/clip
    monkeypatch.setattr(importlib.import_module("open_clip.pretrained"), "_has_hf_hub", False)
    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "laion400m_e32")
    advice = weights._offline_advice(cfg, "open_clip:ViT-B-32/laion400m_e32", offline_hub)
    assert f"put it at {offline_hub / cfg['url'].rsplit('/', 1)[1]}" in advice
