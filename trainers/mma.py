"""MMA: Multi-Modal Adapter (Yang et al., CVPR 2024, "MMA: Multi-Modal Adapter for
Vision-Language Models", https://openaccess.thecvf.com/content/CVPR2024/html/Yang_MMA_Multi-Modal_Adapter_for_Vision-Language_Models_CVPR_2024_paper.html).

Residual adapters on the higher blocks of both towers (clip/adapters.py's residual slot): block
``i`` (1-based, ``ADAPTER_START <= i <= ADAPTER_END``) adds ``scale * up(shared(down(ln_1(x))))``
to its output, ``x`` its input and ``ln_1`` its own first LayerNorm; ``down`` (Linear + ReLU to
``ADAPTER_DIM``) and ``up`` are per tower, ``shared`` (Linear + ReLU, ``ADAPTER_DIM`` wide) is
one module per block shared by the two towers. As officially, the adapter's input is scaled by
``scale`` and its output by ``1 / scale`` in the backward pass only, so the adapters'
gradients are those of the unscaled branch. Class prompts are fixed ("<TEXT_CTX_INIT> <class>.");
the objective is cross-entropy.

Official config keys: TRAINER.MMADAPTER (TEXT_CTX_INIT, PREC, ADAPTER_START, ADAPTER_END,
ADAPTER_DIM, ADAPTER_SCALE); the registered model is ``adapter_learner``. ADAPTER_START must be
at least 1 (the official code's layer 0 adapts the token embeddings and the patch tokens after
``ln_pre``; none of its configs use it).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from engine.config import CN, register_config
from trainers.adapted import TOWERS, AdaptedCLIP
from trainers.base import ClassTokens, PromptSchedule
from trainers.learners import official_learner_keys, register_learner
from trainers.method import Method, register_method


@register_config
def add_mma_config(cfg: CN) -> None:
    cfg.TRAINER.MMADAPTER = CN()
    cfg.TRAINER.MMADAPTER.TEXT_CTX_INIT = ""  # words before the class name
    cfg.TRAINER.MMADAPTER.PREC = "amp"  # fp16, fp32, amp or bf16
    cfg.TRAINER.MMADAPTER.ADAPTER_START = 4  # first adapted block (1-based)
    cfg.TRAINER.MMADAPTER.ADAPTER_END = 12  # last adapted block (1-based, inclusive)
    cfg.TRAINER.MMADAPTER.ADAPTER_DIM = 32  # the adapters' hidden width
    cfg.TRAINER.MMADAPTER.ADAPTER_SCALE = 0.1  # the adapters' output scale


def mma_settings(node: CN) -> dict:
    return {"ctx_init": node.TEXT_CTX_INIT, "start": int(node.ADAPTER_START),
            "end": int(node.ADAPTER_END), "dim": int(node.ADAPTER_DIM),
            "scale": float(node.ADAPTER_SCALE)}


class GradientScale(torch.autograd.Function):
    """The identity, whose backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def down_up(width: int, dim: int) -> nn.Module:
    return nn.Sequential(OrderedDict([
        ("down", nn.Sequential(nn.Linear(width, dim), nn.ReLU())),
        ("up", nn.Linear(dim, width)),
    ]))


class BlockAdapter:
    """Block ``x -> scale * up(shared(down(block.ln_1(x))))`` (a residual adapter)."""

    def __init__(self, tower: nn.Module, shared: nn.Module, scale: float) -> None:
        self.tower, self.shared, self.scale = tower, shared, scale

    def __call__(self, x: torch.Tensor, block: nn.Module) -> torch.Tensor:
        y = block.ln_1(GradientScale.apply(x, self.scale))
        dtype = self.tower.up.weight.dtype
        y = self.tower.up(self.shared(self.tower.down(y.to(dtype)))) * self.scale
        return GradientScale.apply(y, 1.0 / self.scale)


def mma_official_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official files also hold the class prompts' ``token_embedding`` and
    ``tokenized_prompts`` buffers (rebuilt from the class names here): dropped."""
    return official_learner_keys({k: v for k, v in state_dict.items() if k.removeprefix(
        "adapter_learner.") not in ("token_embedding", "tokenized_prompts")})


@register_learner("MultiModalAdapter", node="MMADAPTER", settings=mma_settings,
                  official_keys=mma_official_keys)
class MMAdapterLearner(nn.Module):
    """``text_adapter``, ``visual_adapter`` and ``shared_adapter``: ``{block (1-based):
    module}`` (the official state-dict names), and the fixed class prompts."""

    prompted_model = AdaptedCLIP

    def __init__(self, clip_model: nn.Module, classnames: list[str], ctx_init: str = "",
                 start: int = 4, end: int = 12, dim: int = 32, scale: float = 0.1) -> None:
        super().__init__()
        text_layers = clip_model.transformer.layers
        vision = getattr(clip_model.visual, "transformer", None)
        if vision is None:
            raise ValueError("MMA adapts both transformers; this backbone's image encoder is "
                             "a ResNet: use a ViT backbone")
        top = min(text_layers, vision.layers)
        if not 1 <= start <= end <= top:
            raise ValueError(f"TRAINER.MMADAPTER.ADAPTER_START ({start}) and ADAPTER_END "
                             f"({end}) must satisfy 1 <= START <= END <= {top} (1-based blocks)")
        if scale == 0:
            raise ValueError("TRAINER.MMADAPTER.ADAPTER_SCALE is 0: the adapters would do "
                             "nothing (and their gradients are divided by it); set it > 0")
        names = [c.replace("_", " ") for c in classnames]
        self.class_tokens = ClassTokens(clip_model, [f"{ctx_init} {c}." for c in names])
        blocks = range(start, end + 1)
        self.text_adapter = nn.ModuleDict({str(i): down_up(clip_model.text_width, dim)
                                           for i in blocks})
        self.visual_adapter = nn.ModuleDict({str(i): down_up(clip_model.vision_width, dim)
                                             for i in blocks})
        self.shared_adapter = nn.ModuleDict({str(i): nn.Sequential(nn.Linear(dim, dim),
                                                                   nn.ReLU())
                                             for i in blocks})
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.scale = scale

    def adapters(self, tower: str) -> tuple[dict, dict]:
        if tower not in TOWERS:
            raise ValueError(f"tower must be one of {TOWERS}; got {tower!r}")
        own = self.text_adapter if tower == "text" else self.visual_adapter
        return {int(i) - 1: BlockAdapter(own[i], self.shared_adapter[i], self.scale)
                for i in own}, {}

    def forward(self) -> PromptSchedule:
        return PromptSchedule(self.class_tokens.embeddings, self.class_tokens.eot)


MultiModalAdapter = register_method(
    Method("MultiModalAdapter", node="MMADAPTER", learner="MultiModalAdapter",
           model_name="adapter_learner",
           doc="Multi-modal adapters on the higher layers of both towers."),
    module=__name__)
