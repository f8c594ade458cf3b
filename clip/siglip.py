"""SigLIP and SigLIP 2 (open_clip's ``*-SigLIP*`` models) with the prompt slots of CLIP's towers.

A SigLIP differs from CLIP's shape in four places; everything else (the residual blocks, the
prompt slots, the adapters of clip/model.py) is shared:

* The image tower is timm's ViT without a class token and without ``ln_pre``: patch
  embeddings (a convolution with a bias) plus positional embeddings run through the blocks, a
  final LayerNorm, then an attention-pooling head (a learned latent query attends to the
  tokens, then a residual MLP). Vision prompts are appended after the patch tokens as for CLIP
  (before or after ``ln_pre`` is the same place here); the head pools the image's own tokens,
  so prompts act through the blocks, as CLIP's prompts act on its class token.
* The text tower is not causal and is pooled at its last position (the context is always
  padded to its full length, so every text is read at the same place); its projection has a
  bias. Token ids of :class:`clip.siglip_tokenizer.SentencePieceTokenizer` carry a
  placeholder at position 0, where CLIP has its start-of-text token, so that the text prompt
  slot starts at position 1 for every backbone; the tower drops it before the positional
  embedding.
* The logit is ``exp(logit_scale) * cos + logit_bias`` (a sigmoid model's).
* LayerNorms use eps 1e-6; the image MLPs use exact GELU, SigLIP 2's text MLPs tanh-GELU.

Parameter names are CLIP's where the part is CLIP's (``visual.conv1``,
``visual.transformer.resblocks.N.attn.in_proj_weight``, ``ln_final``...); :func:`siglip_keys`
maps open_clip's state dicts (timm's names in ``visual.trunk.``, the text tower in ``text.``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Architecture, Backbone
from .model import (
    ACTIVATION_LAYERS,
    CLIP,
    LayerNorm,
    Prompts,
    Transformer,
    _batched,
    _construction_device,
    _first_vision_prompt,
    _init_transformer,
    write_slot,
)

TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer.model")

# what a SigLIP config may hold, with the values this module computes (None: any value)
_TOP = {"embed_dim": None, "init_logit_bias": None, "custom_text": (True,),
        "quick_gelu": (False,), "init_logit_scale": None, "nonscalar_logit_scale": (False,),
        "cast_dtype": None, "output_dict": None}
_VISION = {"image_size": None, "timm_model_name": None, "timm_model_pretrained": None,
           "timm_pool": ("map",), "timm_proj": ("none",), "timm_drop": None,
           "timm_drop_path": None, "patch_dropout": None}
_TEXT = {"context_length": None, "vocab_size": None, "hf_tokenizer_name": None,
         "tokenizer_kwargs": ({"clean": "canonicalize"},), "width": None, "heads": None,
         "layers": None, "mlp_ratio": None, "no_causal_mask": (True,), "proj_bias": (True,),
         "pool_type": ("last",), "norm_kwargs": None, "act_kwargs": (None, {},
                                                                    {"approximate": "tanh"}),
         "output_tokens": None}


def is_siglip_config(model_cfg: dict) -> bool:
    """Whether an open_clip model config is of the SigLIP family (sigmoid logits with a bias
    and a timm image tower)."""
    return "init_logit_bias" in model_cfg and bool(
        model_cfg.get("vision_cfg", {}).get("timm_model_name"))


def _option_problems(where: str, options: dict, allowed: dict) -> list[str]:
    problems = []
    for key, value in options.items():
        if key not in allowed:
            problems.append(f"{where}{key}={value!r}")
        elif allowed[key] is not None and value not in allowed[key]:
            problems.append(f"{where}{key}={value!r} (supported: {allowed[key]})")
    return problems


@cache
def _timm_trunk(name: str) -> nn.Module:
    """timm's image tower ``name`` as open_clip builds it (no classifier, attention-pool head),
    on the meta device: its structure, without weights."""
    import timm

    return timm.create_model(name, pretrained=False, num_classes=0, global_pool="map",
                             device="meta", weight_init="skip")


def _activation_name(module: nn.Module) -> str | None:
    """Our name of a timm MLP's activation (None: one we do not compute)."""
    if type(module) is nn.GELU:
        return {"none": "gelu", "tanh": "gelu_tanh"}[module.approximate]
    return {"GELUTanh": "gelu_tanh"}.get(type(module).__name__)


