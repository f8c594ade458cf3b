"""CLIP with prompt slots.

The modules, parameter names and shapes are OpenAI's, so their checkpoints load strictly. Two
things differ from OpenAI's forward passes, neither of which changes a result:

* Tensors are batch-first and attention runs through ``scaled_dot_product_attention``.
* Both transformers take *prompts*: a list indexed by layer whose entry ``i`` (a tensor of
  ``n`` tokens, ``[n, d]`` shared over the batch or ``[B, n, d]`` per sample) is written into
  the prompt slot before block ``i`` runs. ``None`` leaves the slot as the previous block left
  it. With no prompts the towers compute exactly CLIP.

  - Text slot: positions ``1 .. n`` (right after the start-of-text token). Layer 0 writes into
    the token embeddings, before the positional embedding is added.
  - Vision slot: layer 0 *appends* its ``n`` tokens after the patch tokens (after the
    positional embedding, before ``ln_pre``; with ``prompt_after_ln_pre`` after ``ln_pre``, so
    the prompts reach the first block as given); deeper layers replace those last ``n`` tokens.

A transformer can save memory in training by recomputing its blocks in the backward pass
(``Transformer.checkpoint_segments``): the gradients are the same.

The text transformer's mask is causal, so tokens after the last end-of-text token never reach an
end-of-text feature: the text tower runs on sequences cut to ``max(eot) + 1`` tokens, and over
many class prompts it sorts them by length and runs groups cut to their own length.

What makes the towers fast without changing results is switched in one place, ``SPEEDUPS``
(change it for a block of code with :func:`speedups`): the benchmark and the tests switch it off
to measure the gain and to check that the results stay the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .backbones import Architecture, Backbone, fingerprint, openai_architecture, openai_name
from .tokenizer import Tokenizer

Prompts = Sequence[torch.Tensor | None] | None

ATTENTION_IMPLS = ("sdpa", "mha")


@dataclass
class Speedups:
    """Switches for what makes CLIP fast without changing its results; all on by default.

    - ``text_truncation``: run the text tower on ``max(eot) + 1`` tokens (off: all of them, 77
      for CLIP's tokenizer, as OpenAI's code does).
    - ``attention``: ``"sdpa"`` (batch-first ``scaled_dot_product_attention`` with a causal flag)
      or ``"mha"`` (OpenAI's path: sequence-first ``multi_head_attention_forward``, which
      ``nn.MultiheadAttention`` runs, with an additive ``-inf`` mask for the text tower).
    - ``length_groups``: sort the text sequences by length and run them in groups, each cut to
      its own longest sequence (needs ``text_truncation``); a group is split off only where it
      saves more than ``group_overhead_tokens`` token positions (the cost of one more pass
      through the tower, so small class sets run as one group).
    - ``text_chunk_size``: at most this many sequences per pass through the text tower (0: no
      limit); caps the memory of inference over many classes.
    - ``shared_prefix``: the tokens every sequence begins with (start of text, the context
      before the class name) run once, and the rest attends to their keys and values
      (clip/prefix.py; needs ``text_truncation`` and ``"sdpa"``).
    - ``fused_quick_gelu``: QuickGELU as one autograd function that keeps only ``1.702 x`` for
      the backward pass (off: the written-out ``x * sigmoid(1.702 x)``, which keeps its input and
      its sigmoid, as OpenAI's code does); the same values either way.
    """

    text_truncation: bool = True
    attention: str = "sdpa"
    length_groups: bool = True
    group_overhead_tokens: int = 2048
    text_chunk_size: int = 0
    shared_prefix: bool = True
    fused_quick_gelu: bool = True

    def validate(self) -> None:
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLS}; "
                             f"got {self.attention!r}")
        if self.group_overhead_tokens < 0 or self.text_chunk_size < 0:
            raise ValueError("group_overhead_tokens and text_chunk_size must be >= 0 (0 for "
                             f"text_chunk_size: no limit); got {self.group_overhead_tokens}, "
                             f"{self.text_chunk_size}")


SPEEDUPS = Speedups()
SPEEDUPS_OFF = {"text_truncation": False, "attention": "mha", "length_groups": False,
                "text_chunk_size": 0, "shared_prefix": False,
                "fused_quick_gelu": False}  # what OpenAI's code computes


@contextlib.contextmanager
def speedups(**changes: bool | int | str) -> Iterator[Speedups]:
    """Change fields of ``SPEEDUPS`` for the block, e.g. ``with speedups(**SPEEDUPS_OFF):``."""
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(Speedups)})
    if unknown:
        raise TypeError(f"unknown speedups {unknown}; the fields are "
                        f"{[f.name for f in dataclasses.fields(Speedups)]}")
    dataclasses.replace(SPEEDUPS, **changes).validate()
    saved = dataclasses.asdict(SPEEDUPS)
    for name, value in changes.items():
        setattr(SPEEDUPS, name, value)
    try:
        yield SPEEDUPS
    finally:
        for name, value in saved.items():
            setattr(SPEEDUPS, name, value)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the dtype of input and weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        out = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):
    """OpenAI's approximation of GELU, ``x * sigmoid(1.702 x)``, which its models were trained
    with (fused: :func:`quick_gelu`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quick_gelu(x)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(1.702 x)`` with the same values, in fewer passes over memory: without
    autograd one new tensor; with it, only ``1.702 x`` is saved for the backward pass (autograd
    of the plain expression saves ``x`` and the sigmoid). Traced (``torch.jit.trace``), it is
    the plain expression, which an exported graph can hold."""
    if torch.jit.is_tracing() or not SPEEDUPS.fused_quick_gelu:
        return x * torch.sigmoid(1.702 * x)
    if torch.is_grad_enabled() and x.requires_grad:
        return _QuickGELU.apply(x)
    y = torch.sigmoid(x * 1.702)
    return y.mul_(x)


class _QuickGELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        scaled = x * 1.702
        ctx.save_for_backward(scaled)
        return torch.sigmoid(scaled).mul_(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # d/dx [x s(t)] with t = 1.702 x: s + t s (1 - s)
        (scaled,) = ctx.saved_tensors
        s = torch.sigmoid(scaled)
        out = grad * scaled
        torch.ops.aten.sigmoid_backward.grad_input(out, s, grad_input=out)  # out s (1 - s)
        return out.addcmul_(grad, s)


class TanhGELU(nn.GELU):
    """GELU's tanh approximation (SigLIP 2's text tower)."""

    def __init__(self) -> None:
        super().__init__(approximate="tanh")


# the activation of the transformers' MLPs, by a backbone description's name
ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {"quick_gelu": QuickGELU, "gelu": nn.GELU,
                                                 "gelu_tanh": TanhGELU}


class MultiheadAttention(nn.Module):
    """Self-attention with ``nn.MultiheadAttention``'s parameter names, batch-first, on SDPA."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"width {embed_dim} is not divisible by {num_heads} heads")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        # clip/prefix.py, for one run: (k, v) -> (k, v, mask), a shared prefix's keys in front
        self.kv_hook = None
        self.adapter = None  # an attention adapter while clip.adapters.adapted() runs

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        adapter = self.adapter
        if SPEEDUPS.attention == "mha" and adapter is None:
            return self.forward_official(x, causal)
        batch, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        if adapter is not None:
            qkv = _added(qkv, adapter.in_proj(x))
        # [B, L, 3d] -> 3 x [B, heads, L, d / heads]
        qkv = qkv.view(batch, length, 3, self.num_heads, width // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        mask = None
        if self.kv_hook is not None:
            k, v, mask = self.kv_hook(k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             is_causal=causal and mask is None)
        out = out.transpose(1, 2).reshape(batch, length, width)
        if adapter is not None:
            return _added(self.out_proj(out), adapter.out_proj(out))
        return self.out_proj(out)

    def forward_official(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """What OpenAI's ``nn.MultiheadAttention`` computes: sequence-first, with an additive
        ``-inf`` mask above the diagonal for causal attention."""
        length = x.shape[1]
        mask = None
        if causal:
            mask = torch.full((length, length), float("-inf"), device=x.device,
                              dtype=x.dtype).triu_(1)
        seq = x.transpose(0, 1)  # [B, L, d] -> [L, B, d]
        out, _ = F.multi_head_attention_forward(
            seq, seq, seq, self.embed_dim, self.num_heads, self.in_proj_weight,
            self.in_proj_bias, None, None, False, 0.0, self.out_proj.weight, self.out_proj.bias,
            training=self.training, need_weights=False, attn_mask=mask)
        return out.transpose(0, 1)


def _added(x: torch.Tensor, delta: torch.Tensor | None) -> torch.Tensor:
    return x if delta is None else x + delta.to(x.dtype)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, causal: bool = False,
                 activation: str = "quick_gelu", mlp_ratio: float = 4.0,
                 norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.causal = causal
        self.attn = MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width, eps=norm_eps)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)),
            ("gelu", ACTIVATION_LAYERS[activation]()),  # OpenAI's name, whatever the activation
            ("c_proj", nn.Linear(hidden, width)),
        ]))
        self.ln_2 = LayerNorm(width, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=self.causal)
        return x + self.mlp(self.ln_2(x))


