"""OpenAI's CLIP weights: names, download, cache, and ``load`` as OpenAI's package has it.

Files are cached under ``~/.cache/clip`` with OpenAI's file names, so files fetched by OpenAI's
package or the official prompt-learning repositories are reused. ``CLIP_CACHE_DIR`` overrides
the folder; ``download_root`` overrides both.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import warnings
from collections.abc import Callable
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

from .model import CLIP, build_model, convert_weights
from .tiny import tiny_clip

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

# names built locally, without weights to download
_LOCAL: dict[str, Callable[[], CLIP]] = {"tiny": tiny_clip}

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def available_models() -> list[str]:
    """OpenAI's model names, then the locally built ``tiny``."""
    return [*_MODELS, *_LOCAL]


def default_cache_dir() -> Path:
    """``$CLIP_CACHE_DIR`` if set, else ``~/.cache/clip`` (OpenAI's cache)."""
    return Path(os.environ.get("CLIP_CACHE_DIR") or Path.home() / ".cache" / "clip")


def _convert_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def transform(n_px: int) -> Compose:
    """OpenAI's preprocessing of a PIL image: bicubic resize of the short side, center crop,
    RGB, tensor, CLIP's normalisation."""
    return Compose([
        Resize(n_px, interpolation=InterpolationMode.BICUBIC),
        CenterCrop(n_px),
        _convert_rgb,
        ToTensor(),
        Normalize(MEAN, STD),
    ])


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
        raise RuntimeError(f"{target} exists and is not a regular file; remove it or choose "
                           "another download_root")
    if target.is_file():
        if sha256sum(target) == expected:
            return target
        warnings.warn(f"{target} exists, but its SHA256 checksum does not match; "
                      "downloading the file again", stacklevel=3)
    root.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".download")
    _fetch(url, partial, target)
    actual = sha256sum(partial)
    if actual != expected:
        partial.unlink()
        raise RuntimeError(
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
        raise RuntimeError(
            f"could not download {url} ({err}). Without network access, download the file "
            f"elsewhere and put it at {target} (or set CLIP_CACHE_DIR to the folder that holds "
            "it, or pass its path to clip.load)") from err


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a TorchScript archive (OpenAI's files) or of a ``torch.save``d state
    dict (or a dict holding one under ``state_dict``)."""
    try:
        with warnings.catch_warnings():  # OpenAI's files are TorchScript, deprecated or not
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError as jit_error:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise RuntimeError(
                f"cannot read {path}: it is neither a TorchScript archive ({jit_error}) nor a "
                f"state dict saved with torch.save ({err}). If it was downloaded, it may be "
                "truncated: delete it and download it again") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise RuntimeError(f"{path} holds a {type(state).__name__}, not a CLIP state dict")
    return state


def _resolve(name: str, download_root: str | os.PathLike | None) -> Path:
    if name in _MODELS:
        return download(_MODELS[name], download_root)
    if os.path.isfile(name):
        return Path(name)
    raise RuntimeError(f"model {name!r} not found: give one of {available_models()} or the "
                       "path of a checkpoint file (TorchScript archive or state dict)")


def load(name: str, device: str | torch.device = "cpu", jit: bool = False,
         download_root: str | os.PathLike | None = None) -> tuple[CLIP, Compose]:
    """``(model, preprocess)`` as OpenAI's ``clip.load``: ``name`` is a model name of
    ``available_models()`` or the path of a checkpoint file.

    The model is in eval mode on ``device``: fp32 on a CPU; on CUDA, OpenAI's fp16 weights
    (``convert_weights``). ``jit=True`` (OpenAI's TorchScript module, which has no prompt
    slots) is not supported: the model returned with ``jit=False`` computes the same features.
    """
    if jit:
        raise NotImplementedError(
            "jit=True (OpenAI's TorchScript module) is not supported: it has no prompt slots. "
            "Use jit=False, which returns the same network as a regular module")
    if name in _LOCAL:
        model = _LOCAL[name]()
    else:
        model = build_model(_read_state_dict(_resolve(name, download_root)), copy=False)
    return _place(model, torch.device(device)), transform(model.visual.input_resolution)


def _place(model: CLIP, device: torch.device) -> CLIP:
    model = model.to(device).eval()
    if device.type == "cuda":
        convert_weights(model, torch.float16)
    return model


__all__ = ["available_models", "default_cache_dir", "download", "load", "sha256sum",
           "transform"]
