"""Image features of the unprompted image tower, read from the on-disk cache
(engine/feature_cache.py) instead of computed, where that gives exactly the same features.

``FEATURE_CACHE.DIR`` (train.py ``--feature-cache DIR``) switches it on. The trainer's loaders
are wrapped: an item whose feature is cached comes as ``features`` (the image is not even read),
the others as images, whose features are computed in the batch's pass and stored. The prompted
model takes :class:`CachedImages` wherever it takes images (:func:`image_embeddings` is where
image features are computed).

Where the cache cannot be exact it is refused, with a one-line reason in the log: a method
that prompts or trains the image tower, a training transform that draws random augmentations,
images without a file behind them, runs under torchrun.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from engine import distributed
from engine.config import CN, register_config
from engine.feature_cache import GIB, CacheContext, FeatureCache

__all__ = ["CachedImages", "image_embeddings", "ImageFeatureCache", "use_feature_cache",
           "text_feature_cache", "cached_text_features"]

logger = logging.getLogger(__name__)

# transforms that draw no random numbers (torchvision's names)
DETERMINISTIC = {"Resize", "CenterCrop", "ToTensor", "Normalize", "PILToTensor",
                 "ConvertImageDtype", "Lambda"}


@register_config
def add_feature_cache_config(cfg: CN) -> None:
    cfg.FEATURE_CACHE = CN()
    # ours: a folder for the frozen image tower's features, shared by runs ("" : no cache);
    # train.py --feature-cache DIR
    cfg.FEATURE_CACHE.DIR = ""
    cfg.FEATURE_CACHE.MAX_GB = 50.0  # stop storing beyond this size of the folder
    cfg.FEATURE_CACHE.RESERVE_GB = 1.0  # stop storing when the disk would keep less free
    cfg.FEATURE_CACHE.CONTENT_HASH = False  # identify images by a hash of their bytes


class CachedImages(NamedTuple):
    """A batch of images given by their unprompted image tower's outputs ``[B, D]``."""

    embeddings: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        return self.embeddings.shape


def image_embeddings(clip_model: nn.Module, image: torch.Tensor | CachedImages,
                     prompts: Any = None, prompt_after_ln_pre: bool = False) -> torch.Tensor:
    """The image tower's outputs for a batch of images, or the cached ones."""
    if isinstance(image, CachedImages):
        if prompts is not None:
            raise ValueError("cached image features are the unprompted tower's; this method "
                             "prompts the image tower (run it without FEATURE_CACHE.DIR)")
        return image.embeddings
    return clip_model.encode_image(image, prompts, prompt_after_ln_pre=prompt_after_ln_pre)


class CachedItems(Dataset):
    """A loader's items, with the cached feature in place of the image where there is one."""

    def __init__(self, base: Dataset, cache: FeatureCache, context: CacheContext) -> None:
        self.base, self.cache, self.context = base, cache, context

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, idx: int) -> dict:
        datum = self.base.data_source[idx]
        features = self.cache.get(self.context, datum.impath)
        if features is None:
            return self.base[idx]
        item = {"label": datum.label, "domain": datum.domain, "impath": datum.impath,
                "index": idx, "features": features}
        if hasattr(datum, "target_vector"):
            item["target"] = datum.target_vector()
        return item


class MixedCollate:
    """A batch of cached and loaded items: ``features`` of the cached ones (positions
    ``hit``), ``img`` of the others (positions ``miss``), the rest as the default collate."""

    def __init__(self, context: CacheContext) -> None:
        self.context = context

    def __call__(self, items: list[dict]) -> dict:
        hit = [i for i, item in enumerate(items) if "features" in item]
        miss = [i for i, item in enumerate(items) if "features" not in item]
        common = [{k: v for k, v in item.items() if k not in ("features", "img")}
                  for item in items]
        batch = default_collate(common)
        batch["hit"], batch["miss"] = torch.tensor(hit), torch.tensor(miss)
        batch["features"] = torch.stack([items[i]["features"] for i in hit]) if hit else None
        batch["img"] = default_collate([items[i]["img"] for i in miss]) if miss else None
        batch["cache_context"] = self.context
        return batch