def write_slot(x: torch.Tensor, prompt: torch.Tensor, start: int) -> torch.Tensor:
    """Return ``x`` with tokens ``start .. start + n`` replaced by ``prompt`` (``[n, d]`` or
    ``[B, n, d]``), without modifying ``x`` in place."""
    prompt = _batched(prompt, x.shape[0]).to(x.dtype)
    end = start + prompt.shape[1]
    if start < 0 or end > x.shape[1]:
        raise ValueError(f"prompt slot {start}..{end} does not fit in {x.shape[1]} tokens")
    return torch.cat([x[:, :start], prompt, x[:, end:]], dim=1)


def _batched(prompt: torch.Tensor, batch: int) -> torch.Tensor:
    if prompt.dim() == 2:
        return prompt.unsqueeze(0).expand(batch, -1, -1)
    if prompt.dim() == 3 and prompt.shape[0] in (1, batch):
        return prompt.expand(batch, -1, -1)
    raise ValueError(f"a prompt must be [n, d] or [{batch}, n, d]; got {tuple(prompt.shape)}")


class Transformer(nn.Module):
    """A stack of residual attention blocks taking per-layer prompts.

    ``forward(x, prompts, slot_start)``: before block ``i``, a tensor ``prompts[i]`` of ``n``
    tokens replaces tokens ``slot_start .. slot_start + n`` of ``x`` (``[B, L, width]``).

    ``checkpoint_segments`` (default 1: off): when gradients are on, the blocks run in that many
    segments of ``layers // segments`` blocks (the last takes the rest), and every segment but
    the last keeps only its input for the backward pass, recomputing its blocks there (as
    ``torch.utils.checkpoint.checkpoint_sequential``). Less memory, one more forward pass of
    those blocks, the same gradients.
    """

    def __init__(self, width: int, layers: int, heads: int, causal: bool = False,
                 activation: str = "quick_gelu", mlp_ratio: float = 4.0,
                 norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.heads = heads
        self.causal = causal  # False (SigLIP's text tower): every token sees every other
        self.checkpoint_segments = 1
        self.residual_adapters = None  # per-block callables while clip.adapters.adapted() runs
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, causal, activation, mlp_ratio, norm_eps)
              for _ in range(layers)])

    def forward(self, x: torch.Tensor, prompts: Prompts = None,
                slot_start: int = 1) -> torch.Tensor:
        if prompts is not None and len(prompts) > self.layers:
            raise ValueError(f"{len(prompts)} layers of prompts for a {self.layers}-layer "
                             "transformer")
        for start, end, recompute in self.segments():
            run = functools.partial(self._run_blocks, start=start, end=end, prompts=prompts,
                                    slot_start=slot_start)
            x = checkpoint(run, x, use_reentrant=False) if recompute else run(x)
        return x

    def segments(self) -> list[tuple[int, int, bool]]:
        """(first block, end, recomputed in the backward pass) of each segment."""
        count = min(int(self.checkpoint_segments), self.layers)
        if count < 1:
            raise ValueError(f"checkpoint_segments must be >= 1 (1: off); got "
                             f"{self.checkpoint_segments}")
        if count == 1 or not torch.is_grad_enabled():
            return [(0, self.layers, False)]
        size = self.layers // count
        bounds = [(i * size, (i + 1) * size, True) for i in range(count - 1)]
        return [*bounds, ((count - 1) * size, self.layers, False)]

    def _run_blocks(self, x: torch.Tensor, start: int, end: int, prompts: Prompts,
                    slot_start: int) -> torch.Tensor:
        for i in range(start, end):
            if prompts is not None and i < len(prompts) and prompts[i] is not None:
                x = write_slot(x, prompts[i], slot_start)
            adapter = self.residual_adapters[i] if self.residual_adapters is not None else None
            y = self.resblocks[i](x)
            x = y if adapter is None else y + adapter(x, self.resblocks[i])
        return x


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int,
                 heads: int, output_dim: int, activation: str = "quick_gelu",
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.width = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        grid = input_resolution // patch_size
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, activation=activation,
                                       mlp_ratio=mlp_ratio)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, image: torch.Tensor, prompts: Prompts = None,
                prompt_after_ln_pre: bool = False) -> torch.Tensor:
        """Image features; ``prompts`` as the module doc says. ``prompt_after_ln_pre``: the
        layer-0 prompts are appended after ``ln_pre`` instead of before it."""
        x = self.conv1(image.to(self.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)  # [B, width, g, g] -> [B, g*g, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        slot_start = x.shape[1]
        first = _first_vision_prompt(prompts)
        if first is not None and not prompt_after_ln_pre:
            x = torch.cat([x, _batched(first, x.shape[0]).to(x.dtype)], dim=1)
        x = self.ln_pre(x)
        if first is not None and prompt_after_ln_pre:
            x = torch.cat([x, _batched(first, x.shape[0]).to(x.dtype)], dim=1)
        deeper = [None, *prompts[1:]] if first is not None else None
        x = self.transformer(x, deeper, slot_start)
        x = self.ln_post(x[:, 0])
        return x @ self.proj


def _first_vision_prompt(prompts: Prompts) -> torch.Tensor | None:
    """The layer-0 vision prompt, after checking that the deeper ones fit its slot."""
    if not prompts:
        return None
    first = prompts[0]
    if first is None:
        if any(p is not None for p in prompts):
            raise ValueError("deep vision prompts need layer-0 prompts: the slot is created by "
                             "appending the layer-0 tokens")
        return None
    for p in prompts[1:]:
        if p is not None and p.shape[-2] != first.shape[-2]:
            raise ValueError("every vision prompt must have as many tokens as layer 0 "
                             f"({first.shape[-2]}); got {p.shape[-2]}")
    return first


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        # every convolution has stride 1; an avgpool follows the second one when stride > 1
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu3(out + identity)


class AttentionPool2d(nn.Module):
    """Attention pooling: the mean token attends to all spatial tokens."""

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int,
                 output_dim: int | None = None) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(
            torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)  # [B, C, H, W] -> [B, HW, C]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        x = x + self.positional_embedding.to(x.dtype)
        batch, length, width = x.shape
        head_dim = width // self.num_heads
        q = self.q_proj(x[:, :1]).view(batch, 1, self.num_heads, head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.num_heads, head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.num_heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, 1, head_dim]
        return self.c_proj(out.transpose(1, 2).reshape(batch, width))


