"""Backbones by name: description, weights (download, cache, local files) and ``load``.

``MODEL.BACKBONE.NAME`` (``clip.load``'s ``name``) is one of:

* an OpenAI name (``ViT-B/16``, ``RN50``, ... :func:`available_models`): OpenAI's file, cached
  under ``~/.cache/clip`` with OpenAI's file names, so files fetched by OpenAI's package or the
  official prompt-learning repositories are reused (``CLIP_CACHE_DIR`` overrides the folder,
  ``download_root`` both);
* ``open_clip:MODEL/TAG`` (``open_clip:ViT-B-16/laion2b_s34b_b88k``): open_clip's model config
  and pretrained tag; the file comes through open_clip's own download functions and caches (the
  Hugging Face cache, or ``~/.cache/clip`` for URLs; ``download_root`` overrides both);
* ``hf-hub:ORG/REPO``: a Hugging Face repository holding an ``open_clip_config.json`` and the
  weights, as open_clip reads it;
* a local folder with an ``open_clip_config.json`` and a weight file (open_clip's
  ``local-dir:`` layout; the prefix is accepted);
* a weight file: OpenAI's TorchScript archives describe themselves; a bare state dict does not,
  so ``arch`` (MODEL.BACKBONE.ARCH) must name its architecture: an OpenAI name,
  ``open_clip:MODEL`` or ``open_clip:MODEL/TAG`` (the tag brings the weights' preprocessing and
  activation), ``tiny``..., or the path of an open_clip config JSON;
* ``tiny``, ``tiny-gelu``, ``tiny-resnet``: tiny random CLIPs built in code (tests);
  ``tiny-siglip``: a tiny random SigLIP (clip/tiny_siglip.py); ``tiny-demo``: ``tiny``
  pre-trained on colours, its weights shipped beside the code (clip/tiny_demo.py; the demos).

open_clip's SigLIP and SigLIP 2 models (``open_clip:ViT-B-16-SigLIP/webli``, their ``hf-hub:``
repositories, local folders) load as :class:`clip.siglip.SigLIP`, their tokenizer read from the
tokenizer files of their folder or of the repository their config names.

Weights load strictly into the architecture their description gives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import logging
import os
import urllib.error
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Normalize,
    Resize,
    ToTensor,
)

from . import tiny, tiny_demo, tiny_siglip
from .backbones import (
    HF_HUB_PREFIX,
    OPEN_CLIP_PREFIX,
    OPENAI,
    OPENAI_MEAN,
    OPENAI_STD,
    Backbone,
    Preprocess,
    from_open_clip_json,
    hub_repository_quick_gelu,
    open_clip_backbone,
    openai_architecture,
    openai_backbone,
    supported_message,
)
from .errors import WeightsError
from .model import CLIP, build_model, convert_weights
from .siglip import build_siglip
from .torchscript import is_torchscript, read_archive

logger = logging.getLogger(__name__)

_BASE = "https://openaipublic.azureedge.net/clip/models"
# name -> URL; the SHA256 of each file is the URL's second-to-last path component
_MODELS: dict[str, str] = {
    "RN50": f"{_BASE}/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    "RN101": f"{_BASE}/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
    "RN50x4": f"{_BASE}/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/"
              "RN50x4.pt",
    "RN50x16": f"{_BASE}/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/"
               "RN50x16.pt",
    "RN50x64": f"{_BASE}/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/"
               "RN50x64.pt",
    "ViT-B/32": f"{_BASE}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/"
                "ViT-B-32.pt",
    "ViT-B/16": f"{_BASE}/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/"
                "ViT-B-16.pt",
    "ViT-L/14": f"{_BASE}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/"
                "ViT-L-14.pt",
    "ViT-L/14@336px": f"{_BASE}/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
                      "/ViT-L-14-336px.pt",
}

MEAN, STD = OPENAI_MEAN, OPENAI_STD
HUB_CONFIG = "open_clip_config.json"
# the weight files of an open_clip folder, in open_clip's order of preference
_FOLDER_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                   "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth",
                   "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
_INTERPOLATIONS = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
                   "nearest": InterpolationMode.NEAREST}

StateDict = dict[str, torch.Tensor]


def available_models() -> list[str]:
    """OpenAI's model names, then the tiny models built in code. open_clip's models are named
    ``open_clip:MODEL/TAG`` (``open_clip.list_pretrained()``)."""
    return [*_MODELS, *tiny.NAMES, tiny_siglip.NAME, tiny_demo.NAME]


def default_cache_dir() -> Path:
    """``$CLIP_CACHE_DIR`` if set, else ``~/.cache/clip`` (OpenAI's cache)."""
    return Path(os.environ.get("CLIP_CACHE_DIR") or Path.home() / ".cache" / "clip")


def _convert_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def transform(n_px: int, preprocess: Preprocess | None = None) -> Compose:
    """The preprocessing of a PIL image that a backbone's weights were trained with (OpenAI's
    by default: bicubic resize of the short side, center crop, RGB, tensor, CLIP's
    normalisation); ``squash`` resizes both sides instead."""
    p = preprocess or Preprocess()
    interpolation = _INTERPOLATIONS[p.interpolation]
    resize = [Resize((n_px, n_px), interpolation=interpolation)] if p.resize_mode == "squash" \
        else [Resize(n_px, interpolation=interpolation), CenterCrop(n_px)]
    return Compose([*resize, _convert_rgb, ToTensor(), Normalize(p.mean, p.std)])


# --------------------------------------------------------------------------- OpenAI's files


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, root: str | os.PathLike | None = None) -> Path:
    """The cached file of ``url`` (downloaded if absent or if its SHA256 does not match)."""
    root = Path(root) if root is not None else default_cache_dir()
    expected = url.split("/")[-2]
    target = root / url.split("/")[-1]
    if target.exists() and not target.is_file():
        raise WeightsError(f"{target} exists and is not a regular file; remove it or choose "
                           "another download_root")
    if target.is_file():
        if sha256sum(target) == expected:
            return target
        warnings.warn(f"{target} exists, but its SHA256 checksum does not match; "
                      "downloading the file again", stacklevel=3)
    root.mkdir(parents=True, exist_ok=True)
    # a name of this download's own: runs that start together (a sweep's first jobs) each
    # download, and the last complete file to arrive takes the target's name
    partial = target.with_name(f"{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.download")
    _fetch(url, partial, target)
    actual = sha256sum(partial)
    if actual != expected:
        partial.unlink()
        raise WeightsError(
            f"the file downloaded from {url} is corrupt or truncated (SHA256 {actual}, expected "
            f"{expected}); it was deleted. Run again to retry, or download the file yourself, "
            f"check its SHA256 and put it at {target}")
    os.replace(partial, target)
    return target


