"""One description per backbone: what a CLIP is, read from the backbone's own definition.

A :class:`Backbone` holds the architecture (widths, depths, heads, patch, image size, context
length, the activation of the transformers' MLPs), the preprocessing its weights were trained
with (mean, std, resize), its tokenizer's vocabulary, and where its weights come from. Models,
prompt learners and the input checks read it (``clip_model.backbone``); nothing guesses an
architecture from tensor shapes alone.

Sources of descriptions:

* OpenAI's nine models by OpenAI's names (``ViT-B/16``): the table :data:`OPENAI`.
* open_clip's model configs and pretrained tags (``open_clip:ViT-B-16/laion2b_s34b_b88k``):
  :func:`open_clip_backbone`. The activation is the one the tagged weights were trained with
  (open_clip's tag table says ``quick_gelu`` where they were; its ``ViT-B-16`` config alone
  says GELU), the preprocessing is the tag's.
* An open_clip config file (``open_clip_config.json`` of a ``hf-hub:`` repository or a local
  folder, or one of open_clip's model-config JSON files): :func:`from_open_clip_json`.

Only CLIP's shape is accepted: a ViT or OpenAI's ModifiedResNet image tower pooled at the class
token, a causal text transformer pooled at the end-of-text token, OpenAI's BPE vocabulary and a
scaled cosine-similarity logit. Other families (SigLIP, CoCa, CLIPA, towers from timm or Hugging
Face, layer scale) are refused with a message listing what is supported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .tokenizer import Tokenizer

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_tanh")
FAMILIES = ("clip", "siglip")
OPEN_CLIP_PREFIX = "open_clip:"
HF_HUB_PREFIX = "hf-hub:"
OPENAI_VOCAB_SIZE = 49408


@dataclass(frozen=True)
class Architecture:
    """The hyper-parameters of a CLIP. ``vision_layers`` is an int for a ViT and the four stage
    depths for a ModifiedResNet (``patch_size`` None; ``vision_width`` is then the stem width
    and ``vision_heads`` the heads of the attention pool)."""

    embed_dim: int
    image_size: int
    vision_layers: int | tuple[int, int, int, int]
    vision_width: int
    vision_heads: int
    patch_size: int | None
    context_length: int
    vocab_size: int
    text_width: int
    text_heads: int
    text_layers: int
    activation: str = "quick_gelu"  # of the transformers' MLPs (a ResNet's convolutions: ReLU)
    vision_mlp_ratio: float = 4.0
    text_mlp_ratio: float = 4.0
    # "siglip" (clip/siglip.py): timm's ViT without class token nor ln_pre, pooled by an
    # attention head; a non-causal text tower pooled at its last position, projected with a
    # bias; sigmoid logits with a learned bias
    family: str = "clip"
    text_activation: str = ""  # "": the same as ``activation``
    norm_eps: float = 1e-5  # of every LayerNorm

    def __post_init__(self) -> None:
        for what, value in (("activation", self.activation),
                            ("text_activation", self.text_activation or self.activation)):
            if value not in ACTIVATIONS:
                raise ValueError(f"{what} must be one of {ACTIVATIONS}; got {value!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}; got {self.family!r}")
        if self.family == "siglip" and (self.is_resnet or self.vision_width != self.embed_dim):
            raise ValueError("a SigLIP image tower is a ViT whose width is the embedding size; "
                             f"got vision layers {self.vision_layers}, width "
                             f"{self.vision_width}, embed_dim {self.embed_dim}")
        if self.is_resnet != (self.patch_size is None):
            raise ValueError("a ViT needs a patch size and four stage depths make a ResNet; got "
                             f"vision_layers {self.vision_layers}, patch_size {self.patch_size}")
        step = 32 if self.is_resnet else self.patch_size
        if self.image_size % step:
            raise ValueError(f"image size {self.image_size} is not a multiple of {step}")
        pooled = self.vision_width * 32 if self.is_resnet else self.vision_width
        for what, width, heads in (("vision", pooled, self.vision_heads),
                                   ("text", self.text_width, self.text_heads)):
            if heads < 1 or width % heads:
                raise ValueError(f"{what} width {width} is not divisible by {heads} heads")

    @property
    def is_resnet(self) -> bool:
        return isinstance(self.vision_layers, tuple)

    def describe(self) -> str:
        if self.is_resnet:
            vision = (f"ResNet {'-'.join(map(str, self.vision_layers))} (width "
                      f"{self.vision_width})")
        else:
            vision = (f"ViT {self.vision_layers}x{self.vision_width} ({self.vision_heads} heads,"
                      f" patch {self.patch_size})")
        activation = self.activation if self.text_activation in ("", self.activation) else \
            f"{self.activation} (text: {self.text_activation})"
        family = "SigLIP: attention-pooled image, non-causal text, sigmoid logits; " \
            if self.family == "siglip" else ""
        return (f"{family}{vision} at {self.image_size} px; text {self.text_layers}x"
                f"{self.text_width} ({self.text_heads} heads, {self.context_length} tokens); "
                f"embed {self.embed_dim}; {activation}")


@dataclass(frozen=True)
class Preprocess:
    """The image preprocessing the weights were trained with. ``resize_mode``: ``shortest``
    (resize the short side, center crop: what the data loaders do) or ``squash``."""

    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"


@dataclass(frozen=True)
class Backbone:
    """A backbone's description.

    ``name`` is canonical: given as MODEL.BACKBONE.NAME (with ``arch`` for a bare state dict)
    it names these weights again. ``source`` says where the weights come from (``openai``,
    ``open_clip``, ``hf-hub``, ``local-dir``, ``file``, or ``local`` for models built in
    code) and ``location`` where exactly (an OpenAI name, ``model/tag``, a hub repository, a
    path).
    """

    name: str
    arch: Architecture
    preprocess: Preprocess = field(default_factory=Preprocess)
    vocabulary: str = "openai-bpe"
    source: str = "local"
    location: str = ""

    def tokenizer(self, cache_dir: str | None = None) -> Tokenizer:
        """OpenAI's BPE, or (another ``vocabulary``) the SentencePiece vocabulary it names,
        read from its tokenizer files (a Hugging Face cache: ``cache_dir`` or the default)."""
        if self.vocabulary == "openai-bpe":
            return Tokenizer(self.arch.context_length, self.vocabulary)
        from .siglip_tokenizer import SentencePieceTokenizer

        return SentencePieceTokenizer(self.arch.context_length, self.vocabulary, cache_dir)

    def describe(self) -> str:
        p = self.preprocess
        return (f"{self.name}: {self.arch.describe()}; preprocessing mean {list(p.mean)} std "
                f"{list(p.std)}, {p.interpolation} {p.resize_mode} resize")

    def input_mismatches(self, size: tuple[int, int], mean: Any, std: Any) -> list[str]:
        """What in an input configuration differs from what the backbone needs, one sentence
        per value (empty when everything fits)."""
        problems = []
        need = (self.arch.image_size, self.arch.image_size)
        if tuple(size) != need:
            problems.append(f"INPUT.SIZE is {tuple(size)}; {self.name} needs {need}")
        for key, value, expected in (("PIXEL_MEAN", mean, self.preprocess.mean),
                                     ("PIXEL_STD", std, self.preprocess.std)):
            if len(value) != 3 or not all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
                                          for a, b in zip(value, expected, strict=False)):
                problems.append(f"INPUT.{key} is {list(value)}; {self.name} was trained with "
                                f"{list(expected)}")
        return problems


# --------------------------------------------------------------------------- OpenAI


def _openai(embed: int, image: int, layers: int | tuple[int, int, int, int], width: int,
            patch: int | None, text_width: int) -> Architecture:
    """OpenAI's rules: 64-channel heads everywhere, 12 text layers, QuickGELU."""
    pooled = width * 32 if patch is None else width
    return Architecture(embed_dim=embed, image_size=image, vision_layers=layers,
                        vision_width=width, vision_heads=pooled // 64, patch_size=patch,
                        context_length=77, vocab_size=OPENAI_VOCAB_SIZE, text_width=text_width,
                        text_heads=text_width // 64, text_layers=12, activation="quick_gelu")


OPENAI: dict[str, Architecture] = {
    "RN50": _openai(1024, 224, (3, 4, 6, 3), 64, None, 512),
    "RN101": _openai(512, 224, (3, 4, 23, 3), 64, None, 512),
    "RN50x4": _openai(640, 288, (4, 6, 10, 6), 80, None, 640),
    "RN50x16": _openai(768, 384, (6, 8, 18, 8), 96, None, 768),
    "RN50x64": _openai(1024, 448, (3, 15, 36, 10), 128, None, 1024),
    "ViT-B/32": _openai(512, 224, 12, 768, 32, 512),
    "ViT-B/16": _openai(512, 224, 12, 768, 16, 512),
    "ViT-L/14": _openai(768, 224, 24, 1024, 14, 768),
    "ViT-L/14@336px": _openai(768, 336, 24, 1024, 14, 768),
}


def openai_backbone(name: str) -> Backbone:
    """OpenAI's model ``name`` (one of :data:`OPENAI`)."""
    return Backbone(name, OPENAI[name], Preprocess(), source="openai", location=name)


def openai_architecture(state_dict: dict[str, torch.Tensor],
                        activation: str = "quick_gelu") -> Architecture:
    """The architecture of a state dict in OpenAI's layout, read as OpenAI's ``build_model``
    reads it: for OpenAI's own files (TorchScript archives), whose rules (64-channel heads)
    and activation are OpenAI's. Other weights must be described by their own definition."""
    sd = state_dict
    missing = [k for k in ("text_projection", "positional_embedding", "token_embedding.weight",
                           "ln_final.weight") if k not in sd]
    if missing:
        raise ValueError(f"not a CLIP state dict in OpenAI's layout: missing {missing}")
    if "visual.proj" in sd:
        width = sd["visual.conv1.weight"].shape[0]
        layers: int | tuple[int, ...] = len(
            [k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")])
        patch: int | None = sd["visual.conv1.weight"].shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        image, heads = patch * grid, width // 64
    else:
        layers = tuple(len({k.split(".")[2] for k in sd if k.startswith(f"visual.layer{b}.")})
                       for b in (1, 2, 3, 4))
        width = sd["visual.layer1.0.conv1.weight"].shape[0]
        grid = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        patch, image, heads = None, grid * 32, width * 32 // 64
    text_width = sd["ln_final.weight"].shape[0]
    return Architecture(
        embed_dim=sd["text_projection"].shape[1], image_size=image, vision_layers=layers,
        vision_width=width, vision_heads=heads, patch_size=patch,
        context_length=sd["positional_embedding"].shape[0],
        vocab_size=sd["token_embedding.weight"].shape[0], text_width=text_width,
        text_heads=text_width // 64,
        text_layers=len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")}),
        activation=activation)


def openai_name(arch: Architecture) -> str | None:
    """OpenAI's name of an architecture, if it is one of OpenAI's models."""
    return next((name for name, known in OPENAI.items() if known == arch), None)


# --------------------------------------------------------------------------- open_clip

# what CLIP's shape reads from an open_clip config
_VISION_READ = {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size"}
_TEXT_READ = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}
# options that change nothing in a frozen CLIP's features (training, outputs, or only read by
# an option that is refused anyway)
_VISION_IGNORED = {"patch_dropout", "output_tokens", "attn_pooler_queries", "attn_pooler_heads",
                   "timm_model_pretrained", "timm_pool", "timm_proj", "timm_proj_bias",
                   "timm_drop", "timm_drop_path"}
_TEXT_IGNORED = {"output_tokens", "pad_id", "eos_id", "hf_model_pretrained", "hf_proj_type",
                 "hf_pooler_type"}
_ALLOWED = {"block_type": (None, "default")}
_TOP_KEYS = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text",
             "init_logit_scale", "nonscalar_logit_scale", "cast_dtype", "output_dict"}
# plain words for the options that mark the families outside CLIP's shape
_PHRASES = {
    "vision_cfg.timm_model_name": "an image tower from timm ({})",
    "text_cfg.hf_model_name": "a text tower from Hugging Face ({})",
    "text_cfg.hf_tokenizer_name": "the tokenizer {}",
    "init_logit_bias": "sigmoid logits with a learned bias (SigLIP)",
    "multimodal_cfg": "a multimodal text decoder (CoCa)",
    "text_cfg.pool_type": "text features pooled by '{}' instead of at the end-of-text token",
    "text_cfg.no_causal_mask": "a non-causal text tower",
    "vision_cfg.attentional_pool": "an attention-pooled image head",
    "vision_cfg.pool_type": "image features pooled by '{}' instead of the class token",
    "vision_cfg.ls_init_value": "layer scale",
    "vision_cfg.no_ln_pre": "no LayerNorm before the image transformer",
    "text_cfg.vocab_size": "a vocabulary of {} tokens (OpenAI's BPE has 49408)",
}


def _phrase(key: str, value: Any) -> str:
    template = _PHRASES.get(key)
    return template.format(value) if template else f"{key}={value!r}"


def _tower_problems(prefix: str, options: dict, config_class: type, read: set[str],
                    ignored: set[str]) -> list[str]:
    known = {f.name: f for f in dataclasses.fields(config_class)}
    problems = [f"{prefix}.{key} (an option unknown to this open_clip)"
                for key in options if key not in known]
    for name, spec in known.items():
        if name in read or name in ignored or name not in options:
            continue
        allowed = _ALLOWED.get(name, (spec.default,))
        if options[name] not in allowed:
            problems.append(_phrase(f"{prefix}.{name}", options[name]))
    return problems


def shape_problems(model_cfg: dict) -> list[str]:
    """Why an open_clip model config is outside CLIP's shape (empty when it is not)."""
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    problems = [_phrase(key, model_cfg[key]) for key in model_cfg if key not in _TOP_KEYS]
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    problems += _tower_problems("vision_cfg", vision, CLIPVisionCfg, _VISION_READ,
                                _VISION_IGNORED)
    problems += _tower_problems("text_cfg", text, CLIPTextCfg, _TEXT_READ, _TEXT_IGNORED)
    if text.get("vocab_size", OPENAI_VOCAB_SIZE) != OPENAI_VOCAB_SIZE:
        problems.append(_phrase("text_cfg.vocab_size", text["vocab_size"]))
    for key in ("image_size", "patch_size"):
        value = vision.get(key)
        if isinstance(value, (list, tuple)) and len(set(value)) != 1:
            problems.append(f"non-square vision_cfg.{key} {value}")
    return problems


def _square(value: int | list[int] | tuple[int, ...]) -> int:
    return int(value[0]) if isinstance(value, (list, tuple)) else int(value)


def open_clip_architecture(model_cfg: dict, quick_gelu: bool, what: str) -> Architecture:
    """The architecture of an open_clip model config (``what`` names it in errors); configs
    outside CLIP's shape are refused."""
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    from . import siglip

    if siglip.is_siglip_config(model_cfg):
        return siglip.siglip_architecture(model_cfg, what)
    problems = shape_problems(model_cfg)
    if problems:
        raise ValueError(
            f"{what} is not a CLIP this project can run: it has {'; '.join(problems)}. "
            f"{supported_message()}")
    vision = CLIPVisionCfg(**model_cfg["vision_cfg"])
    text = CLIPTextCfg(**model_cfg["text_cfg"])
    resnet = isinstance(vision.layers, (list, tuple))
    pooled = vision.width * 32 if resnet else vision.width
    return Architecture(
        embed_dim=int(model_cfg["embed_dim"]), image_size=_square(vision.image_size),
        vision_layers=tuple(vision.layers) if resnet else int(vision.layers),
        vision_width=vision.width, vision_heads=pooled // vision.head_width,
        patch_size=None if resnet else _square(vision.patch_size),
        context_length=text.context_length, vocab_size=text.vocab_size, text_width=text.width,
        text_heads=text.heads, text_layers=text.layers,
        activation="quick_gelu" if quick_gelu else "gelu",
        vision_mlp_ratio=float(vision.mlp_ratio), text_mlp_ratio=float(text.mlp_ratio))


def _vocabulary(model_cfg: dict, folder: Path | None) -> str:
    """OpenAI's BPE for CLIP's shape; a SigLIP's vocabulary from its config (and its folder's
    tokenizer files, when it has them)."""
    from . import siglip

    if not siglip.is_siglip_config(model_cfg):
        return "openai-bpe"
    return siglip.vocabulary(model_cfg, folder)


def _preprocess(options: dict) -> Preprocess:
    """open_clip's preprocessing defaults (OpenAI's) updated by a tag's or a config's."""
    base = Preprocess()
    return Preprocess(
        mean=tuple(float(v) for v in options.get("mean", base.mean)),
        std=tuple(float(v) for v in options.get("std", base.std)),
        interpolation=options.get("interpolation", base.interpolation),
        resize_mode=options.get("resize_mode", base.resize_mode))


def open_clip_backbone(spec: str, require_tag: bool = True) -> Backbone:
    """The open_clip model ``spec`` = ``MODEL/TAG`` (a model config of
    ``open_clip.list_models()`` and one of its pretrained tags), e.g.
    ``ViT-B-16/laion2b_s34b_b88k``. Without a tag (``require_tag=False``: the architecture of a
    local file) the preprocessing is open_clip's default (OpenAI's)."""
    import open_clip

    model, _, tag = spec.rpartition("/") if "/" in spec else (spec, "", "")
    model_cfg = open_clip.get_model_config(model)
    if model_cfg is None:
        hint = " (open_clip's names have dashes: ViT-B-16, not ViT-B/16)" if "/" in model else ""
        raise ValueError(f"open_clip has no model {model!r}{hint}. {supported_message()}")
    tags = open_clip.list_pretrained_tags_by_model(model)
    if not tag and require_tag:
        raise ValueError(
            f"name the pretrained weights of open_clip model {model!r}: "
            f"{OPEN_CLIP_PREFIX}{model}/<tag> with a tag of {tags or '(none: it has no weights)'}"
            f". For weights in a file, set MODEL.BACKBONE.NAME to the file and "
            f"MODEL.BACKBONE.ARCH to {OPEN_CLIP_PREFIX}{model}")
    pretrained: dict = {}
    if tag:
        pretrained = open_clip.get_pretrained_cfg(model, tag)
        if not pretrained:
            raise ValueError(f"open_clip model {model!r} has no pretrained tag {tag!r}; its tags:"
                             f" {tags}")
    quick_gelu = bool(model_cfg.get("quick_gelu") or pretrained.get("quick_gelu"))
    arch = open_clip_architecture(model_cfg, quick_gelu, f"open_clip model {model!r}")
    clean = tag.lower().replace("-", "_")
    name = f"{OPEN_CLIP_PREFIX}{model}/{clean}" if tag else f"{OPEN_CLIP_PREFIX}{model}"
    return Backbone(name, arch, _preprocess(pretrained), _vocabulary(model_cfg, None),
                    source="open_clip",
                    location=f"{model}/{clean}" if tag else model)


def from_open_clip_json(path: str | Path, name: str, source: str, location: str) -> Backbone:
    """The backbone an open_clip config file describes: an ``open_clip_config.json`` (with
    ``model_cfg`` and ``preprocess_cfg``, as hub repositories and open_clip's local folders have
    it) or a bare model config (open_clip's ``model_configs/*.json``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the open_clip config {path}: {err}") from err
    model_cfg = data.get("model_cfg", data) if isinstance(data, dict) else None
    if not isinstance(model_cfg, dict) or not {"embed_dim", "vision_cfg",
                                               "text_cfg"} <= set(model_cfg):
        raise ValueError(f"{path} is not an open_clip config: it needs embed_dim, vision_cfg and "
                         "text_cfg (at its top or under model_cfg)")
    arch = open_clip_architecture(model_cfg, bool(model_cfg.get("quick_gelu")),
                                  f"the model of {path}")
    return Backbone(name, arch, _preprocess(data.get("preprocess_cfg", {})),
                    _vocabulary(model_cfg, Path(path).parent), source=source,
                    location=location)


def hub_repository_quick_gelu(repo: str) -> bool:
    """Whether open_clip's tag table says that the weights of the hub repository ``repo`` were
    trained with QuickGELU (some repositories' configs leave it out; open_clip's tags say it)."""
    import open_clip

    for model, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(model, tag)
        if cfg.get("quick_gelu") and cfg.get("hf_hub", "").rstrip("/").split("/")[:2] == \
                repo.split("/")[:2]:
            return True
    return False


@lru_cache(maxsize=1)
def supported_open_clip_models() -> tuple[str, ...]:
    """open_clip's model configs in CLIP's shape."""
    import open_clip

    from . import siglip

    def fits(cfg: dict) -> bool:
        if siglip.is_siglip_config(cfg):
            return not siglip.siglip_problems(cfg)
        return not shape_problems(cfg)

    return tuple(m for m in open_clip.list_models() if fits(open_clip.get_model_config(m)))


def supported_message() -> str:
    return (f"Supported: OpenAI's {', '.join(OPENAI)}; {OPEN_CLIP_PREFIX}MODEL/TAG with an "
            f"open_clip model in CLIP's shape or of the SigLIP family "
            f"({', '.join(supported_open_clip_models())}) and "
            f"one of its pretrained tags (open_clip.list_pretrained()); {HF_HUB_PREFIX}ORG/REPO "
            "and local folders whose open_clip_config.json describes such a model; a weight "
            "file (a bare state dict with MODEL.BACKBONE.ARCH naming its architecture)")


# --------------------------------------------------------------------------- identity


def fingerprint(model: nn.Module) -> str:
    """A cheap identity of a model's weights: a SHA-256 over every tensor's name, shape and
    first 16 values rounded to fp16 (so the fp32 and fp16 copies of the same weights agree).
    Two backbones with the same fingerprint hold, in all practice, the same weights."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        values = tensor.detach().flatten()[:16].cpu()
        values = values.to(torch.float16).float() if values.is_floating_point() else values
        digest.update(f"{key}{tuple(tensor.shape)}{values.tolist()}".encode())
    return digest.hexdigest()[:16]