def _trunk_problems(trunk: nn.Module) -> list[str]:
    """What in a timm ViT differs from the tower :class:`SigLIPVisionTransformer` computes."""
    from timm.layers import AttentionPoolLatent, Mlp
    from timm.models.vision_transformer import Block

    problems = []
    if type(trunk).__name__ != "VisionTransformer":
        return [f"a timm image tower of type {type(trunk).__name__} (supported: ViT)"]
    if trunk.num_prefix_tokens or getattr(trunk, "dynamic_img_size", False):
        problems.append("class or register tokens in the image tower")
    identity = ("norm_pre", "fc_norm", "head")
    problems += [f"image tower's {n}" for n in identity
                 if not isinstance(getattr(trunk, n), nn.Identity)]
    if not isinstance(trunk.patch_embed.norm, nn.Identity) or trunk.patch_embed.proj.bias is None:
        problems.append("a patch embedding other than a convolution with bias")
    pool = trunk.attn_pool
    if not (isinstance(pool, AttentionPoolLatent) and pool.latent_len == 1
            and pool.pos_embed is None and isinstance(pool.q, nn.Linear)
            and isinstance(pool.q_norm, nn.Identity) and pool.mlp is not None
            and pool.pool == "token"
            and _activation_name(pool.mlp.act) == _activation_name(trunk.blocks[0].mlp.act)):
        problems.append("an image pooling head other than SigLIP's attention pool")
    for block in trunk.blocks:
        plain = (type(block) is Block and isinstance(block.ls1, nn.Identity)
                 and isinstance(block.ls2, nn.Identity)
                 and isinstance(block.attn.q_norm, nn.Identity)
                 and isinstance(getattr(block.attn, "norm", nn.Identity()), nn.Identity)
                 and type(block.mlp) is Mlp and isinstance(block.mlp.norm, nn.Identity)
                 and _activation_name(block.mlp.act) is not None)
        if not plain:
            problems.append("image blocks other than pre-norm attention + MLP (layer scale, "
                            "qk-norm, gated MLPs)")
            break
    return problems


def siglip_problems(model_cfg: dict) -> list[str]:
    """Why a SigLIP-family open_clip config is outside what this module computes (empty when
    it fits)."""
    problems = _option_problems("", {k: v for k, v in model_cfg.items()
                                     if k not in ("vision_cfg", "text_cfg")}, _TOP)
    problems += _option_problems("vision_cfg.", model_cfg["vision_cfg"], _VISION)
    problems += _option_problems("text_cfg.", model_cfg["text_cfg"], _TEXT)
    if not model_cfg["text_cfg"].get("hf_tokenizer_name"):
        problems.append("no text_cfg.hf_tokenizer_name (the tokenizer's files)")
    if problems:
        return problems
    try:
        trunk = _timm_trunk(model_cfg["vision_cfg"]["timm_model_name"])
    except Exception as err:  # an unknown timm name, or a timm without it
        return [f"a timm image tower timm cannot build ({err})"]
    return _trunk_problems(trunk) + _size_problems(model_cfg, trunk)


def _size_problems(model_cfg: dict, trunk: nn.Module) -> list[str]:
    problems = []
    image, patch = trunk.patch_embed.img_size, trunk.patch_embed.patch_size
    if image[0] != image[1] or image[0] % patch[0]:
        problems.append(f"an image size {tuple(image)} that is not a square multiple of its "
                        f"patch {tuple(patch)}")
    eps = (model_cfg["text_cfg"].get("norm_kwargs") or {}).get("eps", 1e-5)
    if not math.isclose(trunk.blocks[0].norm1.eps, eps):
        problems.append(f"LayerNorm eps {trunk.blocks[0].norm1.eps} in the image tower and "
                        f"{eps} in the text tower")
    if trunk.embed_dim != model_cfg["embed_dim"]:
        problems.append(f"an image width {trunk.embed_dim} other than embed_dim "
                        f"{model_cfg['embed_dim']} (a projection after the head)")
    return problems


def siglip_architecture(model_cfg: dict, what: str) -> Architecture:
    """The architecture of a SigLIP-family open_clip config (``what`` names it in errors)."""
    from .backbones import supported_message

    problems = siglip_problems(model_cfg)
    if problems:
        raise ValueError(f"{what} is not a SigLIP this project can run: it has "
                         f"{'; '.join(problems)}. {supported_message()}")
    trunk = _timm_trunk(model_cfg["vision_cfg"]["timm_model_name"])
    text = model_cfg["text_cfg"]
    block = trunk.blocks[0]
    eps = float((text.get("norm_kwargs") or {}).get("eps", 1e-5))
    image = trunk.patch_embed.img_size
    width = trunk.embed_dim
    text_act = "gelu_tanh" if (text.get("act_kwargs") or {}).get("approximate") == "tanh" \
        else "gelu"
    return Architecture(
        embed_dim=int(model_cfg["embed_dim"]), image_size=int(image[0]),
        vision_layers=len(trunk.blocks), vision_width=width,
        vision_heads=block.attn.num_heads, patch_size=int(trunk.patch_embed.patch_size[0]),
        context_length=int(text.get("context_length", 77)),
        vocab_size=int(text.get("vocab_size", 49408)), text_width=int(text.get("width", 512)),
        text_heads=int(text.get("heads", 8)), text_layers=int(text.get("layers", 12)),
        activation=_activation_name(block.mlp.act), vision_mlp_ratio=(
            block.mlp.fc1.out_features / width),
        text_mlp_ratio=float(text.get("mlp_ratio", 4.0)), family="siglip",
        text_activation=text_act, norm_eps=eps)


