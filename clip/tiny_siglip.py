"""``tiny-siglip``: a tiny random SigLIP for tests and the demo, built without downloads.

Its shape is SigLIP 2's (attention-pooled image tower with exact GELU, a non-causal text tower
with tanh-GELU pooled at its last position, a text projection with a bias, a learned logit
bias, LayerNorm eps 1e-6, mean and std 0.5 with a squash resize), at CLIP's tiny sizes. Its
vocabulary is a small SentencePiece-style unigram model built in code: common prompt words are
one piece each, any other lower-case word falls back to its letters.
"""

from __future__ import annotations

import math
import string

import torch

from .backbones import Architecture, Backbone, Preprocess
from .siglip import SigLIP, build_siglip

NAME = "tiny-siglip"
CONTEXT_LENGTH = 32
WORDS = ("a", "an", "the", "of", "photo", "picture", "type", "kind", "art", "itap", "x",
         "bad", "good", "large", "small", "dog", "cat", "car", "flower", "food", "pet",
         "aircraft", "texture", "satellite", "centered", "person", "doing", "action")
_SPECIALS = ("<pad>", "</s>", "<unk>")


def _pieces() -> list[tuple[str, float]]:
    """(piece, log-probability): the specials, whole words (likely), single letters and
    digits with and without the word-start mark (unlikely: the fallback)."""
    chars = string.ascii_lowercase + string.digits
    pieces = {s: 0.0 for s in _SPECIALS}
    pieces.update({f"\u2581{w}": -2.0 for w in WORDS})
    for c in chars:
        pieces.setdefault(f"\u2581{c}", -6.0)
        pieces[c] = -7.0
    pieces["\u2581"] = -9.0
    return list(pieces.items())


def tiny_tokenizer():
    """The tiny vocabulary as a ``tokenizers.Tokenizer`` (a unigram model, as SentencePiece's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.Unigram(_pieces(), unk_id=_SPECIALS.index("<unk>")))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    return tokenizer


def tiny_siglip_backbone() -> Backbone:
    arch = Architecture(
        embed_dim=64, image_size=32, vision_layers=2, vision_width=64, vision_heads=2,
        patch_size=8, context_length=CONTEXT_LENGTH, vocab_size=len(_pieces()), text_width=64,
        text_heads=2, text_layers=2, activation="gelu", family="siglip",
        text_activation="gelu_tanh", norm_eps=1e-6)
    preprocess = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize_mode="squash")
    return Backbone(NAME, arch, preprocess, vocabulary=NAME)


def tiny_siglip_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic random weights of ``tiny-siglip`` (normalisation layers and biases made
    non-trivial, so that tests see them; the logit scale and bias of a trained SigLIP)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = SigLIP(tiny_siglip_backbone()).state_dict()
    g = torch.Generator().manual_seed(seed)
    for key, tensor in state.items():
        leaf = key.rsplit(".", 1)[-1]
        norm = ".ln_" in f".{key}" or "ln_final" in key or key.startswith("visual.attn_pool.norm")
        if norm and leaf == "weight":
            state[key] = 1 + 0.1 * torch.randn(tensor.shape, generator=g)
        elif leaf == "bias" and tensor.dim() == 1:
            state[key] = 0.1 * torch.randn(tensor.shape, generator=g)
    state["logit_scale"] = torch.tensor(math.log(100.0))
    state["logit_bias"] = torch.tensor(-12.0)
    return state


def tiny_siglip(seed: int = 0) -> SigLIP:
    """The tiny random SigLIP (fp32, eval mode), the same for the same seed."""
    return build_siglip(tiny_siglip_state_dict(seed), tiny_siglip_backbone(), copy=False)
