"""open_clip models with deterministic random weights, and a Hugging Face cache to put them in.

The weights of a full-size model are drawn without open_clip's slow initialisation: its state
dict's shapes come from open_clip's constructor on the meta device, and every tensor is filled
from one shared pool of normal draws (scaled like an initialisation, normalisation layers
perturbed). They reach our loader the way a user's downloaded weights do: through open_clip's
download functions, from a Hugging Face cache folder, offline.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import torch
from torch import nn

POOL = 1 << 22
# the full-size reference models: open_clip name -> seed of their weights
REFERENCE_MODELS = {"ViT-B-32": 1, "ViT-B-16": 2, "ViT-B-16-quickgelu": 2, "ViT-L-14": 3,
                    "RN50": 4}
REFERENCE_TEXTS = ["a photo of a dog.", "a bad photo of an aircraft carrier."]
REFERENCE_FILE = Path(__file__).parent / "fixtures" / "open_clip_reference.pt"


def reference_image(size: int) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))


@contextlib.contextmanager
def no_init() -> Iterator[None]:
    """Construct modules without running ``torch.nn.init`` (their tensors are filled after)."""
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(mock.patch.object(nn.init, name, lambda t, *a, **k: t))
        yield


def _std(key: str, shape: torch.Size) -> float:
    if key.endswith("bias") or key.endswith("running_mean"):
        return 0.1 if ("ln" in key or "bn" in key or "downsample.1" in key) else 0.02
    if key in ("positional_embedding", "token_embedding.weight"):
        return 0.02
    if key.endswith("class_embedding") or key.endswith("positional_embedding"):
        return shape[-1] ** -0.5
    if key in ("visual.proj", "text_projection"):
        return shape[0] ** -0.5
    return math.prod(shape[1:]) ** -0.5


def _draw(tensor: torch.Tensor, pool: torch.Tensor, start: int, scale: float) -> None:
    """Write ``scale`` times the pool's values from ``start`` into ``tensor`` (one pass),
    cycling through the pool."""
    flat = tensor.view(-1)
    done = 0
    while done < flat.numel():
        count = min(flat.numel() - done, pool.numel() - start)
        torch.mul(pool[start:start + count], scale, out=flat[done:done + count])
        done, start = done + count, 0


def fill(state: dict[str, torch.Tensor], seed: int) -> None:
    """Deterministic values for the tensors of ``state`` (in place)."""
    pool = torch.randn(POOL, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for i, (key, tensor) in enumerate(sorted(state.items())):
            if not tensor.is_floating_point():  # BatchNorm's step counts
                tensor.zero_()
                continue
            leaf = key.rsplit(".", 1)[-1]
            is_norm = ".ln_" in f".{key}" or "bn" in key or "downsample.1" in key
            start = (i * 104729) % POOL
            if key == "logit_scale":
                tensor.fill_(math.log(100.0))
            elif is_norm and leaf == "weight":
                _draw(tensor, pool, start, 0.1)
                tensor.add_(1)
            elif leaf == "running_var":
                _draw(tensor, pool, start, 0.2)
                tensor.abs_().add_(1)
            else:
                _draw(tensor, pool, start, _std(key, tensor.shape))


def weights(name: str, seed: int) -> dict[str, torch.Tensor]:
    """The deterministic state dict of open_clip's model ``name`` (keys and shapes from
    open_clip's constructor, run on the meta device), in fp16 as OpenAI's own files hold their
    weights: half the bytes to write and read; the models compute in fp32 either way."""
    import open_clip

    with torch.device("meta"):
        shapes = open_clip.create_model(name, pretrained=None, device="meta").state_dict()
    state = {k: torch.empty(v.shape, dtype=v.dtype) for k, v in shapes.items()}
    fill(state, seed)  # writes every element
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def create(name: str, seed: int) -> nn.Module:
    """open_clip's model ``name`` (its own constructor) holding ``weights(name, seed)``."""
    import open_clip

    with no_init():
        model = open_clip.create_model(name, pretrained=None)
    model.load_state_dict(weights(name, seed), strict=True)
    return model.eval().requires_grad_(False)


def assert_fp32_close(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """Equal up to fp32 rounding: every element within 2e-5 of the largest magnitude (the same
    sums over a few dozen blocks in another operation order)."""
    torch.testing.assert_close(ours, reference, rtol=0, atol=2e-5 * reference.abs().max().item())


def put_in_hub_cache(cache: Path, repo: str, files: dict[str, bytes | dict]) -> Path:
    """Write ``files`` (bytes, or a dict of tensors saved as safetensors or, for a ``.bin``
    name, with torch.save) as the main revision of the Hugging Face repository ``repo`` in the
    cache folder ``cache``; returns their folder."""
    from safetensors.torch import save_file

    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    for filename, content in files.items():
        if isinstance(content, dict) and filename.endswith(".bin"):
            torch.save(content, snapshot / filename)
        elif isinstance(content, dict):
            save_file({k: v.contiguous() for k, v in content.items()}, str(snapshot / filename))
        else:
            (snapshot / filename).write_bytes(content)
    return snapshot


def hub_config(model_cfg: dict, preprocess_cfg: dict | None = None) -> bytes:
    """An ``open_clip_config.json`` as open_clip writes it to a hub repository."""
    return json.dumps({"model_cfg": model_cfg,
                       "preprocess_cfg": preprocess_cfg or {}}).encode()


# a tiny open_clip model in CLIP's shape with GELU, heads of 32 channels (not OpenAI's 64) and
# towers of different widths and depths, trained (as it were) with mean and std 0.5
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 128, "head_width": 32,
                   "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                 "layers": 3},
}
TINY_PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def tiny_open_clip_folder(folder: Path, seed: int = 0) -> nn.Module:
    """Write open_clip's tiny model (``TINY_CONFIG``) as an open_clip folder (config and
    weights, the layout of a hub repository); returns the model."""
    import open_clip
    from safetensors.torch import save_file

    model = open_clip.model.CLIP(**TINY_CONFIG)
    fill(model.state_dict(), seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_bytes(hub_config(TINY_CONFIG, TINY_PREPROCESS))
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    return model.eval().requires_grad_(False)