class ImageFeatureCache:
    """A trainer's side of the cache: wraps its loaders, turns batches into images or
    :class:`CachedImages`, computes and stores what is missing."""

    def __init__(self, cache: FeatureCache, clip_model: nn.Module, precision: Any,
                 device: torch.device) -> None:
        self.cache, self.clip_model = cache, clip_model
        self.precision, self.device = precision, device
        identity = clip_model.identity()
        self.description = {"what": "image tower without prompts (embeddings)",
                            "backbone": identity["backbone"],
                            "fingerprint": identity["fingerprint"],
                            "precision": getattr(precision, "mode", "fp32"),
                            "dtype": str(clip_model.dtype), "device": device.type,
                            "format": 1}

    def wrap(self, loader: DataLoader | None, train: bool) -> tuple[DataLoader | None, str]:
        """(the loader reading through the cache, or as it was; why not, or "")."""
        if loader is None:
            return None, ""
        base = loader.dataset
        transform = getattr(base, "transform", None)
        if not hasattr(base, "data_source") or getattr(base, "return_img0", False):
            return loader, "the loader's items are not plain images"
        if train:
            random = random_steps(transform)
            if random:
                return loader, f"the training transform draws random augmentations ({random})"
        context = self.cache.context(**self.description, transform=repr(transform))
        options = {"num_workers": loader.num_workers, "pin_memory": loader.pin_memory,
                   "collate_fn": MixedCollate(context), "worker_init_fn": loader.worker_init_fn,
                   "generator": loader.generator}
        if loader.batch_size is None:
            options["batch_sampler"] = loader.batch_sampler
        else:
            options.update(batch_size=loader.batch_size, sampler=loader.sampler,
                           drop_last=loader.drop_last)
        return DataLoader(CachedItems(base, self.cache, context), **options), ""

    def images(self, batch: dict) -> torch.Tensor | CachedImages:
        """The batch's images, or all their features (the missing ones computed, stored)."""
        if "hit" not in batch:
            return batch["img"].to(self.device)
        parts = []
        if batch["img"] is not None:
            with torch.no_grad(), self.precision.autocast():
                computed = self.clip_model.encode_image(batch["img"].to(self.device))
            for position, feature in zip(batch["miss"].tolist(), computed, strict=True):
                self.cache.put(batch["cache_context"], batch["impath"][position], feature)
            parts.append((batch["miss"], computed))
        if batch["features"] is not None:
            parts.append((batch["hit"], batch["features"].to(self.device)))
        order = torch.cat([positions for positions, _ in parts])
        features = torch.cat([f.to(parts[0][1].dtype) for _, f in parts])
        return CachedImages(features[torch.argsort(order).to(features.device)])

    def log(self) -> None:
        logger.info("Feature cache %s: %s", self.cache.root, self.cache.stats.line())


def random_steps(transform: Any) -> str:
    """The names of the steps of a (Compose) transform not known to be deterministic."""
    if transform is None:
        return ""
    steps = getattr(transform, "transforms", [transform])
    return ", ".join(type(s).__name__ for s in steps if type(s).__name__ not in DETERMINISTIC)


def refusal(model: nn.Module, clip_model: nn.Module) -> str:
    """Why the cache cannot give this model exactly its image features ("" when it can).

    A prompted model's class says how it uses the image tower in ``cached_images``, on the
    class that defines its ``encode``: ``"schedule"`` (unprompted unless its learner's
    schedule has vision prompts) or ``"never prompted"``; a class that says nothing is refused.
    """
    if distributed.world_size() > 1:
        return "runs under torchrun shard their loaders"
    if any(p.requires_grad for p in clip_model.visual.parameters()):
        return "the method trains the image tower"
    owner = next((k for k in type(model).__mro__ if "encode" in vars(k)), None)
    kind = vars(owner).get("cached_images") if owner is not None else None
    if kind == "never prompted":
        return ""
    if kind != "schedule":
        return f"{type(model).__name__} is not known to leave the image tower as CLIP's"
    with torch.no_grad():
        schedule = model.prompt_learner()
    if getattr(schedule, "vision", None) is not None:
        return "the method prompts the image tower"
    return ""


def use_feature_cache(trainer: Any) -> ImageFeatureCache | None:
    """Wrap the trainer's loaders to read image features from ``FEATURE_CACHE.DIR`` where it
    is exact; the log says what was refused and why."""
    node = trainer.cfg.FEATURE_CACHE
    if not node.DIR:
        return None
    reason = refusal(trainer.model, trainer.clip_model)
    if reason:
        logger.info("Feature cache %s not used: %s", node.DIR, reason)
        return None
    cache = FeatureCache(node.DIR, max_bytes=int(node.MAX_GB * GIB),
                         reserve_bytes=int(node.RESERVE_GB * GIB),
                         content_hash=node.CONTENT_HASH)
    hook = ImageFeatureCache(cache, trainer.clip_model, trainer.precision, trainer.device)
    for name, train in (("train_loader_x", True), ("val_loader", False), ("test_loader", False)):
        loader, why = hook.wrap(getattr(trainer, name, None), train)
        if why:
            logger.info("Feature cache %s not used for %s: %s", node.DIR, name, why)
        setattr(trainer, name, loader)
    return hook


# the cache that frozen text features (hand-crafted prompts) are read from, while a trainer
# builds its parts (None: computed)
_TEXT_CACHE: FeatureCache | None = None


@contextlib.contextmanager
def text_feature_cache(cfg: Any) -> Iterator[None]:
    """Within the block, :func:`cached_text_features` reads and stores under
    ``FEATURE_CACHE.DIR`` (nothing when it is empty)."""
    global _TEXT_CACHE
    saved = _TEXT_CACHE
    node = cfg.get("FEATURE_CACHE") if hasattr(cfg, "get") else None
    if node is not None and node.DIR:
        _TEXT_CACHE = FeatureCache(node.DIR, max_bytes=int(node.MAX_GB * GIB),
                                   reserve_bytes=int(node.RESERVE_GB * GIB))
    try:
        yield
    finally:
        _TEXT_CACHE = saved


def cached_text_features(clip_model: nn.Module, what: str, prompts: Sequence[str],
                         compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``compute()`` (the frozen model's features of ``prompts``, computed as ``what`` says),
    or the stored result of the same computation on the same weights."""
    cache = _TEXT_CACHE
    if cache is None:
        return compute()
    identity = clip_model.identity()
    context = cache.context(what=what, backbone=identity["backbone"],
                            fingerprint=identity["fingerprint"], dtype=str(clip_model.dtype),
                            device=clip_model.token_embedding.weight.device.type, format=1)
    name = "named:" + hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest()
    found = cache.get(context, name)
    if found is not None:
        logger.info("Frozen text features (%s) read from the feature cache %s", what,
                    cache.root)
        return found
    features = compute()
    cache.put(context, name, features)
    return features
