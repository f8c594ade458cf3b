"""OpenAI's byte-pair encoding, the vocabulary of every CLIP checkpoint, through open_clip.

open_clip ships OpenAI's merges file and tokenizer; importing it takes seconds, so it is imported
on first use, not with ``clip``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

__all__ = ["_Tokenizer", "decode", "encode", "get_tokenizer", "tokenize"]


class _Tokenizer:
    """OpenAI's ``SimpleTokenizer``: ``encode(text)`` gives the BPE ids of a text (lower-cased,
    whitespace-cleaned) without start/end tokens; ``decode(ids)`` gives the text back."""

    def __init__(self) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self._bpe = SimpleTokenizer()
        self.encoder: dict[str, int] = self._bpe.encoder
        self.decoder: dict[int, str] = self._bpe.decoder
        self.sot_token: int = self._bpe.sot_token_id
        self.eot_token: int = self._bpe.eot_token_id
        self.vocab_size: int = self._bpe.vocab_size

    def encode(self, text: str) -> list[int]:
        return self._bpe.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._bpe.decode([int(i) for i in ids])


@lru_cache(maxsize=1)
def get_tokenizer() -> _Tokenizer:
    """The process-wide tokenizer (built once)."""
    return _Tokenizer()


def encode(text: str) -> list[int]:
    """BPE ids of ``text`` without start/end tokens (``len(encode(name))`` is a name's length
    in tokens)."""
    return get_tokenizer().encode(text)


def decode(ids: Sequence[int]) -> str:
    return get_tokenizer().decode(ids)


def tokenize(texts: str | Sequence[str], context_length: int = 77,
             truncate: bool = False) -> torch.Tensor:
    """Token ids ``[N, context_length]`` (int64) as OpenAI's ``clip.tokenize``: start-of-text,
    the text's BPE ids, end-of-text, then zeros.

    A text longer than the context raises ``RuntimeError``; with ``truncate=True`` it is cut
    and its last kept token becomes end-of-text.
    """
    if isinstance(texts, str):
        texts = [texts]
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("tokenize takes a string or a sequence of strings; got "
                        f"{[type(t).__name__ for t in texts]}")
    if context_length < 2:
        raise ValueError(f"context_length must hold start and end tokens (>= 2); got "
                         f"{context_length}")
    tok = get_tokenizer()
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [tok.sot_token, *tok.encode(text), tok.eot_token]
        if len(ids) > context_length:
            if not truncate:
                raise RuntimeError(
                    f"text {text!r} is {len(ids)} tokens long (with start and end tokens), "
                    f"more than the context length {context_length}: shorten it or pass "
                    "truncate=True")
            ids = ids[:context_length]
            ids[-1] = tok.eot_token
        result[i, :len(ids)] = torch.tensor(ids)
    return result