def _fetch(url: str, partial: Path, target: Path) -> None:
    logger.info("downloading %s to %s", url, target)
    try:
        torch.hub.download_url_to_file(url, str(partial), progress=True)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        partial.unlink(missing_ok=True)
        raise WeightsError(
            f"could not download {url} ({_first_line(err)}). Without network access, download "
            f"the file elsewhere and put it at {target} (or set CLIP_CACHE_DIR to the folder "
            "that holds it, or pass its path to clip.load)") from err


# --------------------------------------------------------------------------- reading files


def _read_torch(path: Path) -> tuple[StateDict, dict[str, str] | None]:
    """(state dict, the class of each module) of a TorchScript archive (OpenAI's files, read
    as data by :mod:`clip.torchscript`: its code never runs), or (state dict, None) of a
    ``torch.save``d state dict (or a dict holding one under ``state_dict``)."""
    if is_torchscript(path):
        archive = read_archive(path)
        return archive.state_dict, archive.modules
    try:
        state = _torch_load(path)
    except Exception as err:
        raise WeightsError(
            f"cannot read {path}: it is neither a TorchScript archive nor a state dict saved "
            f"with torch.save ({_first_line(err)}). If it "
            "was downloaded, it may be truncated: delete it and download it again") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a CLIP state dict")
    return state, None


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:400]


