"""CoPrompt: Consistency-guided Prompt Learning (Roy & Etemad, ICLR 2024,
https://arxiv.org/abs/2306.01195).

MaPLe's prompts, a residual adapter on each tower's output (``0.1 · adapter(f) + 0.9 · f`` for
the image, ``0.2`` / ``0.8`` for the text; each adapter two bias-free Linear layers, width / 4,
each followed by a ReLU) and, besides the cross-entropy, consistency with the frozen CLIP:
``W · (d(t, g_k) + d(v, v₀))`` where ``t`` and ``v`` are the adapted, normalised class text and
image features, ``g_k`` the frozen CLIP's features of the ``k``-th LLM-written description of
each class (``k`` drawn uniformly per step) and ``v₀`` the frozen image features of a second
augmentation of the batch (``DATALOADER.K_TRANSFORMS 2``); ``d`` is ``1 - mean cos`` or the
mean squared error (``TRAINER.DISTILL``).

The descriptions are the JSON files CoPrompt distributes (``gpt_file/<dataset>_prompt.json``:
class name → sentences), read from ``TRAINER.CoPrompt.GPT_DIR``. Official keys:
``TRAINER.CoPrompt`` (N_CTX, CTX_INIT, PREC, PROMPT_DEPTH), ``TRAINER.W`` and
``TRAINER.DISTILL`` (aliases of the node's ``W`` and ``DISTILL``);
the official per-dataset settings (its ``trainers/constants.py``: depth, context length, W,
Food101's epochs) override the config as officially, unless ``DATASET_SETTINGS`` is False.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import CN, register_alias, register_config
from engine.errors import ConfigError
from trainers.base import PromptedCLIP, PromptSchedule, PromptTrainer
from trainers.learners import register_learner
from trainers.maple import MaPLePromptLearner, map_maple_keys, maple_settings
from trainers.method import Method, register_method
from trainers.objective import TERM_REGISTRY, PartContext, Term
from trainers.outputs import ForwardOutput, normalize

logger = logging.getLogger(__name__)

DESCRIPTIONS_URL = "https://github.com/ShuvenduRoy/CoPrompt/tree/main/gpt_file"
# DATASET.NAME → the stem of its description file, as the official code names them
DESCRIPTION_FILES = {
    "Caltech101": "caltech", "DescribableTextures": "dtd", "EuroSAT": "eurosat",
    "FGVCAircraft": "fgvc", "Food101": "food101", "ImageNet": "imagenet",
    "ImageNetA": "imagenet_a", "ImageNetR": "imagenet_r", "ImageNetSketch": "imagenet_sketch",
    "ImageNetV2": "imagenetv2", "OxfordFlowers": "oxford_flowers", "OxfordPets": "oxford_pets",
    "StanfordCars": "stanford_cars", "SUN397": "sun397", "UCF101": "ucf101"}
# the official per-dataset settings: (PROMPT_DEPTH, N_CTX, W) and, for Food101, MAX_EPOCH
DATASET_SETTINGS = {
    "ImageNet": (12, 4, 8.0), "Caltech101": (12, 4, 4.0), "OxfordPets": (12, 2, 0.1),
    "StanfordCars": (12, 4, 4.0), "OxfordFlowers": (9, 4, 8.0), "Food101": (9, 4, 0.5, 5),
    "FGVCAircraft": (9, 4, 2.0), "SUN397": (12, 4, 8.0), "DescribableTextures": (12, 2, 8.0),
    "EuroSAT": (12, 2, 0.1), "UCF101": (12, 4, 2.0)}
DISTANCES = ("cosine", "mse")
MAX_DESCRIPTIONS_BYTES = 64 * 2**20


@register_config
def add_coprompt_config(cfg: CN) -> None:
    cfg.TRAINER.CoPrompt = CN()
    cfg.TRAINER.CoPrompt.N_CTX = 2  # number of context vectors (per layer, shared by both towers)
    cfg.TRAINER.CoPrompt.CTX_INIT = "a photo of a"  # initialization words
    cfg.TRAINER.CoPrompt.PREC = "fp16"  # fp16, fp32, amp or bf16
    cfg.TRAINER.CoPrompt.PROMPT_DEPTH = 9  # layers with prompts (MaPLe's J)
    # ours: the folder of the LLM-written class descriptions, <stem>_prompt.json per dataset
    # (the official code reads gpt_file/ in the working directory)
    cfg.TRAINER.CoPrompt.GPT_DIR = "gpt_file"
    # ours: apply the official per-dataset settings (they override the config and the command
    # line, as in the official train.py); False: the config's values
    cfg.TRAINER.CoPrompt.DATASET_SETTINGS = True
    cfg.TRAINER.CoPrompt.W = 8.0  # weight of the consistency terms (official: TRAINER.W)
    # consistency distance, cosine or mse (official: TRAINER.DISTILL)
    cfg.TRAINER.CoPrompt.DISTILL = "cosine"


# the official keys of the two settings above (TRAINER.DISTILL also names a node of ours:
# only a value moves)
register_alias("TRAINER.W", "TRAINER.CoPrompt.W")
register_alias("TRAINER.DISTILL", "TRAINER.CoPrompt.DISTILL")


def with_dataset_settings(cfg):
    """``cfg`` with the official per-dataset settings of its dataset applied (a frozen copy),
    or ``cfg`` itself when there are none or DATASET_SETTINGS is off."""
    values = DATASET_SETTINGS.get(cfg.DATASET.NAME)
    if values is None or not cfg.TRAINER.CoPrompt.DATASET_SETTINGS:
        return cfg
    opts = ["TRAINER.CoPrompt.PROMPT_DEPTH", values[0], "TRAINER.CoPrompt.N_CTX", values[1],
            "TRAINER.CoPrompt.W", values[2]]
    opts += ["OPTIM.MAX_EPOCH", values[3]] if len(values) > 3 else []
    logger.info("CoPrompt: the official settings for %s: %s (TRAINER.CoPrompt.DATASET_SETTINGS "
                "False keeps the config's)", cfg.DATASET.NAME, " ".join(map(str, opts)))
    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_list(opts)
    cfg.freeze()
    return cfg


# --------------------------------------------------------------------------- descriptions


def description_file(cfg) -> Path:
    stem = DESCRIPTION_FILES.get(cfg.DATASET.NAME, cfg.DATASET.NAME.lower())
    return Path(cfg.TRAINER.CoPrompt.GPT_DIR) / f"{stem}_prompt.json"


def read_descriptions(path: Path, classnames: list[str]) -> list[list[str]]:
    """Each class's descriptions (the file's lists, looked up by the class name with spaces
    for underscores); every class must have as many as the others."""
    if not path.is_file():
        raise ConfigError(f"CoPrompt reads LLM-written class descriptions from {path}, which "
                          f"does not exist: download {path.name} from {DESCRIPTIONS_URL} into "
                          "a folder and set TRAINER.CoPrompt.GPT_DIR to that folder")
    if path.stat().st_size > MAX_DESCRIPTIONS_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_DESCRIPTIONS_BYTES} bytes; it is not a "
                          "CoPrompt description file")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must map class names to lists of sentences")
    out = []
    for name in classnames:
        sentences = data.get(name.replace("_", " "))
        if not isinstance(sentences, list) or not sentences or not all(
                isinstance(s, str) for s in sentences):
            raise ConfigError(f"{path} has no list of descriptions for the class "
                              f"'{name.replace('_', ' ')}'; it is for another dataset or "
                              "class list")
        out.append(sentences)
    counts = {len(s) for s in out}
    if len(counts) != 1:
        raise ConfigError(f"{path}: the classes have different numbers of descriptions "
                          f"({sorted(counts)}); CoPrompt draws the k-th of every class at once")
    return out


@torch.no_grad()
def description_features(clip_model: nn.Module, descriptions: list[list[str]]) -> torch.Tensor:
    """``[K, N, D]``: the frozen CLIP's normalised feature of description k of class n."""
    device = clip_model.token_embedding.weight.device
    per_class = [normalize(clip_model.encode_text(clip_model.tokenizer(s).to(device)).float())
                 for s in descriptions]
    return torch.stack(per_class, dim=1)


