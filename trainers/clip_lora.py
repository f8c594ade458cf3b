"""CLIP-LoRA: Low-Rank Adaptation of vision-language models (Zanella & Ben Ayed, CVPR 2024
workshops, https://arxiv.org/abs/2405.18541).

Low-rank updates ``scaling * B A`` (``scaling = ALPHA / sqrt(R)``, A ``[R, d]``, B ``[d, R]``,
B starting at zero) of the chosen attention matrices (q, k, v, o) of the chosen blocks of
either tower or both, through clip/adapters.py's attention slot; during training the input of
each update goes through its own dropout (DROPOUT_RATE). The class prompts are fixed
("a photo of a <class>."), the objective is cross-entropy of the scaled cosine similarities.

The official code is not Dassl-based; its command-line flags map to config keys:

=================  =============================================
``--position``     TRAINER.CLIPLORA.POSITION
``--encoder``      TRAINER.CLIPLORA.ENCODER
``--params``       TRAINER.CLIPLORA.PARAMS
``--r``            TRAINER.CLIPLORA.R
``--alpha``        TRAINER.CLIPLORA.ALPHA
``--dropout_rate`` TRAINER.CLIPLORA.DROPOUT_RATE
``--n_iters``      TRAINER.CLIPLORA.N_ITERS
``--shots``        DATASET.NUM_SHOTS
``--backbone``     MODEL.BACKBONE.NAME
``--lr``           OPTIM.LR
``--batch_size``   DATALOADER.TRAIN_X.BATCH_SIZE
=================  =============================================

Its schedule counts iterations, not epochs: ``N_ITERS * NUM_SHOTS`` optimizer steps (AdamW;
cosine from OPTIM.LR to 1e-6 over those steps, stepped every iteration), the last epoch cut
where the count is reached. Checkpoints hold the LoRA matrices only. An official saved file
(``save_lora``: ``{"weights": {"layer_<k>": {"q_proj": {"w_lora_A", "w_lora_B"}, ...}},
"metadata": {...}}``) loads with TRAINER.CLIPLORA.LORA_FILE (its metadata must match the
config).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from engine.checkpoint import load_checkpoint
from engine.config import CN, register_config
from trainers.adapted import TOWERS, AdaptedCLIP
from trainers.base import ClassTokens, PromptSchedule, PromptTrainer
from trainers.learners import register_learner
from trainers.method import Method, register_method

logger = logging.getLogger(__name__)

ENCODERS = ("text", "vision", "both")
MATRICES = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "proj"}  # official names
PROMPT = "a photo of a {}."  # CLIP-LoRA's template on every dataset


@register_config
def add_clip_lora_config(cfg: CN) -> None:
    cfg.TRAINER.CLIPLORA = CN()
    cfg.TRAINER.CLIPLORA.POSITION = "all"  # --position: which blocks (see POSITIONS)
    cfg.TRAINER.CLIPLORA.ENCODER = "both"  # --encoder: text, vision or both
    cfg.TRAINER.CLIPLORA.PARAMS = ["q", "k", "v"]  # --params: attention matrices (q, k, v, o)
    cfg.TRAINER.CLIPLORA.R = 2  # --r: rank
    cfg.TRAINER.CLIPLORA.ALPHA = 1  # --alpha: the update is scaled by ALPHA / sqrt(R)
    cfg.TRAINER.CLIPLORA.DROPOUT_RATE = 0.25  # --dropout_rate: dropout before each update
    cfg.TRAINER.CLIPLORA.N_ITERS = 500  # --n_iters: N_ITERS * NUM_SHOTS optimizer steps
    cfg.TRAINER.CLIPLORA.PREC = "amp"  # fp16, fp32, amp or bf16 (officially fp16 autocast)
    cfg.TRAINER.CLIPLORA.LORA_FILE = ""  # ours: an official saved LoRA file to load


def positions(name: str, layers: int) -> list[int]:
    """The blocks of ``--position`` for a ``layers``-block tower: the official tables for 12
    blocks (bottom 0-3, mid 4-7, up 8-11, half-bottom 0-5, half-up 6-11, top3 9-11, top/top1
    11, top2 10-11, all), the same fractions for other depths."""
    third, half = layers // 3, layers // 2
    table = {"bottom": range(third), "mid": range(third, layers - third),
             "up": range(layers - third, layers), "half-bottom": range(half),
             "half-up": range(half, layers), "all": range(layers),
             "top": range(layers - 1, layers), "top1": range(layers - 1, layers),
             "top2": range(max(0, layers - 2), layers), "top3": range(max(0, layers - 3), layers)}
    if name not in table:
        raise ValueError(f"TRAINER.CLIPLORA.POSITION '{name}' is not one of {sorted(table)}")
    chosen = list(table[name])
    if not chosen:
        raise ValueError(f"TRAINER.CLIPLORA.POSITION '{name}' holds no block of a "
                         f"{layers}-block tower; use 'all'")
    return chosen


def clip_lora_settings(node: CN) -> dict:
    return {"position": node.POSITION, "encoder": node.ENCODER, "params": list(node.PARAMS),
            "r": int(node.R), "alpha": float(node.ALPHA),
            "dropout_rate": float(node.DROPOUT_RATE)}


class LoRA(nn.Module):
    """``x -> scaling * dropout(x) (B A)^T``: a low-rank update of one ``d_out x d_in`` matrix
    (``w_lora_A`` ``[r, d_in]``, Kaiming-uniform; ``w_lora_B`` ``[d_out, r]``, zero)."""

    def __init__(self, d_in: int, d_out: int, r: int, scaling: float, dropout: float) -> None:
        super().__init__()
        self.w_lora_A = nn.Parameter(torch.zeros(r, d_in))
        self.w_lora_B = nn.Parameter(torch.zeros(d_out, r))
        nn.init.kaiming_uniform_(self.w_lora_A, a=math.sqrt(5))
        self.scaling = scaling
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        return x @ (self.w_lora_B @ self.w_lora_A).t().to(x.dtype) * self.scaling


class LoRAAttention(nn.Module):
    """The updates of one attention block (an attention adapter of clip/adapters.py)."""

    def __init__(self, width: int, params: list[str], r: int, scaling: float,
                 dropout: float) -> None:
        super().__init__()
        for key, name in MATRICES.items():
            setattr(self, name, LoRA(width, width, r, scaling, dropout) if key in params
                    else None)

    def in_proj(self, x: torch.Tensor) -> torch.Tensor | None:
        parts = [getattr(self, name) for name in ("q_proj", "k_proj", "v_proj")]
        if all(p is None for p in parts):
            return None
        zero = x.new_zeros(())
        return torch.cat([p(x) if p is not None else zero.expand_as(x) for p in parts], dim=-1)

    def out_proj(self, h: torch.Tensor) -> torch.Tensor | None:
        return self.proj(h) if self.proj is not None else None


def _tower_layers(clip_model: nn.Module, tower: str) -> int:
    if tower == "text":
        return clip_model.transformer.layers
    transformer = getattr(clip_model.visual, "transformer", None)
    if transformer is None:
        raise ValueError("TRAINER.CLIPLORA.ENCODER adapts the vision transformer; this "
                         "backbone's image encoder is a ResNet: use a ViT or ENCODER text")
    return transformer.layers


@register_learner("CLIPLoRA", node="CLIPLORA", settings=clip_lora_settings)
class CLIPLoRALearner(nn.Module):
    """``text`` and ``vision``: ``{block: LoRAAttention}`` of the adapted towers, and the fixed
    class prompts."""

    prompted_model = AdaptedCLIP

    def __init__(self, clip_model: nn.Module, classnames: list[str], position: str = "all",
                 encoder: str = "both", params: list[str] | tuple = ("q", "k", "v"),
                 r: int = 2, alpha: float = 1.0, dropout_rate: float = 0.25) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"TRAINER.CLIPLORA.ENCODER '{encoder}' is not one of {ENCODERS}")
        unknown = [p for p in params if p not in MATRICES]
        if unknown or not params:
            raise ValueError(f"TRAINER.CLIPLORA.PARAMS {list(params)}: name attention matrices "
                             f"among {list(MATRICES)}")
        if r < 1:
            raise ValueError(f"TRAINER.CLIPLORA.R is {r}; the rank must be >= 1")
        self.settings = {"position": position, "encoder": encoder, "params": list(params),
                         "r": r, "alpha": alpha}
        scaling = alpha / math.sqrt(r)
        names = [c.replace("_", " ") for c in classnames]
        self.class_tokens = ClassTokens(clip_model, [PROMPT.format(c) for c in names])
        widths = {"text": clip_model.text_width, "vision": clip_model.vision_width}
        for tower in TOWERS:
            blocks = (positions(position, _tower_layers(clip_model, tower))
                      if encoder in (tower, "both") else [])
            setattr(self, tower, nn.ModuleDict({
                str(i): LoRAAttention(widths[tower], list(params), r, scaling, dropout_rate)
                for i in blocks}))

    def adapters(self, tower: str) -> tuple[dict, dict]:
        if tower not in TOWERS:
            raise ValueError(f"tower must be one of {TOWERS}; got {tower!r}")
        return {}, {int(i): m for i, m in getattr(self, tower).items()}

    def forward(self) -> PromptSchedule:
        return PromptSchedule(self.class_tokens.embeddings, self.class_tokens.eot)

    def official_layers(self) -> list[LoRAAttention]:
        """The adapted blocks in the order of the official ``apply_lora`` (text, then vision;
        each in block order): the order of an official file's ``layer_<k>`` entries."""
        return [m for tower in TOWERS for _, m in sorted(getattr(self, tower).items(),
                                                          key=lambda kv: int(kv[0]))]

    def load_official(self, data: dict, source: str = "the LoRA file") -> None:
        """Load an official ``save_lora`` file's contents (its metadata must match)."""
        if not isinstance(data, dict) or not {"weights", "metadata"} <= data.keys():
            raise ValueError(f"{source} is not an official CLIP-LoRA file (a dict with "
                             "'weights' and 'metadata', as its save_lora writes)")
        meta = data["metadata"]
        for key, value in self.settings.items():
            found = meta.get(key)
            if key == "alpha":
                found = float(found) if found is not None else None
            if found != value:
                raise ValueError(f"{source} was saved with {key} {found!r}; this run has "
                                 f"{value!r}: set TRAINER.CLIPLORA.{key.upper()} "
                                 f"{found!r}")
        layers = self.official_layers()
        weights = data["weights"]
        if len(weights) != len(layers):
            raise ValueError(f"{source} holds {len(weights)} adapted blocks; this run adapts "
                             f"{len(layers)}")
        state = {}
        for k, module in enumerate(layers):
            for name, pair in module.named_children():
                saved = weights[f"layer_{k}"][name]
                state.update({id(pair.w_lora_A): saved["w_lora_A"],
                              id(pair.w_lora_B): saved["w_lora_B"]})
        with torch.no_grad():
            for p in self.parameters():
                if id(p) in state:
                    p.copy_(state[id(p)])


class CLIPLoRATrainer(PromptTrainer):
    """Low-rank adaptation of CLIP's attention, on an iteration schedule."""

    checkpoint_free_keys = ("PREC", "N_ITERS", "DROPOUT_RATE", "LORA_FILE")

    @property
    def total_iters(self) -> int:
        return int(self.node.N_ITERS) * max(1, int(self.cfg.DATASET.NUM_SHOTS))

    def build_model(self) -> None:
        super().build_model()
        path = self.node.LORA_FILE
        if path:
            self.method.learner.load_official(load_checkpoint(path), path)
            logger.info("Loaded the official LoRA file %s", path)
        if self.train_loader_x is None:
            return
        batches = max(1, len(self.train_loader_x))
        self.max_epoch = math.ceil(self.total_iters / batches)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.optim, self.total_iters,
                                                                eta_min=1e-6)
        self._scheds[self.model_name] = self.sched
        logger.info("CLIP-LoRA: %d iterations (N_ITERS %d x %d shots) in %d epochs of %d "
                    "batches", self.total_iters, self.node.N_ITERS, self.cfg.DATASET.NUM_SHOTS,
                    self.max_epoch, batches)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        iteration = self.epoch * self.num_batches + self.batch_idx
        if iteration >= self.total_iters:
            return {}  # the official loop stops here, within the last epoch
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            losses = self.compute_losses(image, label)
        self.model_zero_grad()
        self.method.backward(losses, self.model_backward)
        self.model_update()
        self.sched.step()  # every iteration
        return {"loss": losses.total.item(), **losses.figures()}


CLIPLoRA = register_method(Method("CLIPLoRA", node="CLIPLORA", learner="CLIPLoRA",
                                  model_name="lora",
                                  doc="Low-rank adaptation of CLIP's attention (CLIP-LoRA)."),
                           trainer=CLIPLoRATrainer, module=__name__)
