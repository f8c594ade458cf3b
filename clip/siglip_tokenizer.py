"""SigLIP's tokenizers: SentencePiece vocabularies (T5's English one for SigLIP, Gemma's for
SigLIP 2) read from their files with Hugging Face's ``tokenizers`` (``tokenizer.json``) or
``sentencepiece`` (``spiece.model`` / ``tokenizer.model``).

The rule is open_clip's (and big_vision's): a text is cleaned (HTML entities and mojibake
fixed, underscores to spaces, punctuation removed, lower case, whitespace collapsed), encoded
without special tokens, cut to ``context_length - 1`` pieces, closed by the end-of-text token
and padded with the padding id to ``context_length``. SigLIP's vocabulary pads with its
end-of-text token ``</s>``, Gemma's with ``<pad>``; a folder's ``special_tokens_map.json`` or
``tokenizer_config.json`` overrides both.

The token ids have ``1 + context_length`` positions: position 0 is a placeholder (the padding
id) where CLIP's texts have their start-of-text token, so that prompt slots start at position 1
for every backbone; the text tower drops it (clip/siglip.py).
"""

from __future__ import annotations

import html
import json
import logging
import string
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def clean(text: str) -> str:
    """open_clip's ``canonicalize`` cleaning of a text for SigLIP."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split())


class _SentencePiece:
    """``encode(text) -> ids`` and ``decode``, ``token_id(piece)`` of one vocabulary file."""

    def __init__(self, path: Path | None, built: Any = None) -> None:
        """The vocabulary of the file ``path``, or (``built``) a ``tokenizers.Tokenizer``
        built in code."""
        self.path = path
        if built is not None:
            self._hf, self._sp = built, None
        elif path.suffix == ".json":
            from tokenizers import Tokenizer as HFTokenizer

            self._hf = HFTokenizer.from_file(str(path))
            self._sp = None
        else:
            import sentencepiece

            self._hf = None
            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(path))

    def encode(self, text: str) -> list[int]:
        if self._hf is not None:
            return self._hf.encode(text, add_special_tokens=False).ids
        return self._sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        return self._hf.decode(ids) if self._hf is not None else self._sp.decode(ids)

    def token_id(self, piece: str) -> int | None:
        if self._hf is not None:
            return self._hf.token_to_id(piece)
        index = self._sp.piece_to_id(piece)
        return index if self._sp.id_to_piece(index) == piece else None


def _special(folder: Path, name: str) -> str | None:
    """A special token (``eos_token``, ``pad_token``) named in a folder's tokenizer files."""
    for filename in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / filename
        if not path.is_file():
            continue
        try:
            value: Any = json.loads(path.read_text(encoding="utf-8")).get(name)
        except (OSError, ValueError, AttributeError) as err:
            raise ValueError(f"cannot read {path}: {err}") from err
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return None


def _vocabulary_file(vocabulary: str, cache_dir: str | None) -> Path:
    """The tokenizer file a vocabulary names: ``dir:FOLDER`` or ``hf-hub:ORG/REPO`` (through
    the Hugging Face cache, downloaded if absent and online)."""
    from .siglip import TOKENIZER_FILES

    if vocabulary.startswith("dir:"):
        folder = Path(vocabulary[len("dir:"):])
        for name in TOKENIZER_FILES:
            if (folder / name).is_file():
                return folder / name
        raise FileNotFoundError(f"{folder} holds none of the tokenizer files {TOKENIZER_FILES}")
    if not vocabulary.startswith("hf-hub:"):
        raise ValueError(f"unknown vocabulary {vocabulary!r}: expected openai-bpe, "
                         "dir:FOLDER, hf-hub:ORG/REPO or tiny-siglip")
    from huggingface_hub import hf_hub_download

    repo = vocabulary[len("hf-hub:"):]
    errors = []
    for name in TOKENIZER_FILES:
        try:
            return Path(hf_hub_download(repo, name, cache_dir=cache_dir))
        except Exception as err:  # absent from the repository, or offline and not cached
            errors.append(f"{name}: {type(err).__name__}")
    raise RuntimeError(
        f"could not get the tokenizer of {repo} ({'; '.join(errors)}). Without network "
        f"access, copy the folder models--{repo.replace('/', '--')} of a Hugging Face cache "
        f"that holds its tokenizer.json into {cache_dir or 'the Hugging Face cache'}, or "
        "put tokenizer.json next to the weights' open_clip_config.json")