# --------------------------------------------------------------------------- the terms


def distance(kind: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(a, b, dim=-1, eps=1e-7).mean()
    return F.mse_loss(a, b)


class DescriptionConsistency(Term):
    """``text_consistency``: distance between the class text features and the frozen CLIP's
    features of one description per class, the k-th for all classes, k drawn each step
    (``choose(K)``, Python's ``random`` as officially)."""

    name = "text_consistency"

    def __init__(self, descriptions: torch.Tensor, kind: str, weight: float) -> None:
        super().__init__(weight)
        self.register_buffer("descriptions", descriptions, persistent=False)
        self.kind = kind
        self.choose = lambda k: random.randint(0, k - 1)

    def forward(self, out: ForwardOutput, label: torch.Tensor) -> torch.Tensor:
        reference = self.descriptions[self.choose(self.descriptions.shape[0])]
        return distance(self.kind, out.text_features.float(), reference)


class ImageConsistency(Term):
    """``image_consistency``: distance between the image features and the frozen CLIP's (of
    the batch's second augmentation when the trainer gives one)."""

    name = "image_consistency"
    needs_frozen_image = True

    def __init__(self, kind: str, weight: float) -> None:
        super().__init__(weight)
        self.kind = kind

    def forward(self, out: ForwardOutput, label: torch.Tensor) -> torch.Tensor:
        return distance(self.kind, out.image_features.float(), out.require_frozen().float())


@TERM_REGISTRY.register(name="CoPrompt", node="CoPrompt")
def coprompt_terms(ctx: PartContext) -> list[Term]:
    """CoPrompt's consistency terms, each weighted by its W, the descriptions of the
    dataset's classes from its GPT_DIR."""
    node, path = ctx.node, description_file(ctx.cfg)
    features = description_features(ctx.clip_model, read_descriptions(path, ctx.classnames))
    logger.info("CoPrompt: %d descriptions per class from %s; %s consistency, weight %s",
                features.shape[0], path, node.DISTILL, node.W)
    return [DescriptionConsistency(features, node.DISTILL, node.W),
            ImageConsistency(node.DISTILL, node.W)]


# --------------------------------------------------------------------------- adapters


class FeatureAdapter(nn.Module):
    """``ratio · relu(W₂ relu(W₁ x)) + (1 - ratio) · x`` (bias-free, width / ``reduction``)."""

    def __init__(self, width: int, ratio: float, reduction: int = 4) -> None:
        super().__init__()
        self.ratio = ratio
        self.fc = nn.Sequential(nn.Linear(width, width // reduction, bias=False), nn.ReLU(),
                                nn.Linear(width // reduction, width, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.fc[0].weight.dtype)
        return self.ratio * self.fc(x) + (1 - self.ratio) * x


class AdaptedCLIP(PromptedCLIP):
    """A prompted CLIP whose tower outputs pass through the learner's adapters before they
    are normalised (the frozen features stay the CLIP's own)."""

    def encode_schedule_text(self, schedule: PromptSchedule) -> torch.Tensor:
        return self.prompt_learner.adapter_text(super().encode_schedule_text(schedule))

    def encode(self, image: torch.Tensor):
        image_embeddings, text = super().encode(image)
        return self.prompt_learner.adapter_image(image_embeddings), text


def map_coprompt_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official files hold the whole model, the frozen CLIP for consistency
    (``model_distill.*``) too: dropped; the rest has MaPLe's names and the adapters'."""
    return map_maple_keys({k: v for k, v in state_dict.items()
                           if not k.startswith("model_distill.")})


@register_learner("CoPrompt", node="CoPrompt", settings=maple_settings,
                  official_keys=map_coprompt_keys)
class CoPromptLearner(MaPLePromptLearner):
    """MaPLe's prompts plus ``adapter_image`` (ratio 0.1) and ``adapter_text`` (ratio 0.2) on
    the embedding width."""

    prompted_model = AdaptedCLIP

    def __init__(self, clip_model: nn.Module, classnames: list[str], n_ctx: int = 2,
                 depth: int = 9, ctx_init: str = "a photo of a") -> None:
        super().__init__(clip_model, classnames, n_ctx, depth, ctx_init)
        self.adapter_image = FeatureAdapter(clip_model.embed_dim, 0.1)
        self.adapter_text = FeatureAdapter(clip_model.embed_dim, 0.2)


# --------------------------------------------------------------------------- the trainer


class TwoViewTrainer(PromptTrainer):
    """CoPrompt's loop: the official per-dataset settings, and two augmentations per image
    (the prompted model reads the first, the frozen CLIP the second)."""

    def __init__(self, cfg) -> None:
        super().__init__(with_dataset_settings(cfg))

    def parse_batch_train(self, batch: dict):
        """The views of the batch (``K_TRANSFORMS`` of them, a list) and the labels."""
        views = batch["img"] if isinstance(batch["img"], list | tuple) else [batch["img"]]
        return [v.to(self.device) for v in views], batch["label"].to(self.device)

    def compute_losses(self, image, label: torch.Tensor, unlabelled=None):
        """The prompted model on the first view; the frozen image features from the second
        (from the same view when the loader gives one)."""
        views = image if isinstance(image, list | tuple) else [image]
        return two_view_losses(self.method, views, label)


def check_coprompt(cfg) -> None:
    if cfg.TRAINER.CoPrompt.DISTILL not in DISTANCES:
        raise ConfigError(f"TRAINER.DISTILL (TRAINER.CoPrompt.DISTILL) is "
                          f"'{cfg.TRAINER.CoPrompt.DISTILL}'; use cosine or mse")


CoPrompt = register_method(Method(
    "CoPrompt", node="CoPrompt", learner="CoPrompt", model_name="MultiModalPromptLearner",
    terms=("CE", "CoPrompt"), check=check_coprompt,
    doc="Consistency-guided prompt learning."), trainer=TwoViewTrainer, module=__name__)


def two_view_losses(method, views: list[torch.Tensor], label: torch.Tensor):
    """The objective with the prompted model on ``views[0]`` and the frozen image features
    (when a term reads them) of ``views[-1]``."""
    out = method.model.output(views[0])
    if method.objective.needs_frozen_image:
        out.frozen_image_features = method.model.frozen_image_features(views[-1])
    return method.objective(out, label)
