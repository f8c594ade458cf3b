"""A plain CLIP forward written as OpenAI's: sequence-first, ``nn.MultiheadAttention``, an
additive causal mask over the full context. Same parameter names, so a CLIP state dict loads."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class RefBlock(nn.Module):
    def __init__(self, width: int, heads: int, mask: torch.Tensor | None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)),
            ("gelu", nn.Identity()),
            ("c_proj", nn.Linear(4 * width, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width)
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [L, N, D]
        mask = None if self.mask is None else self.mask[:x.shape[0], :x.shape[0]]
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        h = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))


class RefTransformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mask: torch.Tensor | None) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[RefBlock(width, heads, mask) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class RefViT(nn.Module):
    def __init__(self, res: int, patch: int, width: int, layers: int, out: int) -> None:
        super().__init__()
        grid = res // patch
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = RefTransformer(width, layers, width // 64, None)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, out))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.conv1(image)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.transformer(self.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0]) @ self.proj


class RefCLIP(nn.Module):
    """OpenAI's ViT CLIP; the text tower always runs on the full context."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        v, context = model.visual, model.context_length
        width = model.transformer.width
        self.visual = RefViT(v.input_resolution, v.conv1.kernel_size[0], v.width,
                             v.transformer.layers, v.output_dim)
        mask = torch.full((context, context), float("-inf")).triu(1)
        self.transformer = RefTransformer(width, model.transformer.layers, width // 64, mask)
        self.token_embedding = nn.Embedding(model.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context, width))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, model.embed_dim))
        self.logit_scale = nn.Parameter(torch.zeros([]))
        self.load_state_dict(model.state_dict(), strict=True)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection
