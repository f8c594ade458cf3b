"""MVLPT: Multitask Vision-Language Prompt Tuning (Shen et al., WACV 2024,
https://arxiv.org/abs/2211.11720).

One prompt set is learned jointly on several datasets (``--dataset A,B,... --multi-task``: one
label space, mixed batches, each task evaluated among its own classes; datasets/multitask.py),
then initialises prompt tuning on a target task (``--model-dir`` without ``--eval-only``). The
variant follows from which prompt lengths are non-zero:

- MCoOp (``COOP.N_CTX``): CoOp's context in text layer 0, the class name in the middle of it by
  default (``COOP.CLASS_TOKEN_POSITION``).
- MVPT (``VPT.N_CTX``): visual prompts in every vision layer (``VPT.DEEP``; layer 0 inserted,
  deeper layers replaced), joined **after** ``ln_pre`` (no positional embedding, no ``ln_pre``);
  the text is the fixed "a photo of a {class}.".
- MUPT (both): text context and all visual prompts produced together by a coupling
  (``PROJECT_METHOD``) in a space of ``PROJECT_DIM`` channels.
- MCoCoOp (``COCOOP.N_CTX``): CoCoOp's image-conditioned context (trainers/cocoop.py).

Learned tensors keep the official names (``ctx``, ``vpt_embeddings``, ``vpt_embeddings_deep``,
``vpt_proj``, ``mvlpt_proj``, ``mvlpt_proj_ctx_{coop,vpt}_{pre,post}``; MCoCoOp's are CoCoOp's
``ctx`` and ``meta_net``, officially ``cocoop_ctx``), so official checkpoints load as they are.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from clip.model import Transformer
from datasets.elevater import build_elevater_dataset, build_elevater_loaders, elevater_task_names
from datasets.multitask import build_task_dataset
from engine.config import CN, register_config
from engine.data import DataManager
from trainers.base import (
    ClassTokens,
    PromptedCLIP,
    PromptSchedule,
    PromptTrainer,
    TextSide,
    prompt_text,
    word_context,
)
from trainers.cocoop import CoCoOpPromptLearner  # noqa: F401  (registers MCoCoOp's learner)
from trainers.coop import CoOpPromptLearner, context_schedule, name_lengths
from trainers.ivlp import vision_layers
from trainers.learners import official_learner_keys, register_learner
from trainers.method import Method, register_method
from trainers.objective import TERM_REGISTRY, PartContext, Term
from trainers.vpt import FIXED_PROMPT_PREFIX, FixedTextPromptedCLIP

logger = logging.getLogger(__name__)

PROJECT_METHODS = ("transformer", "identity", "mlp")


@register_config
def add_mvlpt_config(cfg: CN) -> None:
    cfg.TRAINER.MVLPT = CN()
    cfg.TRAINER.MVLPT.PREC = "fp16"  # fp16, fp32, amp or bf16
    cfg.TRAINER.MVLPT.PROJECT_METHOD = "transformer"  # MUPT coupling: transformer, identity, mlp
    cfg.TRAINER.MVLPT.PROJECT_DIM = 128  # MUPT: width of the space where the prompts meet
    cfg.TRAINER.MVLPT.VPT = CN()
    cfg.TRAINER.MVLPT.VPT.N_CTX = 0  # visual prompt tokens per layer (0: no visual prompts)
    cfg.TRAINER.MVLPT.VPT.CSC = False  # unused by MVLPT (kept for the official configs)
    cfg.TRAINER.MVLPT.VPT.CTX_INIT = ""  # unsupported for visual prompts (must stay empty)
    cfg.TRAINER.MVLPT.VPT.DROPOUT = 0.0  # dropout on the visual prompts, per image
    cfg.TRAINER.MVLPT.VPT.PROJECT = -1  # > -1: prompts of this width, a Linear to the tower's
    cfg.TRAINER.MVLPT.VPT.DEEP = True  # prompts in every vision layer (False: layer 0 only)
    cfg.TRAINER.MVLPT.COOP = CN()
    cfg.TRAINER.MVLPT.COOP.N_CTX = 0  # text context tokens (0: no learned text context)
    cfg.TRAINER.MVLPT.COOP.CSC = False  # class-specific context
    cfg.TRAINER.MVLPT.COOP.CTX_INIT = ""  # initialization words (their count replaces N_CTX)
    cfg.TRAINER.MVLPT.COOP.CLASS_TOKEN_POSITION = "middle"  # 'middle', 'end' or 'front'
    cfg.TRAINER.MVLPT.COCOOP = CN()
    cfg.TRAINER.MVLPT.COCOOP.N_CTX = 0  # CoCoOp context tokens (0: no conditional context)
    cfg.TRAINER.MVLPT.COCOOP.CTX_INIT = ""  # initialization words (their count replaces N_CTX)
    cfg.TRAINER.MVLPT.COCOOP.PREC = "fp16"  # kept for the official configs; PREC above rules
    cfg.TRAINER.CUT_CONTEXTLEN = False  # accepted: the text tower always runs on cut sequences


def variant(node: CN) -> str:
    """MCoOp, MVPT, MUPT or MCoCoOp, from the prompt lengths of ``TRAINER.MVLPT``."""
    coop = node.COOP.N_CTX > 0 or bool(node.COOP.CTX_INIT)
    vpt, cocoop = node.VPT.N_CTX > 0, node.COCOOP.N_CTX > 0 or bool(node.COCOOP.CTX_INIT)
    if cocoop:
        if coop or vpt:
            raise ValueError("TRAINER.MVLPT.COCOOP.N_CTX > 0 (MCoCoOp) takes no other prompts; "
                             "set COOP.N_CTX and VPT.N_CTX to 0")
        return "MCoCoOp"
    if coop and vpt:
        return "MUPT"
    if coop or vpt:
        return "MCoOp" if coop else "MVPT"
    raise ValueError("MVLPT has no prompts to learn: set TRAINER.MVLPT.COOP.N_CTX (MCoOp), "
                     "VPT.N_CTX (MVPT), both (MUPT) or COCOOP.N_CTX (MCoCoOp) above 0")


def check_node(node: CN) -> None:
    """Clear errors for settings the MVLPT learners cannot take."""
    variant(node)
    if node.PROJECT_METHOD not in PROJECT_METHODS:
        raise ValueError(f"TRAINER.MVLPT.PROJECT_METHOD is {node.PROJECT_METHOD!r}; use one of "
                         f"{', '.join(PROJECT_METHODS)}")
    if node.PROJECT_DIM < 1:
        raise ValueError(f"TRAINER.MVLPT.PROJECT_DIM must be >= 1; got {node.PROJECT_DIM}")
    if node.VPT.CTX_INIT:
        raise ValueError("TRAINER.MVLPT.VPT.CTX_INIT: visual prompts cannot start from words "
                         "(the official code refuses it too); leave it empty")
    if node.VPT.CSC:
        raise ValueError("TRAINER.MVLPT.VPT.CSC: class-specific visual prompts are not part of "
                         "MVLPT (the official code ignores the key); set it to False")
    if not 0 <= node.VPT.DROPOUT < 1:
        raise ValueError(f"TRAINER.MVLPT.VPT.DROPOUT must be in [0, 1); got {node.VPT.DROPOUT}")
    if node.COOP.CLASS_TOKEN_POSITION not in CoOpPromptLearner.positions:
        raise ValueError(f"TRAINER.MVLPT.COOP.CLASS_TOKEN_POSITION is "
                         f"{node.COOP.CLASS_TOKEN_POSITION!r}; use one of "
                         f"{', '.join(CoOpPromptLearner.positions)}")


def _coupling_block(width: int) -> Transformer:
    """One CLIP residual block of ``width`` channels and one head, initialised as
    ``nn.MultiheadAttention`` and ``nn.Linear`` initialise themselves (what the official
    coupling starts from)."""
    block = Transformer(width, layers=1, heads=1)
    attn = block.resblocks[0].attn
    nn.init.xavier_uniform_(attn.in_proj_weight)
    nn.init.zeros_(attn.in_proj_bias)
    nn.init.zeros_(attn.out_proj.bias)
    return block


def _linear_or_identity(width_in: int, width_out: int) -> nn.Module:
    return nn.Identity() if width_in == width_out else nn.Linear(width_in, width_out)


def mvlpt_settings(node: CN) -> dict:
    """The keyword arguments of :class:`MVLPTPromptLearner` from ``TRAINER.MVLPT``."""
    return {"coop_n_ctx": node.COOP.N_CTX, "coop_ctx_init": node.COOP.CTX_INIT,
            "coop_csc": node.COOP.CSC, "class_token_position": node.COOP.CLASS_TOKEN_POSITION,
            "vpt_n_ctx": node.VPT.N_CTX, "vpt_deep": node.VPT.DEEP,
            "vpt_dropout": node.VPT.DROPOUT, "vpt_project": node.VPT.PROJECT,
            "project_method": node.PROJECT_METHOD, "project_dim": node.PROJECT_DIM}


def map_mvlpt_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The released UPT files' ``upt_proj`` is ``mvlpt_proj`` (the official loader renames it
    too); then the default official map."""
    mapped = {}
    for key, value in state_dict.items():
        key = key.removeprefix("prompt_learner.")
        mapped["mvlpt_proj" + key[len("upt_proj"):] if key.startswith("upt_proj") else key] = value
    return official_learner_keys(mapped)


