"""CLIP with prompt slots: OpenAI's towers, any backbone of CLIP's shape, prompts as arguments.

``clip.load``, ``clip.tokenize`` and ``clip.available_models`` behave as in OpenAI's package;
``clip.load`` also takes open_clip's models (``open_clip:MODEL/TAG``, ``hf-hub:ORG/REPO``) and
local files. Every loaded model carries its description (``model.backbone``, clip/backbones.py)
and its tokenizer (``model.tokenizer``).
"""

from .backbones import Architecture, Backbone, Preprocess, fingerprint, supported_message
from .load import available_models, default_cache_dir, describe, load, transform
from .model import (
    CLIP,
    ModifiedResNet,
    Transformer,
    VisionTransformer,
    build_model,
    convert_weights,
    write_slot,
)
from .tiny import tiny_backbone, tiny_clip, tiny_state_dict
from .tokenizer import Tokenizer, _Tokenizer, decode, encode, get_tokenizer, tokenize

__all__ = [
    "CLIP", "Architecture", "Backbone", "ModifiedResNet", "Preprocess", "Tokenizer",
    "Transformer", "VisionTransformer", "_Tokenizer", "available_models", "build_model",
    "convert_weights", "decode", "default_cache_dir", "describe", "encode", "fingerprint",
    "get_tokenizer", "load", "supported_message", "tiny_backbone", "tiny_clip",
    "tiny_state_dict", "tokenize", "transform", "write_slot",
]