class ModifiedResNet(nn.Module):
    """OpenAI's ResNet: a 3-convolution stem with an average pool, anti-aliased strided
    convolutions (avgpool before the stride-1 convolution), and attention pooling."""

    def __init__(self, layers: Sequence[int], output_dim: int, heads: int,
                 input_resolution: int = 224, width: int = 64) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.input_resolution = input_resolution
        self.width = width * 32  # the width of the pooled feature map
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, prompts: Prompts = None,
                prompt_after_ln_pre: bool = False) -> torch.Tensor:
        if prompts and any(p is not None for p in prompts):
            raise ValueError("vision prompts need a ViT image tower; this CLIP has a ResNet "
                             "(choose a ViT backbone, e.g. MODEL.BACKBONE.NAME ViT-B/16)")
        x = image.to(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class CLIP(nn.Module):
    """OpenAI's CLIP with prompt slots.

    The positional arguments are OpenAI's; the keyword-only ones describe other backbones of
    CLIP's shape (``vision_heads`` defaults to OpenAI's 64-channel heads). ``backbone`` is the
    model's description (clip/backbones.py) and ``tokenizer`` its tokenizer; models built by
    :meth:`from_backbone` (what ``clip.load`` does) carry the backbone's own description.
    """

    def __init__(self, embed_dim: int, image_resolution: int,
                 vision_layers: int | Sequence[int], vision_width: int,
                 vision_patch_size: int | None, context_length: int, vocab_size: int,
                 transformer_width: int, transformer_heads: int,
                 transformer_layers: int, *, activation: str = "quick_gelu",
                 vision_heads: int | None = None, vision_mlp_ratio: float = 4.0,
                 text_mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.context_length = context_length
        self.embed_dim = embed_dim
        resnet = isinstance(vision_layers, (tuple, list))
        if vision_heads is None:
            vision_heads = (vision_width * 32 if resnet else vision_width) // 64
        if resnet:
            self.visual: nn.Module = ModifiedResNet(
                layers=vision_layers, output_dim=embed_dim, heads=vision_heads,
                input_resolution=image_resolution, width=vision_width)
        else:
            if vision_patch_size is None:
                raise ValueError("a ViT image tower needs vision_patch_size")
            self.visual = VisionTransformer(
                input_resolution=image_resolution, patch_size=vision_patch_size,
                width=vision_width, layers=vision_layers, heads=vision_heads,
                output_dim=embed_dim, activation=activation, mlp_ratio=vision_mlp_ratio)
        self.transformer = Transformer(transformer_width, transformer_layers,
                                       transformer_heads, causal=True, activation=activation,
                                       mlp_ratio=text_mlp_ratio)
        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.logit_bias: torch.Tensor | None = None  # SigLIP's learned bias (clip/siglip.py)
        self.initialize_parameters()
        arch = Architecture(
            embed_dim=embed_dim, image_size=image_resolution,
            vision_layers=tuple(vision_layers) if resnet else vision_layers,
            vision_width=vision_width, vision_heads=vision_heads, patch_size=vision_patch_size,
            context_length=context_length, vocab_size=vocab_size,
            text_width=transformer_width, text_heads=transformer_heads,
            text_layers=transformer_layers, activation=activation,
            vision_mlp_ratio=vision_mlp_ratio, text_mlp_ratio=text_mlp_ratio)
        self.backbone = Backbone("custom", arch)
        self.tokenizer: Tokenizer = self.backbone.tokenizer()

    @classmethod
    def from_backbone(cls, backbone: Backbone) -> CLIP:
        """A randomly initialised CLIP of ``backbone``'s architecture, carrying its
        description and tokenizer."""
        if backbone.arch.family == "siglip" and cls is CLIP:
            from .siglip import SigLIP

            return SigLIP(backbone)
        a = backbone.arch
        model = cls(a.embed_dim, a.image_size, a.vision_layers, a.vision_width, a.patch_size,
                    a.context_length, a.vocab_size, a.text_width, a.text_heads, a.text_layers,
                    activation=a.activation, vision_heads=a.vision_heads,
                    vision_mlp_ratio=a.vision_mlp_ratio, text_mlp_ratio=a.text_mlp_ratio)
        model.backbone = backbone
        model.tokenizer = backbone.tokenizer()
        return model

    def identity(self) -> dict[str, str]:
        """What a checkpoint records about the backbone it was trained on: the canonical
        ``backbone`` name (clip/backbones.py) and a ``fingerprint`` of the weights (equal for the
        same weights in fp32 or fp16, whatever name loaded them)."""
        return {"backbone": self.backbone.name, "fingerprint": fingerprint(self)}

    def initialize_parameters(self) -> None:
        """OpenAI's initialisation (what a tiny random CLIP starts from)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            std = pool.c_proj.in_features ** -0.5
            for proj in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(proj.weight, std=std)
            for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3,
                          self.visual.layer4):
                for name, param in stage.named_parameters():
                    if name.endswith("bn3.weight"):
                        nn.init.zeros_(param)
        _init_transformer(self.transformer)
        if isinstance(self.visual, VisionTransformer):
            _init_transformer(self.visual.transformer)
        nn.init.normal_(self.text_projection, std=self.transformer.width ** -0.5)

    # sizes prompt learners read
    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    @property
    def text_width(self) -> int:
        return self.transformer.width

    @property
    def vision_width(self) -> int:
        return self.visual.width

    def encode_image(self, image: torch.Tensor, prompts: Prompts = None,
                     prompt_after_ln_pre: bool = False) -> torch.Tensor:
        return self.visual(image, prompts, prompt_after_ln_pre=prompt_after_ln_pre)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """Text features from token ids ``[N, L]`` of this model's tokenizer (each sequence's
        feature is taken at its first end-of-text token)."""
        return self.encode_text_embeddings(self.token_embedding(text),
                                           self.tokenizer.eot_positions(text))

    def encode_text_embeddings(self, embeddings: torch.Tensor, eot_indices: torch.Tensor,
                               prompts: Prompts = None, shared_prefix=None) -> torch.Tensor:
        """Text features from token embeddings ``[N, L, width]`` (no positional embedding) and
        the position of each sequence's end-of-text token.

        Per-sequence prompts (``[N, n, d]``) follow their sequences into the groups and chunks
        of ``SPEEDUPS``; the features come back in the order of ``embeddings``.
        ``shared_prefix`` (a ``clip.prefix.SharedPrefix`` or a number of tokens): where the
        class-dependent part starts, as the caller's layout knows it; without it the prefix
        shared by all sequences is found where that is safe (clip/prefix.py).
        """
        count = embeddings.shape[0]
        if eot_indices.shape != (count,):
            raise ValueError(f"eot_indices must have shape [{count}] (one position per "
                             f"sequence); got {tuple(eot_indices.shape)}")
        from .prefix import encode_with_prefix, plan_prefix
        shared = plan_prefix(self, embeddings, eot_indices, prompts, shared_prefix)
        if shared is not None:
            return encode_with_prefix(self, embeddings, eot_indices, prompts, shared)
        options = SPEEDUPS if self.transformer.causal else dataclasses.replace(
            SPEEDUPS, text_truncation=False)  # without a causal mask every position counts
        plan = text_groups(eot_indices, embeddings.shape[1], options)
        if len(plan) == 1 and plan[0][0] is None:
            return self._encode_text_group(embeddings, eot_indices, prompts, plan[0][1])
        plan = [(idx.to(embeddings.device), length) for idx, length in plan]
        features = [self._encode_text_group(embeddings[idx], eot_indices[idx],
                                            _select_prompts(prompts, idx, count), length)
                    for idx, length in plan]
        order = torch.cat([idx for idx, _ in plan])
        return torch.cat(features)[torch.argsort(order)]

    def _encode_text_group(self, embeddings: torch.Tensor, eot_indices: torch.Tensor,
                           prompts: Prompts, length: int) -> torch.Tensor:
        """The text tower on sequences cut to their first ``length`` tokens."""
        x = embeddings[:, :length].to(self.dtype)
        if prompts and prompts[0] is not None:
            x = write_slot(x, prompts[0], 1)
        x = x + self.positional_embedding[:length].to(x.dtype)
        deeper = [None, *prompts[1:]] if prompts else None
        x = self.transformer(x, deeper, slot_start=1)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_indices]
        return x @ self.text_projection.to(x.dtype)

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """The model's own logits ``[B, N]`` of normalised features (text ``[N, D]``, or
        ``[B, N, D]`` per image): scaled cosine similarities, plus the learned bias of a
        sigmoid model (SigLIP). The one place every trainer's logits come from."""
        scale = self.logit_scale.exp()
        if text_features.dim() == 3:
            logits = scale * torch.einsum("bd,bnd->bn", image_features, text_features)
        else:
            logits = scale * image_features @ text_features.t()
        return logits if self.logit_bias is None else logits + self.logit_bias

    def forward(self, image: torch.Tensor,
                text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """OpenAI's ``CLIP.forward``: (logits per image, logits per text)."""
        image_features = F.normalize(self.encode_image(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        logits_per_image = self.logits(image_features, text_features)
        return logits_per_image, logits_per_image.t()


TextPlan = list[tuple[torch.Tensor | None, int]]


def text_groups(eot_indices: torch.Tensor, context: int, options: Speedups) -> TextPlan:
    """How the text tower runs ``N`` sequences: a list of (indices of the sequences, or
    ``None`` for all of them in order; the number of tokens to keep).

    Without grouping or chunking there is one pass over all sequences. Grouping sorts the
    sequences by end-of-text position and splits them where a split saves more token positions
    than ``options.group_overhead_tokens`` (an exact dynamic programme over the distinct
    lengths); chunking then splits every group into runs of at most ``text_chunk_size``.
    """
    count = eot_indices.shape[0]
    if count == 0:
        raise ValueError("no text sequences to encode")
    plan: TextPlan
    if not options.text_truncation:
        plan = [(None, context)]
    else:
        lengths = eot_indices.detach().cpu().long() + 1
        if not options.length_groups:
            plan = [(None, int(lengths.max()))]
        else:
            order = torch.argsort(lengths, stable=True)
            sorted_lengths = lengths[order]
            bounds = _group_bounds(sorted_lengths.tolist(), options.group_overhead_tokens)
            plan = [(order[start:end], int(sorted_lengths[end - 1])) for start, end in bounds]
            if len(plan) == 1:
                plan = [(None, plan[0][1])]
    size = options.text_chunk_size
    if size and count > size:
        everything = torch.arange(count)
        return _chunked([(everything if idx is None else idx, length) for idx, length in plan],
                        size)
    return plan


def _group_bounds(sorted_lengths: list[int], overhead: int) -> list[tuple[int, int]]:
    """(start, end) of the groups of a sorted list of lengths that minimise
    ``sum(group size * group's longest length) + overhead * number of groups``."""
    # the ends of runs of equal length are the only places worth splitting at
    ends = [i + 1 for i in range(len(sorted_lengths))
            if i + 1 == len(sorted_lengths) or sorted_lengths[i + 1] != sorted_lengths[i]]
    best = [0.0] + [math.inf] * len(ends)  # best[k]: cost of the first ends[k - 1] sequences
    cut = [0] * (len(ends) + 1)
    for k in range(1, len(ends) + 1):
        end = ends[k - 1]
        for j in range(k):
            start = ends[j - 1] if j else 0
            cost = best[j] + (end - start) * sorted_lengths[end - 1] + overhead
            if cost < best[k]:
                best[k], cut[k] = cost, j
    bounds, k = [], len(ends)
    while k:
        j = cut[k]
        bounds.append((ends[j - 1] if j else 0, ends[k - 1]))
        k = j
    return bounds[::-1]


def _chunked(groups: TextPlan, size: int) -> TextPlan:
    return [(idx[i:i + size], length) for idx, length in groups
            for i in range(0, idx.shape[0], size)]


def _select_prompts(prompts: Prompts, idx: torch.Tensor, count: int) -> Prompts:
    """The prompts of the sequences ``idx``: per-sequence prompts ``[count, n, d]`` are indexed,
    shared ones (``[n, d]`` or ``[1, n, d]``) kept."""
    if prompts is None:
        return None
    selected = []
    for prompt in prompts:
        if prompt is not None and prompt.dim() == 3 and prompt.shape[0] not in (1, count):
            raise ValueError(f"a text prompt must be [n, d], [1, n, d] or [{count}, n, d] (one "
                             f"per sequence); got {tuple(prompt.shape)}")
        per_sequence = prompt is not None and prompt.dim() == 3 and prompt.shape[0] > 1
        selected.append(prompt[idx.to(prompt.device)] if per_sequence else prompt)
    return selected


def _init_transformer(transformer: Transformer) -> None:
    width, layers = transformer.width, transformer.layers
    proj_std = width ** -0.5 * (2 * layers) ** -0.5
    attn_std = width ** -0.5
    fc_std = (2 * width) ** -0.5
    for block in transformer.resblocks:
        nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
        nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
        nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
        nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)


def convert_weights(model: nn.Module, dtype: torch.dtype = torch.float16) -> nn.Module:
    """Cast, as OpenAI's ``convert_weights`` does, the weights of convolutions, linear layers
    and attention, and the projections (``proj``, ``text_projection``), to ``dtype``.

    Embeddings, LayerNorm, BatchNorm and ``logit_scale`` stay fp32 (LayerNorm computes in fp32
    whatever its input). Returns ``model``, modified in place.
    """
    def cast(module: nn.Module) -> None:
        names: tuple[str, ...] = ()
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            names = ("weight", "bias")
        elif isinstance(module, MultiheadAttention):
            names = ("in_proj_weight", "in_proj_bias")
        elif isinstance(module, (CLIP, VisionTransformer)):
            names = ("text_projection", "proj")
        for name in names:
            param = getattr(module, name, None)
            if isinstance(param, torch.Tensor):
                param.data = param.data.to(dtype)

    model.apply(cast)
    return model


def _construction_device(state_dict: dict[str, torch.Tensor]) -> str:
    """Where to construct a CLIP before its tensors are assigned from a state dict. The meta
    device skips the random initialisation (seconds for full-size models), but its first use
    in a process imports torch's decompositions (about 1.5 s): only large models gain."""
    return "meta" if sum(v.numel() for v in state_dict.values()) > 20_000_000 else "cpu"


def build_model(state_dict: dict[str, torch.Tensor], *, copy: bool = True,
                backbone: Backbone | None = None) -> CLIP:
    """Build a CLIP (fp32) of ``backbone``'s architecture and load the state dict (OpenAI's
    key layout) strictly.

    Without ``backbone`` the state dict is taken to be OpenAI's (OpenAI's ``build_model``): its
    hyper-parameters are read off the shapes with OpenAI's rules (QuickGELU, 64-channel heads).
    With ``copy=False`` the model takes over the state dict's fp32 tensors instead of copying
    them (for a state dict nobody else holds, such as one just read from a file).
    """
    sd = {k: v for k, v in state_dict.items()
          if k not in ("input_resolution", "context_length", "vocab_size")}
    if backbone is None:
        arch = openai_architecture(sd)
        backbone = Backbone(openai_name(arch) or "custom", arch)
    with torch.device(_construction_device(sd)):
        model = CLIP.from_backbone(backbone)
    sd = {k: v.to(torch.float32 if v.is_floating_point() else v.dtype, copy=copy)
          for k, v in sd.items()}
    try:
        model.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as err:
        raise RuntimeError(f"the weights do not fit the architecture of {backbone.name} "
                         f"({backbone.arch.describe()}): {err}") from err
    return model.eval()