@register_learner("MVLPT", node="MVLPT", settings=mvlpt_settings, official_keys=map_mvlpt_keys)
class MVLPTPromptLearner(nn.Module):
    """The prompts of MCoOp, MVPT and MUPT, under the official names.

    - ``ctx`` ``[n, d_text]`` (``[n_cls, n, d_text]`` with ``coop_csc``): text context.
    - ``vpt_embeddings`` ``[1, m, d]`` and ``vpt_embeddings_deep`` ``[L - 1, m, d]``: visual
      prompts of vision layer 0 and of layers 1 .. L-1 (``d``: ``vpt_project`` when > -1, then
      ``vpt_proj`` maps them to the tower's width; else the tower's width), drawn from
      U(-v, v), v = sqrt(6 / (3 * patch² + d)).
    - MUPT coupling (``project_method`` transformer or mlp): ``mvlpt_proj_ctx_coop_pre`` and
      ``mvlpt_proj_ctx_vpt_pre`` take every text and visual prompt token to ``project_dim``
      channels; ``mvlpt_proj`` (one CLIP residual block with one head, or a GELU) transforms
      them; ``..._post`` take them back. The official block receives ``[1, tokens, dim]`` in a
      sequence-first transformer, so **each token is its own length-1 sequence** and no token
      attends to another (attention reduces to ``out_proj(v_proj(ln_1(x)))``); the released
      checkpoints were trained that way and it is reproduced here. The official ``mlp``
      (``nn.GeLU``) does not exist in torch and crashes; here it is ``nn.GELU``.
    """

    def __init__(self, clip_model: nn.Module, classnames: list[str], *, coop_n_ctx: int = 0,
                 coop_ctx_init: str = "", coop_csc: bool = False,
                 class_token_position: str = "middle", vpt_n_ctx: int = 0,
                 vpt_deep: bool = True, vpt_dropout: float = 0.0, vpt_project: int = -1,
                 project_method: str = "transformer", project_dim: int = 128) -> None:
        super().__init__()
        if not (coop_n_ctx > 0 or coop_ctx_init or vpt_n_ctx > 0):
            raise ValueError("MVLPTPromptLearner needs text context or visual prompts")
        self.position = class_token_position
        self._init_visual(clip_model, vpt_n_ctx, vpt_deep, vpt_dropout, vpt_project)
        self._init_text(clip_model, classnames, coop_n_ctx, coop_ctx_init, coop_csc)
        self.coupled = (self.ctx is not None and self.vpt_embeddings is not None
                        and project_method != "identity")
        if self.coupled:
            self._init_coupling(project_method, project_dim)
        # the model that drives it (build_prompted_model): MVPT's text is fixed
        self.prompted_model = (MVLPTPromptedCLIP if self.ctx is not None
                               else FixedTextMVLPTPromptedCLIP)

    def _init_visual(self, clip_model: nn.Module, n_ctx: int, deep: bool, dropout: float,
                     project: int) -> None:
        self.vpt_embeddings: nn.Parameter | None = None
        self.vpt_embeddings_deep: nn.Parameter | None = None
        self.vpt_dropout = nn.Dropout(dropout)
        self.vpt_proj: nn.Module = nn.Identity()
        if n_ctx < 1:
            return
        layers = vision_layers(clip_model)
        if not layers:
            raise ValueError("MVLPT's visual prompts (VPT.N_CTX > 0) need a ViT image tower; "
                             "this CLIP has a ResNet (choose a ViT backbone, e.g. ViT-B/16)")
        width = clip_model.vision_width
        dim = project if project > -1 else width
        if project > -1:
            self.vpt_proj = nn.Linear(dim, width)
            nn.init.kaiming_normal_(self.vpt_proj.weight, a=0, mode="fan_out")
        patch = clip_model.visual.conv1.weight.shape[-1]
        bound = math.sqrt(6.0 / (3 * patch * patch + dim))
        self.vpt_embeddings = nn.Parameter(torch.empty(1, n_ctx, dim).uniform_(-bound, bound))
        if deep:
            self.vpt_embeddings_deep = nn.Parameter(
                torch.empty(layers - 1, n_ctx, dim).uniform_(-bound, bound))
        logger.info("MVLPT visual prompts: %d tokens in %s (width %d)", n_ctx,
                    f"all {layers} vision layers" if deep else "vision layer 0", dim)

    def _init_text(self, clip_model: nn.Module, classnames: list[str], n_ctx: int,
                   ctx_init: str, csc: bool) -> None:
        self.ctx: nn.Parameter | None = None
        prefix = FIXED_PROMPT_PREFIX
        if n_ctx > 0 or ctx_init:
            ctx, prefix = word_context(clip_model, n_ctx, ctx_init,
                                       len(classnames) if csc else None)
            self.ctx = nn.Parameter(ctx)
        self.class_tokens = ClassTokens(clip_model, [prompt_text(prefix, c) for c in classnames])
        self.name_lens = name_lengths(clip_model, classnames)

    def _init_coupling(self, method: str, dim: int) -> None:
        text_width, vision_width = self.ctx.shape[-1], self.vpt_embeddings.shape[-1]
        self.mvlpt_proj_ctx_coop_pre = _linear_or_identity(text_width, dim)
        self.mvlpt_proj_ctx_coop_post = _linear_or_identity(dim, text_width)
        self.mvlpt_proj_ctx_vpt_pre = _linear_or_identity(vision_width, dim)
        self.mvlpt_proj_ctx_vpt_post = _linear_or_identity(dim, vision_width)
        self.mvlpt_proj: nn.Module = _coupling_block(dim) if method == "transformer" else nn.GELU()
        logger.info("MUPT coupling: %s in %d channels", method, dim)

    def visual_stack(self) -> torch.Tensor | None:
        """Every layer's visual prompts before any projection, ``[layers, m, d]``."""
        if self.vpt_embeddings is None:
            return None
        if self.vpt_embeddings_deep is None:
            return self.vpt_embeddings
        return torch.cat([self.vpt_embeddings, self.vpt_embeddings_deep])

    def prompts(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(text context, visual prompts ``[layers, m, d]``) after the MUPT coupling."""
        ctx, visual = self.ctx, self.visual_stack()
        if not self.coupled:
            return ctx, visual
        text = self.mvlpt_proj_ctx_coop_pre(ctx.reshape(-1, ctx.shape[-1]))
        image = self.mvlpt_proj_ctx_vpt_pre(visual.reshape(-1, visual.shape[-1]))
        tokens = torch.cat([text, image])
        if isinstance(self.mvlpt_proj, Transformer):
            tokens = self.mvlpt_proj(tokens.unsqueeze(1)).squeeze(1)  # [tokens, 1, dim]: alone
        else:
            tokens = self.mvlpt_proj(tokens)
        n_text = text.shape[0]
        ctx = self.mvlpt_proj_ctx_coop_post(tokens[:n_text]).reshape(ctx.shape)
        visual = self.mvlpt_proj_ctx_vpt_post(tokens[n_text:]).reshape(visual.shape)
        return ctx, visual

    def forward(self) -> PromptSchedule:
        ctx, visual = self.prompts()
        if ctx is None:
            schedule = PromptSchedule(self.class_tokens.embeddings, self.class_tokens.eot)
        else:
            schedule = context_schedule(self.class_tokens, ctx, self.name_lens, self.position)
        if visual is not None:
            schedule.vision = list(self.vpt_proj(visual).unbind(0))
            schedule.vision_after_ln_pre = True
        return schedule

    def drop(self, vision: list[torch.Tensor] | None,
             batch: int) -> list[torch.Tensor] | None:
        """The visual prompts with VPT.DROPOUT applied per image (official: after expanding
        them to the batch), in training only."""
        if vision is None or not self.training or self.vpt_dropout.p == 0:
            return vision
        return [self.vpt_dropout(p.expand(batch, -1, -1)) for p in vision]


class MVLPTPromptedCLIP(PromptedCLIP):
    """CLIP driven by :class:`MVLPTPromptLearner`: visual prompts after ``ln_pre``, with
    per-image dropout in training."""

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, TextSide]:
        text = self.text_side()
        schedule = text.schedule
        vision = self.prompt_learner.drop(schedule.vision, image.shape[0])
        return self.clip.encode_image(image, vision,
                                      prompt_after_ln_pre=schedule.vision_after_ln_pre), text


class FixedTextMVLPTPromptedCLIP(MVLPTPromptedCLIP, FixedTextPromptedCLIP):
    """MVPT: the text side is the frozen "a photo of a {class}.", computed once."""


class MultitaskCrossEntropy(Term):
    """Cross-entropy over every task's classes (MVLPT's loss). With ``per_task_mask``
    (DATASET.MULTITASK_LABEL_PERTASK) the logits of the classes outside each image's task are
    multiplied by 0 (set to 0, not -inf: the official rule) before it; the task of an image is
    the one whose classes hold its label. A label matrix (ELEVATER's 0/1 targets) is a soft
    target, divided by its sum (multi-label tasks)."""

    name = "ce"

    def __init__(self, tasks: list | None = None, per_task_mask: bool = False) -> None:
        super().__init__()
        if per_task_mask and not tasks:
            raise ValueError("DATASET.MULTITASK_LABEL_PERTASK needs multitask data "
                             "(--dataset A,B,... --multi-task)")
        self.per_task_mask = per_task_mask
        bounds = [(t.start, t.end) for t in tasks or []]
        self.register_buffer("starts", torch.tensor([b[0] for b in bounds], dtype=torch.long),
                             persistent=False)
        self.register_buffer("ends", torch.tensor([b[1] for b in bounds], dtype=torch.long),
                             persistent=False)

    def mask(self, label: torch.Tensor, classes: int) -> torch.Tensor:
        """``[B, classes]``: 1 for the classes of each image's task, 0 elsewhere."""
        first = label.argmax(dim=-1) if label.dim() > 1 else label
        task = torch.bucketize(first, self.starts, right=True) - 1
        index = torch.arange(classes, device=label.device)
        return ((index >= self.starts[task, None]) & (index < self.ends[task, None])).float()

    def forward(self, out, label: torch.Tensor) -> torch.Tensor:
        logits = out.logits.float()
        if self.per_task_mask:
            logits = logits * self.mask(label, logits.shape[1])
        if label.dim() > 1:
            label = label.float() / label.float().sum(dim=-1, keepdim=True)
        return F.cross_entropy(logits, label)


@TERM_REGISTRY.register(name="MultitaskCE")
def multitask_terms(ctx: PartContext) -> list[Term]:
    per_task = bool(ctx.cfg.DATASET.get("MULTITASK_LABEL_PERTASK", False))
    return [MultitaskCrossEntropy(ctx.tasks, per_task_mask=per_task)]


class MultitaskTrainer(PromptTrainer):
    """The loop of a method over several tasks in one label space (MVLPT's data): the
    multitask dataset, ELEVATER's loaders, and its 0/1 target vectors as labels."""

    def build_data_loader(self) -> None:
        """Several tasks (``DATASET.DATASET`` or ``DATASET.COOP``): one multitask dataset;
        otherwise the dataset of ``DATASET.NAME`` as for every trainer."""
        cfg = self.cfg
        if elevater_task_names(cfg):  # ELEVATER's tasks, read and loaded as its toolkit does
            dataset = build_elevater_dataset(cfg)
            loaders = build_elevater_loaders(cfg, dataset)
            self.use_data_manager(DataManager(cfg, dataset=dataset, loaders=loaders))
            return
        if not (cfg.DATASET.DATASET or cfg.DATASET.COOP):
            super().build_data_loader()
            return
        self.use_data_manager(DataManager(cfg, dataset=build_task_dataset(cfg)))

    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels; ELEVATER batches carry their 0/1 ``target`` vectors instead
        (multi-label tasks), which the objective takes as soft targets."""
        target = batch.get("target")
        label = batch["label"] if target is None else target
        return batch["img"].to(self.device), label.to(self.device)

    def parse_batch_test(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.parse_batch_train(batch)


def check_mvlpt(cfg) -> None:
    check_node(cfg.TRAINER.MVLPT)
    logger.info("MVLPT variant: %s", variant(cfg.TRAINER.MVLPT))
    if cfg.TRAINER.MVLPT.COCOOP.PREC not in PromptTrainer.precisions:
        raise ValueError(f"TRAINER.MVLPT.COCOOP.PREC is '{cfg.TRAINER.MVLPT.COCOOP.PREC}'; "
                         f"use one of {', '.join(PromptTrainer.precisions)}")
    if cfg.DATASET.MULTITASK_LABEL_PERTASK and not cfg.DATASET.MULTITASK:
        raise ValueError("DATASET.MULTITASK_LABEL_PERTASK (--multi-task-label_pertask) "
                         "needs DATASET.MULTITASK (--multi-task): the mask is per task")


def mvlpt_learner(cfg) -> str:
    """MCoCoOp is CoCoOp's learner (built from TRAINER.MVLPT.COCOOP); the others MVLPT's."""
    return "CoCoOp" if variant(cfg.TRAINER.MVLPT) == "MCoCoOp" else "MVLPT"


def rename_cocoop_ctx(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official MCoCoOp context ``cocoop_ctx`` is CoCoOp's ``ctx``."""
    return {("ctx" if k.removeprefix("prompt_learner.") == "cocoop_ctx" else k): v
            for k, v in state_dict.items()}


MVLPT = register_method(Method(
    "MVLPT", node="MVLPT", learner="MVLPT", terms=("MultitaskCE",),
    learner_nodes={"CoCoOp": "MVLPT.COCOOP"}, select_learner=mvlpt_learner,
    official_keys=rename_cocoop_ctx, check=check_mvlpt,
    doc="Multitask Vision-Language Prompt Tuning (MCoOp, MVPT, MUPT, MCoCoOp)."),
    trainer=MultitaskTrainer, module=__name__)
