"""CLIP with prompt slots: OpenAI's towers and weights, prompts as arguments.

``clip.load``, ``clip.tokenize`` and ``clip.available_models`` behave as in OpenAI's package.
"""

from .load import available_models, default_cache_dir, load, transform
from .model import (
    CLIP,
    ModifiedResNet,
    Transformer,
    VisionTransformer,
    build_model,
    convert_weights,
    write_slot,
)
from .tiny import tiny_clip, tiny_state_dict
from .tokenizer import _Tokenizer, decode, encode, get_tokenizer, tokenize

__all__ = [
    "CLIP", "ModifiedResNet", "Transformer", "VisionTransformer", "_Tokenizer",
    "available_models", "build_model", "convert_weights", "decode", "default_cache_dir",
    "encode", "get_tokenizer", "load", "tiny_clip", "tiny_state_dict", "tokenize", "transform",
    "write_slot",
]