def vocabulary(model_cfg: dict, folder: Path | None) -> str:
    """Where a SigLIP's tokenizer files are: its own folder when it holds them, else the
    Hugging Face repository its config names."""
    if folder is not None and any((folder / name).is_file() for name in TOKENIZER_FILES):
        return f"dir:{folder}"
    return f"hf-hub:{model_cfg['text_cfg']['hf_tokenizer_name']}"


# --------------------------------------------------------------------------- towers


class AttentionPoolHead(nn.Module):
    """SigLIP's image head: one learned query attends to the tokens, then a residual MLP
    (timm's ``AttentionPoolLatent`` names)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, activation: str,
                 norm_eps: float) -> None:
        super().__init__()
        self.num_heads = heads
        self.latent = nn.Parameter(torch.zeros(1, 1, width))
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.norm = LayerNorm(width, eps=norm_eps)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(width, hidden)), ("act", ACTIVATION_LAYERS[activation]()),
            ("fc2", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        head = width // self.num_heads
        q = self.q(self.latent.to(x.dtype)).view(1, 1, self.num_heads, head).transpose(1, 2)
        # [B, L, 2d] -> 2 x [B, heads, L, d / heads]
        k, v = self.kv(x).view(batch, length, 2, self.num_heads, head).permute(
            2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q.expand(batch, -1, -1, -1), k, v)
        out = self.proj(out.transpose(1, 2).reshape(batch, 1, width))
        out = out + self.mlp(self.norm(out))
        return out[:, 0]


class SigLIPVisionTransformer(nn.Module):
    """timm's SigLIP ViT with CLIP's prompt slots (the module docstring says where)."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int,
                 heads: int, mlp_ratio: float, activation: str, norm_eps: float) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = width
        self.width = width
        grid = input_resolution // patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)
        self.positional_embedding = nn.Parameter(width ** -0.5 * torch.randn(grid * grid,
                                                                             width))
        self.transformer = Transformer(width, layers, heads, activation=activation,
                                       mlp_ratio=mlp_ratio, norm_eps=norm_eps)
        self.ln_post = LayerNorm(width, eps=norm_eps)
        self.attn_pool = AttentionPoolHead(width, heads, mlp_ratio, activation, norm_eps)

    def forward(self, image: torch.Tensor, prompts: Prompts = None,
                prompt_after_ln_pre: bool = False) -> torch.Tensor:
        x = self.conv1(image.to(self.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)  # [B, width, g, g] -> [B, g*g, width]
        x = x + self.positional_embedding.to(x.dtype)
        tokens = x.shape[1]
        first = _first_vision_prompt(prompts)
        if first is not None:  # no ln_pre: before and after it are the same place
            x = torch.cat([x, _batched(first, x.shape[0]).to(x.dtype)], dim=1)
        deeper = [None, *prompts[1:]] if first is not None else None
        x = self.transformer(x, deeper, tokens)
        return self.attn_pool(self.ln_post(x[:, :tokens]))


class SigLIP(CLIP):
    """A SigLIP with CLIP's interface (``encode_image``, ``encode_text``,
    ``encode_text_embeddings``, ``logits``, the prompt slots) and a learned ``logit_bias``."""

    def __init__(self, backbone: Backbone) -> None:
        nn.Module.__init__(self)
        a = backbone.arch
        if a.family != "siglip":
            raise ValueError(f"{backbone.name} is not a SigLIP (family {a.family!r})")
        self.context_length = a.context_length
        self.embed_dim = a.embed_dim
        self.vocab_size = a.vocab_size
        self.visual = SigLIPVisionTransformer(
            a.image_size, a.patch_size, a.vision_width, a.vision_layers, a.vision_heads,
            a.vision_mlp_ratio, a.activation, a.norm_eps)
        self.transformer = Transformer(a.text_width, a.text_layers, a.text_heads, causal=False,
                                       activation=a.text_activation or a.activation,
                                       mlp_ratio=a.text_mlp_ratio, norm_eps=a.norm_eps)
        self.token_embedding = nn.Embedding(a.vocab_size, a.text_width)
        self.positional_embedding = nn.Parameter(torch.empty(a.context_length, a.text_width))
        self.ln_final = LayerNorm(a.text_width, eps=a.norm_eps)
        self.text_projection = nn.Linear(a.text_width, a.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0))
        self.backbone = backbone
        self.tokenizer = None  # set by build_siglip (it reads the tokenizer's files)
        self.initialize_parameters()

    @classmethod
    def from_backbone(cls, backbone: Backbone) -> SigLIP:
        return cls(backbone)

    def initialize_parameters(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        _init_transformer(self.transformer)
        _init_transformer(self.visual.transformer)
        nn.init.normal_(self.visual.attn_pool.latent, std=self.visual.width ** -0.5)
        nn.init.normal_(self.text_projection.weight, std=self.transformer.width ** -0.5)
        nn.init.zeros_(self.text_projection.bias)

    def _encode_text_group(self, embeddings: torch.Tensor, eot_indices: torch.Tensor,
                           prompts: Prompts, length: int) -> torch.Tensor:
        """The text tower on embeddings ``[N, 1 + context, d]`` (position 0: the tokenizer's
        placeholder, dropped here), pooled at the last position."""
        x = embeddings[:, :length].to(self.dtype)
        if prompts and prompts[0] is not None:
            x = write_slot(x, prompts[0], 1)
        x = x[:, 1:]
        if x.shape[1] != self.context_length:
            raise ValueError(f"SigLIP's text tower reads {self.context_length} tokens after the "
                             f"placeholder; got {x.shape[1]} (token ids of another tokenizer?)")
        x = x + self.positional_embedding.to(x.dtype)
        deeper = [None, *prompts[1:]] if prompts else None
        x = self.transformer(x, deeper, slot_start=0)
        return self.text_projection(self.ln_final(x[:, -1]))


# --------------------------------------------------------------------------- weights


_TIMM_BLOCK = {"norm1.": "ln_1.", "attn.qkv.weight": "attn.in_proj_weight",
               "attn.qkv.bias": "attn.in_proj_bias", "attn.proj.": "attn.out_proj.",
               "norm2.": "ln_2.", "mlp.fc1.": "mlp.c_fc.", "mlp.fc2.": "mlp.c_proj."}
_TIMM_TOP = {"patch_embed.proj.": "conv1.", "pos_embed": "positional_embedding",
             "norm.": "ln_post.", "attn_pool.": "attn_pool."}


def _timm_key(key: str) -> str:
    """A key of timm's SigLIP ViT (inside ``visual.trunk.``) → ours (inside ``visual.``)."""
    if key.startswith("blocks."):
        _, index, rest = key.split(".", 2)
        for old, new in _TIMM_BLOCK.items():
            if rest.startswith(old):
                return f"transformer.resblocks.{index}.{new}{rest[len(old):]}"
        return f"transformer.resblocks.{index}.{rest}"
    for old, new in _TIMM_TOP.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def siglip_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An open_clip SigLIP state dict (timm's image tower under ``visual.trunk.``, the text
    tower under ``text.``) in this module's layout; a state dict already in it is unchanged."""
    from .load import open_clip_keys

    out = {}
    for key, value in open_clip_keys(state).items():
        if key.startswith("visual.trunk."):
            key = "visual." + _timm_key(key[len("visual.trunk."):])
            if key == "visual.positional_embedding" and value.dim() == 3:
                value = value[0]  # timm's [1, tokens, d]
        elif key.startswith("text."):
            key = key[len("text."):]
        out[key] = value
    return out


def build_siglip(state_dict: dict[str, torch.Tensor], backbone: Backbone, *,
                 copy: bool = True, cache_dir: str | None = None) -> SigLIP:
    """A SigLIP (fp32, eval mode) of ``backbone``'s architecture holding ``state_dict``
    (open_clip's layout or ours), loaded strictly; its tokenizer read from ``backbone``'s
    vocabulary (a Hugging Face cache: ``cache_dir`` or the default)."""
    sd = siglip_keys(state_dict)
    with torch.device(_construction_device(sd)):
        model = SigLIP(backbone)
    sd = {k: v.to(torch.float32 if v.is_floating_point() else v.dtype, copy=copy)
          for k, v in sd.items()}
    for key in ("logit_scale", "logit_bias"):
        if key in sd:
            sd[key] = sd[key].reshape(())
    try:
        model.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as err:
        raise RuntimeError(f"the weights do not fit the architecture of {backbone.name} "
                           f"({backbone.arch.describe()}): {err}") from err
    model.tokenizer = backbone.tokenizer(cache_dir)
    return model.eval()
