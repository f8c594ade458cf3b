"""Zero-shot CLIP: CoOp's per-dataset template (ZeroshotCLIP) or the ensemble of ImageNet
templates (ZeroshotCLIP2). Nothing trains; use with --eval-only."""

from __future__ import annotations

import logging

import torch

from engine import TRAINER_REGISTRY, TrainerX
from engine.precision import Precision
from trainers.base import load_clip_model, normalize
from trainers.templates import IMAGENET_TEMPLATES_SELECT, dataset_template

logger = logging.getLogger(__name__)


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerX):
    """Zero-shot CLIP with one hand-written template per dataset."""

    def templates(self) -> list[str]:
        return [dataset_template(self.cfg.DATASET.NAME)]

    def build_model(self) -> None:
        # CLIP's own precision: fp16 on a GPU, fp32 on a CPU
        self.precision = Precision("fp16" if self.device.type == "cuda" else "fp32", self.device)
        self.clip_model = load_clip_model(self.cfg).to(self.device, self.precision.param_dtype)
        templates = self.templates()
        logger.info("Prompt ensembling (n=%d): %s", len(templates), templates)
        self.text_features = self.class_text_features(templates, self.dm.dataset.classnames)

    @torch.no_grad()
    def class_text_features(self, templates: list[str], classnames: list[str]) -> torch.Tensor:
        """The mean of the normalised text features over templates, normalised."""
        total = 0
        for template in templates:
            prompts = [template.format(c.replace("_", " ")) for c in classnames]
            tokens = self.clip_model.tokenizer(prompts).to(self.device)
            total = total + normalize(self.clip_model.encode_text(tokens))
        return normalize(total / len(templates)) if len(templates) > 1 else total

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        image_features = normalize(self.clip_model.encode_image(image))
        return self.clip_model.logits(image_features, self.text_features).float()

    def train(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} has nothing to train: run it with --eval-only")


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Zero-shot CLIP with CoOp's ensemble: seven ImageNet templates, plus the dataset's own
    template for datasets other than ImageNet."""

    def templates(self) -> list[str]:
        templates = list(IMAGENET_TEMPLATES_SELECT)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(dataset_template(self.cfg.DATASET.NAME))
        return templates
