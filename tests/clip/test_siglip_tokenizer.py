"""SigLIP's tokenizers against the libraries: SentencePiece models trained here, read by our
tokenizer from ``tokenizer.json`` (Hugging Face's ``tokenizers``) or from the SentencePiece
model itself, compared with Hugging Face's ``tokenizers`` set up as T5's saved tokenizer (SigLIP's
vocabulary), with open_clip's HFTokenizer over ``transformers`` where it is installed, and with
``sentencepiece`` plus the padding rule of Gemma's (SigLIP 2's)."""

from __future__ import annotations

import shutil

import pytest
import torch

from clip.siglip_tokenizer import SentencePieceTokenizer

spm = pytest.importorskip("sentencepiece")

CORPUS = ["a photo of a dog", "a bad photo of an aircraft carrier", "the sea lion is on the rock",
          "a centered satellite photo of farmland", "a photo of a person doing yoga",
          "a close-up photo of a sunflower in a field of wheat"] * 20
TEXTS = ["A photo of a Dog.", "a_bad photo of an AIRCRAFT carrier!", "  sea   lion &amp; rock ",
         "a centered satellite photo of farmland a photo of a person doing yoga again and again"]
CONTEXT = 12


def train(folder, **ids) -> str:
    """Train a small unigram SentencePiece model into ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = str(folder / "sp")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_prefix=prefix,
                                   vocab_size=80, model_type="unigram", hard_vocab_limit=False,
                                   minloglevel=2, **ids)
    return f"{prefix}.model"


@pytest.fixture(scope="module")
def t5_model(tmp_path_factory) -> str:
    return train(tmp_path_factory.mktemp("t5"), pad_id=0, eos_id=1, unk_id=2, bos_id=-1)


def test_t5_vocabulary_equals_the_tokenizers_library(t5_model, tmp_path):
    """Hugging Face's ``tokenizers`` with the rule of T5's (SigLIP's) saved tokenizer: end of
    text appended, truncation to the context, padding with ``</s>``; open_clip's cleaning."""
    from open_clip.tokenizer import _clean_canonicalize
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    sp = spm.SentencePieceProcessor(model_file=t5_model)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    hf = Tokenizer(models.Unigram(vocab, unk_id=sp.unk_id()))
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    hf.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                      special_tokens=[("</s>", 1)])
    hf.enable_truncation(max_length=CONTEXT)
    hf.enable_padding(length=CONTEXT, pad_id=1, pad_token="</s>")
    expected = torch.tensor([e.ids for e in hf.encode_batch(
        [_clean_canonicalize(t) for t in TEXTS])])
    (tmp_path / "hf").mkdir()
    hf.no_truncation()
    hf.no_padding()
    hf.save(str(tmp_path / "hf" / "tokenizer.json"))
    for folder, name in (("hf", None), ("sp", "spiece.model")):
        if name:
            (tmp_path / folder).mkdir()
            shutil.copy(t5_model, tmp_path / folder / name)
        tokens = SentencePieceTokenizer(CONTEXT, f"dir:{tmp_path / folder}")(TEXTS)
        assert torch.equal(tokens[:, 1:], expected), folder
        assert (tokens[:, 0] == 1).all()


def test_t5_vocabulary_equals_open_clips_hf_tokenizer(t5_model, tmp_path):
    transformers = pytest.importorskip("transformers")
    from open_clip.tokenizer import HFTokenizer

    sp = spm.SentencePieceProcessor(model_file=t5_model)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    hf = transformers.T5TokenizerFast(vocab=vocab, extra_ids=0, legacy=False)
    hf.pad_token = "</s>"  # what open_clip's SigLIP repositories say
    hf.save_pretrained(tmp_path / "hf")
    expected = HFTokenizer(str(tmp_path / "hf"), context_length=CONTEXT,
                           clean="canonicalize")(TEXTS)
    assert (expected[-1] != 1).sum() == CONTEXT - 1  # the last text fills the context
    ours = SentencePieceTokenizer(CONTEXT, f"dir:{tmp_path / 'hf'}")
    tokens = ours(TEXTS)
    assert tokens.shape == (len(TEXTS), 1 + CONTEXT)
    assert torch.equal(tokens[:, 1:], expected)
    assert (tokens[:, 0] == ours.pad_id).all()
    # the same vocabulary read by sentencepiece from the model file
    (tmp_path / "sp").mkdir()
    shutil.copy(t5_model, tmp_path / "sp" / "spiece.model")
    assert torch.equal(SentencePieceTokenizer(CONTEXT, f"dir:{tmp_path / 'sp'}")(TEXTS), tokens)


def test_gemma_vocabulary_pads_with_pad_and_ends_with_eos(tmp_path, caplog):
    model = train(tmp_path / "train", pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
                  eos_piece="<eos>", bos_piece="<bos>")
    (tmp_path / "gemma").mkdir()
    shutil.copy(model, tmp_path / "gemma" / "tokenizer.model")
    ours = SentencePieceTokenizer(CONTEXT, f"dir:{tmp_path / 'gemma'}")
    assert (ours.eot_id, ours.pad_id) == (1, 0)
    sp = spm.SentencePieceProcessor(model_file=model)
    clean = ["a photo of a dog", "a bad photo of an aircraft carrier", "sea lion rock",
             "a centered satellite photo of farmland a photo of a person doing yoga again "
             "and again"]
    expected = torch.zeros(len(clean), 1 + CONTEXT, dtype=torch.long)
    for row, text in enumerate(clean):
        ids = [*sp.encode(text)[:CONTEXT - 1], 1]
        expected[row, 1:1 + len(ids)] = torch.tensor(ids)
    with caplog.at_level("WARNING", logger="clip.siglip_tokenizer"):
        tokens = ours(TEXTS)
    assert torch.equal(tokens, expected)
    assert "2 of 4 texts are longer than the context of 12 tokens" in caplog.text
    positions = ours.eot_positions(tokens)
    assert positions[-1] == CONTEXT and (tokens[torch.arange(4), positions] == 1).all()


def test_foreign_token_ids_are_refused(t5_model, tmp_path):
    (tmp_path / "sp").mkdir()
    shutil.copy(t5_model, tmp_path / "sp" / "spiece.model")
    ours = SentencePieceTokenizer(CONTEXT, f"dir:{tmp_path / 'sp'}")
    with pytest.raises(ValueError, match="not made by this backbone's tokenizer"):
        ours.eot_positions(torch.zeros(2, 77, dtype=torch.long))
    with pytest.raises(FileNotFoundError, match="tokenizer files"):
        SentencePieceTokenizer(CONTEXT, f"dir:{tmp_path}")
