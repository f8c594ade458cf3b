"""Tokenizers of CLIP backbones: OpenAI's byte-pair encoding (the vocabulary of every CLIP
checkpoint that ``clip.backbones`` accepts), through open_clip.

A :class:`Tokenizer` belongs to a backbone (``clip_model.tokenizer``): it holds the backbone's
context length and finds each text's end-of-text token by its id. Its only shared part is the BPE
table, which nothing changes after it is built, so two backbones in one process cannot disturb
each other. open_clip ships OpenAI's merges file; importing it takes seconds, so the table is
built on first use, not when ``clip`` is imported.

``tokenize``, ``encode`` and ``decode`` are OpenAI's module functions, kept for its users.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

__all__ = ["VOCABULARIES", "Tokenizer", "_Tokenizer", "decode", "encode", "get_tokenizer",
           "tokenize"]

VOCABULARIES = ("openai-bpe",)  # the vocabularies a backbone may name


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
    """OpenAI's BPE table (built once, never modified)."""
    return _Tokenizer()


class Tokenizer:
    """The tokenizer of one backbone: ``tokenizer(texts)`` gives token ids ``[N,
    context_length]`` (start-of-text, the text's BPE ids, end-of-text, then the padding id 0);
    ``eot_positions(tokens)`` the position of each sequence's end-of-text token.

    Instances are immutable: their settings are fixed at construction.
    """

    def __init__(self, context_length: int = 77, vocabulary: str = "openai-bpe") -> None:
        if vocabulary not in VOCABULARIES:
            raise ValueError(f"unknown vocabulary {vocabulary!r}; supported: {VOCABULARIES}")
        if context_length < 2:
            raise ValueError(f"context_length must hold start and end tokens (>= 2); got "
                             f"{context_length}")
        self._context_length = context_length
        self._vocabulary = vocabulary

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def vocabulary(self) -> str:
        return self._vocabulary

    @property
    def sot_id(self) -> int:
        return get_tokenizer().sot_token

    @property
    def eot_id(self) -> int:
        return get_tokenizer().eot_token

    pad_id = 0

    def __repr__(self) -> str:
        return f"Tokenizer(context_length={self.context_length}, vocabulary={self.vocabulary!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and (self.context_length, self.vocabulary) == (
            other.context_length, other.vocabulary)

    def __hash__(self) -> int:
        return hash((self.context_length, self.vocabulary))

    def __deepcopy__(self, memo: dict) -> Tokenizer:
        return self  # immutable

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens (``len(encode(name))`` is a name's
        length in tokens)."""
        return get_tokenizer().encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return get_tokenizer().decode(ids)

    def __call__(self, texts: str | Sequence[str], truncate: bool = False) -> torch.Tensor:
        """Token ids ``[N, context_length]`` (int64). A text longer than the context raises
        ``RuntimeError``; with ``truncate=True`` it is cut and its last kept token becomes
        end-of-text."""
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("a tokenizer takes a string or a sequence of strings; got "
                            f"{[type(t).__name__ for t in texts]}")
        length = self.context_length
        result = torch.full((len(texts), length), self.pad_id, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > length:
                if not truncate:
                    raise RuntimeError(
                        f"text {text!r} is {len(ids)} tokens long (with start and end tokens), "
                        f"more than the context length {length}: shorten it or pass "
                        "truncate=True")
                ids = ids[:length]
                ids[-1] = self.eot_id
            result[i, :len(ids)] = torch.tensor(ids)
        return result

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """The position of the first end-of-text token of each row of ``tokens`` ``[N, L]``,
        found by its id (``argmax`` finds it only in vocabularies where it has the largest
        id)."""
        is_eot = tokens == self.eot_id
        missing = ~is_eot.any(dim=-1)
        if bool(missing.any()):
            rows = missing.nonzero().flatten().tolist()
            raise ValueError(f"rows {rows[:5]} of the tokens have no end-of-text token (id "
                             f"{self.eot_id}): they were not made by this backbone's tokenizer")
        return is_eot.int().argmax(dim=-1)


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
    and its last kept token becomes end-of-text. A backbone's own tokenizer
    (``clip_model.tokenizer``) knows its context length.
    """
    return Tokenizer(context_length)(texts, truncate)
