"""Write tests/clip/fixtures/open_clip_siglip_reference.pt: open_clip's own features and
logits of full-size SigLIP models (open_clip's constructors and forward passes, deterministic
random weights from ``open_clip_models.weights``), which test_siglip_reference.py compares ours
with.

    python -m tests.clip.make_siglip_reference

Run it again after changing the weight recipe or open_clip's or timm's version.
"""

from __future__ import annotations

import hashlib

import open_clip
import timm
import torch
import torch.nn.functional as F

from tests.clip import open_clip_models as models

SIGLIP_MODELS = {"ViT-B-16-SigLIP": 5, "ViT-B-16-SigLIP2": 6, "ViT-SO400M-14-SigLIP": 7}
SIGLIP_REFERENCE_FILE = models.REFERENCE_FILE.with_name("open_clip_siglip_reference.pt")


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """An identity of a state dict's weights (names, shapes, a few values)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(state.items()):
        values = tensor.detach().flatten()[:8].float().tolist()
        digest.update(f"{key}{tuple(tensor.shape)}{values}".encode())
    return digest.hexdigest()[:16]


def reference_tokens(context: int, vocab: int, pad: int) -> torch.Tensor:
    """Two texts as SigLIP's tokenizers lay them out: pieces, end-of-text (id 1), padding; the
    second fills the context (cut, then closed by end-of-text)."""
    g = torch.Generator().manual_seed(3)
    tokens = torch.full((2, context), pad, dtype=torch.long)
    tokens[0, :6] = torch.randint(2, vocab, (6,), generator=g)
    tokens[0, 6] = 1
    tokens[1] = torch.randint(2, vocab, (context,), generator=g)
    tokens[1, -1] = 1
    return tokens


def reference(name: str) -> dict[str, torch.Tensor]:
    model = models.create(name, SIGLIP_MODELS[name])
    size = model.visual.image_size
    image = models.reference_image(size[0] if isinstance(size, tuple) else size)
    cfg = open_clip.get_model_config(name)["text_cfg"]
    pad = 0 if "SigLIP2" in name else 1
    tokens = reference_tokens(cfg["context_length"], cfg["vocab_size"], pad)
    with torch.no_grad():
        image_features = model.encode_image(image)
        text_features = model.encode_text(tokens)
        logits = (model.logit_scale.exp() * F.normalize(image_features, dim=-1)
                  @ F.normalize(text_features, dim=-1).t() + model.logit_bias)
    digest = weights_digest(models.weights(name, SIGLIP_MODELS[name]))
    return {"weights": digest, "tokens": tokens, "image": image_features.clone(),
            "text": text_features.clone(), "logits": logits.clone()}


def main() -> None:
    data = {"open_clip": str(open_clip.__version__), "timm": str(timm.__version__),
            "torch": str(torch.__version__)}
    for name in SIGLIP_MODELS:
        data[name] = reference(name)
        print(f"{name}: done", flush=True)
    torch.save(data, SIGLIP_REFERENCE_FILE)
    print(f"wrote {SIGLIP_REFERENCE_FILE}")


if __name__ == "__main__":
    main()
