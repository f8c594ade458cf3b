"""``tiny-demo``: the tiny CLIP of ``tiny`` pre-trained on colours, for the demos.

The random ``tiny`` CLIP knows no words, so hand-written prompts, zero-shot CLIP and the
methods that lean on the frozen model (terms that keep the prompted model near it, a frozen
teacher to distil from) have nothing to start from. ``tiny-demo`` is the same architecture
after a short contrastive pre-training on synthetic colour images captioned "a photo of a red."
and the like
(``python -m tools.demo_clip`` trains it, deterministically, on a CPU in seconds). Its
zero-shot accuracy on the Demo dataset is well above chance but leaves prompt learning room
to improve it.

The file (``tiny_demo.safetensors`` beside this module, about 0.5 MB) stores only what the
pre-training changed from ``tiny``'s seeded initialisation: every tensor but the token
embedding, and the token-embedding rows of the words it saw, in fp16. The loaded model is fp32.
A SHA-256 of the stored tensors, kept in the file's metadata, catches a damaged file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .backbones import Backbone
from .errors import WeightsError
from .model import CLIP, build_model
from .tiny import tiny_backbone, tiny_state_dict

NAME = "tiny-demo"
WEIGHTS = Path(__file__).with_name("tiny_demo.safetensors")
BASE_SEED = 0  # the seed of the ``tiny`` initialisation the pre-training starts from
FORMAT = "tiny-demo/1"
ROWS, VALUES = "token_embedding.rows", "token_embedding.values"
TOKEN_EMBEDDING = "token_embedding.weight"
REGENERATE = "python -m tools.demo_clip"


def tiny_demo_backbone(path: str | os.PathLike | None = None) -> Backbone:
    """The description of ``tiny-demo``: ``tiny``'s architecture, its weights from ``path``
    (the shipped file by default)."""
    base = tiny_backbone("vit", "quick_gelu")
    return Backbone(NAME, base.arch, base.preprocess, source="local",
                    location=str(path or WEIGHTS))


def payload_digest(tensors: dict[str, torch.Tensor]) -> str:
    """The SHA-256 of tensors: names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def changes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What ``state`` (a trained tiny state dict) changed from ``tiny``'s initialisation, in
    the file's layout: every tensor but the token embedding in fp16, and the token-embedding
    rows that differ (their indices and fp16 values)."""
    initial = tiny_state_dict(BASE_SEED)
    if set(state) != set(initial):
        raise ValueError(f"not a tiny CLIP state dict: keys differ from {NAME}'s "
                         f"({sorted(set(state) ^ set(initial))[:3]}...)")
    stored = {k: v.detach().to(torch.float16).contiguous() for k, v in state.items()
              if k != TOKEN_EMBEDDING}
    embedding = state[TOKEN_EMBEDDING].detach().float()
    rows = (embedding != initial[TOKEN_EMBEDDING]).any(dim=1).nonzero().flatten()
    stored[ROWS] = rows.to(torch.int64)
    stored[VALUES] = embedding[rows].to(torch.float16).contiguous()
    return stored


def write(state: dict[str, torch.Tensor], path: str | os.PathLike = WEIGHTS) -> Path:
    """Write the changes of ``state`` (see :func:`changes`) to ``path`` atomically."""
    from safetensors.torch import save_file

    stored = changes(state)
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    save_file(stored, str(temporary),
              metadata={"format": FORMAT, "sha256": payload_digest(stored)})
    os.replace(temporary, path)
    return path


def read_state_dict(path: str | os.PathLike = WEIGHTS) -> dict[str, torch.Tensor]:
    """The full fp32 state dict of ``tiny-demo`` from ``path``; a missing or damaged file is
    a :class:`WeightsError` that says how to regenerate it."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{NAME}'s weights {path} are missing: regenerate them with "
                           f"`{REGENERATE}` (or restore the file from the repository)")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            stored = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"{NAME}'s weights {path} cannot be read ({type(error).__name__}): "
                           f"the file is damaged; regenerate it with `{REGENERATE}`") from None
    if metadata.get("format") != FORMAT or metadata.get("sha256") != payload_digest(stored):
        raise WeightsError(f"{NAME}'s weights {path} are damaged (their checksum does not "
                           f"match); regenerate them with `{REGENERATE}`")
    state = tiny_state_dict(BASE_SEED)
    rows, values = stored.pop(ROWS), stored.pop(VALUES)
    if set(stored) != set(state) - {TOKEN_EMBEDDING}:
        raise WeightsError(f"{path} does not hold {NAME}'s tensors; regenerate it with "
                           f"`{REGENERATE}`")
    for key, value in stored.items():
        state[key] = value.float()
    state[TOKEN_EMBEDDING][rows] = values.float()
    return state


def tiny_demo_clip(path: str | os.PathLike | None = None) -> CLIP:
    """``tiny-demo`` (fp32, eval mode), from ``path`` (the shipped file by default)."""
    state = read_state_dict(path or WEIGHTS)
    return build_model(state, copy=False, backbone=tiny_demo_backbone(path)).eval()