def _torch_load(path: Path) -> object:
    """``torch.load`` with ``weights_only``, memory-mapped (a large file is not copied into
    memory: the frozen weights are read from the page cache) unless the file predates the zip
    format."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _read_file(path: Path) -> tuple[StateDict, dict[str, str] | None]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), None
        except Exception as err:
            raise WeightsError(f"cannot read {path} as safetensors ({_first_line(err)}); if it was "
                               "downloaded, it may be truncated: delete it and download it "
                               "again") from err
    state, archive = _read_torch(path)
    return open_clip_keys(state), archive


def open_clip_keys(state: StateDict) -> StateDict:
    """An open_clip state dict in OpenAI's key layout (the layout of open_clip's CLIP class):
    without the ``module.`` prefix of distributed training, the text tower of open_clip's
    custom-text layout (``text.``) at the top, a scalar ``logit_scale`` and no causal-mask
    buffer (it holds no weights)."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("text.transformer.") for k in state):
        state = {k[len("text."):] if k.startswith("text.") else k: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k != "attn_mask"}
    if "logit_scale" in state and state["logit_scale"].dim() == 1:
        state["logit_scale"] = state["logit_scale"].reshape(())
    return state


def _archive_activation(modules: dict[str, str], path: Path) -> str:
    """The activation of a TorchScript archive's MLPs, read from the archive's module classes
    (OpenAI's rule, QuickGELU, if it does not say)."""
    for name, kind in modules.items():
        if name.endswith("mlp.gelu"):
            known = {"QuickGELU": "quick_gelu", "GELU": "gelu"}
            if kind not in known:
                raise ValueError(f"cannot tell the activation of {path}: its MLP activation is "
                                 f"a {kind!r}; name its architecture with MODEL.BACKBONE.ARCH")
            return known[kind]
    return "quick_gelu"


# --------------------------------------------------------------------------- open_clip's files


def _open_clip_weights(backbone: Backbone, root: str | os.PathLike | None) -> Path:
    """The file of an open_clip tag, through open_clip's download functions and caches."""
    import open_clip
    from open_clip.pretrained import download_pretrained

    model, tag = backbone.location.split("/")
    cfg = open_clip.get_pretrained_cfg(model, tag)
    try:
        return Path(download_pretrained(cfg, cache_dir=_cache_arg(root)))
    except Exception as err:
        raise WeightsError(f"could not get the weights of {backbone.name} ({_first_line(err)}). "
                           f"{_offline_advice(cfg, backbone.name, root)}") from err


def _cache_arg(root: str | os.PathLike | None) -> str | None:
    return None if root is None else str(root)


def _hub_cache(root: str | os.PathLike | None) -> str:
    if root is not None:
        return str(root)
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _offline_advice(cfg: dict, name: str, root: str | os.PathLike | None) -> str:
    from open_clip.constants import HF_WEIGHTS_NAME
    from open_clip.pretrained import has_hf_hub

    if cfg.get("hf_hub") and has_hf_hub():
        repo, filename = os.path.split(cfg["hf_hub"])  # 'org/repo/' or 'org/repo/file'
        return _hub_advice(repo, filename or HF_WEIGHTS_NAME, root, name)
    url = cfg["url"]
    target = Path(root or Path.home() / ".cache" / "clip") / os.path.basename(url)
    return (f"Without network access, download {url} elsewhere and put it at {target}, or set "
            f"MODEL.BACKBONE.NAME to its path and MODEL.BACKBONE.ARCH to {name}")


def _hub_advice(repo: str, filename: str, root: str | os.PathLike | None, arch: str) -> str:
    return (f"The file is {filename} of the Hugging Face repository {repo} "
            f"(https://huggingface.co/{repo}/resolve/main/{filename}). Without network access, "
            f"download it elsewhere and either set MODEL.BACKBONE.NAME to its path and "
            f"MODEL.BACKBONE.ARCH to {arch}, or copy the folder models--{repo.replace('/', '--')}"
            f" of a Hugging Face cache that holds it into {_hub_cache(root)}")


def _hub_file(repo: str, filename: str | None, root: str | os.PathLike | None) -> Path:
    from open_clip.constants import HF_WEIGHTS_NAME
    from open_clip.pretrained import download_pretrained_from_hf

    try:
        return Path(download_pretrained_from_hf(repo, filename=filename,
                                                cache_dir=_cache_arg(root)))
    except Exception as err:
        arch = f"{HF_HUB_PREFIX}{repo}" if filename is None else "the open_clip model it holds"
        raise WeightsError(f"could not get {filename or HF_WEIGHTS_NAME} of {HF_HUB_PREFIX}"
                           f"{repo} ({_first_line(err)}). "
                           f"{_hub_advice(repo, filename or HF_WEIGHTS_NAME, root, arch)}"
                           ) from err


