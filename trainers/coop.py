"""CoOp: Context Optimization (Zhou et al., IJCV 2022, https://arxiv.org/abs/2109.01134).

Learnable context words shared by all classes (or one set per class, CSC) in front of, around
or after the class name; text layer 0 only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from engine.config import CN, allow_types, register_config
from trainers.base import ClassTokens, PromptSchedule, embed_words, prompt_text, word_context
from trainers.learners import register_learner
from trainers.method import Method, register_method


@register_config
def add_coop_config(cfg: CN) -> None:
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16  # number of context vectors
    cfg.TRAINER.COOP.CSC = False  # class-specific context
    # initialization words (overrides N_CTX by their count); True: KgCoOp's or ProGrad's own
    cfg.TRAINER.COOP.CTX_INIT = ""
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16, fp32, amp or bf16
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # 'end', 'middle' or 'front'


# KgCoOp's and ProGrad's official configs write CTX_INIT: True (their own initial words)
allow_types("TRAINER.COOP.CTX_INIT", str, bool)


def coop_settings(node: CN) -> dict:
    """CoOp's learner from its node's keys (CSC and CLASS_TOKEN_POSITION optional)."""
    return {"n_ctx": node.N_CTX, "ctx_init": node.CTX_INIT, "csc": node.get("CSC", False),
            "position": node.get("CLASS_TOKEN_POSITION", "end")}


def padded_word_context(clip_model: nn.Module, n_ctx: int, words: str) -> tuple[torch.Tensor, str]:
    """ProGrad's context: ``n_ctx`` zero vectors whose last slots hold the embeddings of
    ``words``, behind the prompt "X ... X <words>"."""
    words = words.replace("_", " ")
    count = len(words.split(" "))
    if n_ctx < count:
        raise ValueError(f"N_CTX ({n_ctx}) must be at least the number of initial words "
                         f"({count}, '{words}')")
    ctx = torch.zeros(n_ctx, clip_model.text_width)
    ctx[n_ctx - count:] = embed_words(clip_model, words, count)
    return ctx, " ".join(["X"] * (n_ctx - count) + [words])


@register_learner("CoOp", node="COOP", settings=coop_settings)
class CoOpPromptLearner(nn.Module):
    """``ctx`` ``[n_ctx, d]`` (or ``[n_cls, n_ctx, d]`` with class-specific context).

    ``ctx_init``: the words the context starts from (their count replaces ``n_ctx``), or
    with ``words_last`` ProGrad's start (``n_ctx`` vectors, the words in the last ones).
    """

    positions = ("end", "middle", "front")

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 16,
                 ctx_init: str | bool = "", csc: bool = False, position: str = "end",
                 words_last: bool = False) -> None:
        super().__init__()
        if position not in self.positions:
            raise ValueError(f"CLASS_TOKEN_POSITION '{position}' is not one of {self.positions}")
        if ctx_init is True:
            raise ValueError("CTX_INIT is True, which KgCoOp and ProGrad read as their own "
                             "initial words; for CoOp give the words, e.g. 'a photo of a'")
        ctx_init = ctx_init or ""
        if words_last and ctx_init and not csc:
            ctx, prefix = padded_word_context(clip_model, n_ctx, ctx_init)
        else:
            ctx, prefix = word_context(clip_model, n_ctx, ctx_init,
                                       len(classnames) if csc else None)
        self.ctx = nn.Parameter(ctx)
        self.n_ctx = ctx.shape[-2]
        self.position = position
        self.class_tokens = ClassTokens(clip_model, [prompt_text(prefix, c) for c in classnames])
        self.name_lens = name_lengths(clip_model, classnames)

    def forward(self) -> PromptSchedule:
        return context_schedule(self.class_tokens, self.ctx, self.name_lens, self.position)


def name_lengths(clip_model: nn.Module, classnames: Sequence[str]) -> list[int]:
    """Each class name's length in tokens of the backbone's tokenizer (underscores as
    spaces, as in the prompts): where the name sits in a prompt."""
    return [len(clip_model.tokenizer.encode(c.replace("_", " "))) for c in classnames]


def context_schedule(tokens: ClassTokens, ctx: torch.Tensor, name_lens: list[int],
                     position: str) -> PromptSchedule:
    """CoOp's class prompts with context ``ctx`` (``[n_ctx, d]`` or ``[n_cls, n_ctx, d]``):
    written into text layer 0 (``end``), or with each class name moved before (``front``) or
    into the middle of the context, where ``tokens`` hold ``n_ctx`` placeholders then the
    name. Every prompt keeps its length, so the end-of-text positions stay."""
    if position == "end":
        return PromptSchedule(tokens.embeddings, tokens.eot, text=[ctx])
    embeddings = tokens.embeddings
    n_cls, length, width = embeddings.shape
    n_ctx = ctx.shape[-2]
    ctx = (ctx if ctx.dim() == 3 else ctx.unsqueeze(0).expand(n_cls, -1, -1)).to(embeddings.dtype)
    half = n_ctx // 2 if position == "middle" else 0
    # one gather for all classes (a loop of per-class slices costs O(classes²) in backward):
    # output position p holds context token p - 1 (p <= half), the name (moved left by the
    # n_ctx - half context tokens that follow it), context token half + ... after the name, and
    # from 1 + n_ctx + name length on the positions keep their tokens
    p = torch.arange(length, device=embeddings.device).expand(n_cls, -1)
    lens = torch.as_tensor(name_lens, device=embeddings.device)[:, None]
    first_ctx = (p >= 1) & (p <= half)
    name = (p > half) & (p <= half + lens)
    second_ctx = (p > half + lens) & (p <= n_ctx + lens)
    source = torch.where(name, p + n_ctx - half, p)
    ctx_index = torch.where(first_ctx, p - 1, p - 1 - lens).clamp(0, n_ctx - 1)
    from_ctx = (first_ctx | second_ctx)[..., None]
    picked = ctx.gather(1, ctx_index[..., None].expand(-1, -1, width))
    kept = embeddings.gather(1, source[..., None].expand(-1, -1, width))
    return PromptSchedule(torch.where(from_ctx, picked, kept), tokens.eot)


CoOp = register_method(Method("CoOp", node="COOP", learner="CoOp",
                              doc="Context Optimization (CoOp)."), module=__name__)