@lru_cache(maxsize=8)
def _read(vocabulary: str, cache_dir: str | None) -> tuple[_SentencePiece, int, int]:
    """(the vocabulary, end-of-text id, padding id); read once per process."""
    if vocabulary == "tiny-siglip":
        from .tiny_siglip import tiny_tokenizer

        path, pieces = None, _SentencePiece(None, tiny_tokenizer())
    else:
        path = _vocabulary_file(vocabulary, cache_dir)
        pieces = _SentencePiece(path)
    gemma = pieces.token_id("<eos>") is not None
    folder = path.parent if path is not None else None
    eos = (folder and _special(folder, "eos_token")) or ("<eos>" if gemma else "</s>")
    pad = (folder and _special(folder, "pad_token")) or ("<pad>" if gemma else eos)
    ids = [pieces.token_id(eos), pieces.token_id(pad)]
    if None in ids:
        raise ValueError(f"{path or vocabulary} has no token {eos!r} or {pad!r} (end of "
                         "text, padding)")
    return pieces, ids[0], ids[1]


class SentencePieceTokenizer:
    """The tokenizer of a SigLIP backbone, with the interface of :class:`clip.Tokenizer`:
    ``tokenizer(texts)`` gives ids ``[N, 1 + context_length]`` (the module docstring says
    why one more), ``eot_positions`` the end-of-text position of each row. Texts longer than
    the context are cut, as SigLIP was trained."""

    def __init__(self, context_length: int, vocabulary: str, cache_dir: str | None = None
                 ) -> None:
        if context_length < 1:
            raise ValueError(f"context_length must be >= 1; got {context_length}")
        self._context_length = context_length
        self._vocabulary = vocabulary
        self._pieces, self.eot_id, self.pad_id = _read(vocabulary, cache_dir)

    sot_id = None  # SigLIP's texts have no start token

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def vocabulary(self) -> str:
        return self._vocabulary

    def __repr__(self) -> str:
        return (f"SentencePieceTokenizer(context_length={self.context_length}, "
                f"vocabulary={self.vocabulary!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SentencePieceTokenizer) and (
            self.context_length, self.vocabulary) == (other.context_length, other.vocabulary)

    def __hash__(self) -> int:
        return hash((self.context_length, self.vocabulary))

    def __deepcopy__(self, memo: dict) -> SentencePieceTokenizer:
        return self  # immutable

    def encode(self, text: str) -> list[int]:
        """The ids of a cleaned text, without end-of-text (a class name's length in tokens)."""
        return self._pieces.encode(clean(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self._pieces.decode(ids)

    def __call__(self, texts: str | Sequence[str], truncate: bool = True) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("a tokenizer takes a string or a sequence of strings; got "
                            f"{[type(t).__name__ for t in texts]}")
        length = self.context_length
        result = torch.full((len(texts), 1 + length), self.pad_id, dtype=torch.long)
        cut = []
        for i, text in enumerate(texts):
            pieces = self.encode(text)
            if len(pieces) > length - 1:
                cut.append(text)
            ids = [*pieces[:length - 1], self.eot_id]
            result[i, 1:1 + len(ids)] = torch.tensor(ids)
        if cut:
            logger.warning("%d of %d texts are longer than the context of %d tokens and were "
                           "cut (e.g. %r): a prompt whose class name is cut off cannot tell "
                           "its class", len(cut), len(texts), length, cut[0][:80])
        return result

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """The position of the first end-of-text token after the placeholder in each row."""
        is_eot = tokens[:, 1:] == self.eot_id
        if bool((~is_eot.any(dim=-1)).any()) or tokens.shape[1] != 1 + self.context_length:
            raise ValueError(f"token ids [N, {1 + self.context_length}] with an end-of-text "
                             f"token (id {self.eot_id}) after position 0 expected; these were "
                             "not made by this backbone's tokenizer")
        return is_eot.int().argmax(dim=-1) + 1