def _folder_weights(folder: Path) -> Path:
    for name in _FOLDER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has an {HUB_CONFIG} but no weight file; put the weights "
                            f"there under one of the names {list(_FOLDER_WEIGHTS)}")


# --------------------------------------------------------------------------- names


@dataclass
class _Source:
    """A backbone's description and how to get its state dict (None: built in code)."""

    backbone: Backbone
    weights: Callable[[], StateDict] | None = None


def _read_weights(path: Callable[[], Path]) -> Callable[[], StateDict]:
    return lambda: _read_file(path())[0]


def _describe_arch(arch: str) -> Backbone:
    """The description an ``arch`` (MODEL.BACKBONE.ARCH) names."""
    if arch in OPENAI:
        return openai_backbone(arch)
    if arch in tiny.NAMES:
        return tiny.tiny_backbone(*tiny.NAMES[arch])
    if arch == tiny_siglip.NAME:
        return tiny_siglip.tiny_siglip_backbone()
    if arch == tiny_demo.NAME:
        return tiny_demo.tiny_demo_backbone()
    if arch.startswith(OPEN_CLIP_PREFIX):
        return open_clip_backbone(arch[len(OPEN_CLIP_PREFIX):], require_tag=False)
    if arch.endswith(".json") and os.path.isfile(arch):
        return from_open_clip_json(arch, arch, "file", arch)
    raise ValueError(
        f"MODEL.BACKBONE.ARCH {arch!r} names no architecture: give an OpenAI name "
        f"({', '.join(OPENAI)}), {OPEN_CLIP_PREFIX}MODEL or {OPEN_CLIP_PREFIX}MODEL/TAG "
        "(open_clip.list_models(), open_clip.list_pretrained()), a tiny model "
        f"({', '.join([*tiny.NAMES, tiny_demo.NAME])}) or the path of an open_clip config JSON")


def _file_source(path: Path, arch: str | None) -> _Source:
    if arch:
        described = _describe_arch(arch)
        backbone = dataclasses.replace(described, name=f"{path} as {described.name}",
                                       source="file", location=str(path))
        return _Source(backbone, _read_weights(lambda: path))
    state, archive = _read_file(path)
    if archive is None:
        raise ValueError(
            f"{path} holds a bare state dict: its architecture (activation, attention heads, "
            "preprocessing) cannot be read from it. Name it with MODEL.BACKBONE.ARCH "
            "(clip.load(..., arch=...)): an OpenAI name such as ViT-B/16 (OpenAI's weights), "
            f"{OPEN_CLIP_PREFIX}MODEL/TAG for open_clip weights (e.g. {OPEN_CLIP_PREFIX}"
            "ViT-B-16/laion2b_s34b_b88k), or the path of an open_clip config JSON")
    sd = {k: v for k, v in state.items()
          if k not in ("input_resolution", "context_length", "vocab_size")}
    backbone = Backbone(str(path), openai_architecture(sd, _archive_activation(archive, path)),
                        Preprocess(), source="file", location=str(path))
    return _Source(backbone, lambda: state)


def _folder_source(folder: Path, name: str) -> _Source:
    if not (folder / HUB_CONFIG).is_file():
        raise FileNotFoundError(f"{folder} is a folder without an {HUB_CONFIG}: give the path of "
                                "a weight file, or a folder holding an open_clip config and its "
                                "weights")
    backbone = from_open_clip_json(folder / HUB_CONFIG, name, "local-dir", str(folder))
    return _Source(backbone, _read_weights(lambda: _folder_weights(folder)))


def _hub_source(repo: str, root: str | os.PathLike | None) -> _Source:
    backbone = from_open_clip_json(_hub_file(repo, HUB_CONFIG, root), f"{HF_HUB_PREFIX}{repo}",
                                   "hf-hub", repo)
    if backbone.arch.activation == "gelu" and hub_repository_quick_gelu(repo):
        logger.info("%s: open_clip's tags say QuickGELU for these weights", backbone.name)
        backbone = dataclasses.replace(backbone, arch=dataclasses.replace(
            backbone.arch, activation="quick_gelu"))
    return _Source(backbone, _read_weights(lambda: _hub_file(repo, None, root)))


def _source(name: str, arch: str | None, root: str | os.PathLike | None) -> _Source:
    local = name.removeprefix("local-dir:")
    if arch and not os.path.isfile(local):
        raise ValueError(f"MODEL.BACKBONE.ARCH ({arch!r}) names the architecture of a weight "
                         f"file; {name!r} is not a file, and describes itself: leave ARCH empty")
    if name in _MODELS:
        backbone = openai_backbone(name)
        return _Source(backbone, _read_weights(lambda: download(_MODELS[name], root)))
    if name in tiny.NAMES:
        return _Source(tiny.tiny_backbone(*tiny.NAMES[name]))
    if name == tiny_siglip.NAME:
        return _Source(tiny_siglip.tiny_siglip_backbone())
    if name == tiny_demo.NAME:
        return _Source(tiny_demo.tiny_demo_backbone(), tiny_demo.read_state_dict)
    if name.startswith(OPEN_CLIP_PREFIX):
        backbone = open_clip_backbone(name[len(OPEN_CLIP_PREFIX):])
        return _Source(backbone, _read_weights(lambda: _open_clip_weights(backbone, root)))
    if name.startswith(HF_HUB_PREFIX):
        return _hub_source(name[len(HF_HUB_PREFIX):].strip("/"), root)
    if os.path.isdir(local):
        return _folder_source(Path(local), name)
    if os.path.isfile(local):
        return _file_source(Path(local), arch)
    raise WeightsError(f"backbone {name!r} not found. {supported_message()}")


def describe(name: str, arch: str | None = None,
             download_root: str | os.PathLike | None = None) -> Backbone:
    """The description of the backbone ``name`` (``arch``: the architecture of a bare state
    dict file). Reads an ``hf-hub:`` repository's config and an archive's state dict, but
    downloads no weights."""
    return _source(name, arch, download_root).backbone


def load(name: str, device: str | torch.device = "cpu", jit: bool = False,
         download_root: str | os.PathLike | None = None,
         arch: str | None = None) -> tuple[CLIP, Compose]:
    """``(model, preprocess)`` as OpenAI's ``clip.load``: ``name`` as the module docstring
    says; ``arch`` names the architecture of a bare state dict file (MODEL.BACKBONE.ARCH).

    The model is in eval mode on ``device``: fp32 on a CPU; on CUDA, OpenAI's fp16 weights
    (``convert_weights``). ``model.backbone`` is its description, ``model.tokenizer`` its
    tokenizer. ``jit=True`` (OpenAI's TorchScript module, which has no prompt slots) is not
    supported: the model returned with ``jit=False`` computes the same features.
    """
    if jit:
        raise NotImplementedError(
            "jit=True (OpenAI's TorchScript module) is not supported: it has no prompt slots. "
            "Use jit=False, which returns the same network as a regular module")
    source = _source(name, arch, download_root)
    backbone = source.backbone
    if source.weights is None and backbone.name == tiny_siglip.NAME:
        model: CLIP = tiny_siglip.tiny_siglip()
    elif source.weights is None:
        vision, activation = tiny.NAMES[backbone.name]
        model = tiny.tiny_clip(vision=vision, activation=activation)
    elif backbone.arch.family == "siglip":
        model = build_siglip(source.weights(), backbone, copy=False,
                             cache_dir=_cache_arg(download_root))
    else:
        model = build_model(source.weights(), copy=False, backbone=backbone)
    logger.info("Backbone %s", backbone.describe())
    return _place(model, torch.device(device)), transform(backbone.arch.image_size,
                                                          backbone.preprocess)


def _place(model: CLIP, device: torch.device) -> CLIP:
    model = model.to(device).eval()
    if device.type == "cuda":
        convert_weights(model, torch.float16)
    return model


__all__ = ["available_models", "default_cache_dir", "describe", "download", "load",
           "open_clip_keys", "sha256sum", "transform"]
