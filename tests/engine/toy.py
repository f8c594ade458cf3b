"""A tiny image-folder dataset and a tiny trainer for the engine tests (and ENGINE_IMPORTS)."""

from __future__ import annotations

import os

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from engine import TRAINER_REGISTRY, TrainerX
from engine.config import CN, register_config
from engine.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from engine.metrics import compute_accuracy
from engine.optim import build_lr_scheduler, build_optimizer

COLORS = [(220, 30, 30), (30, 200, 40), (40, 40, 230)]


def make_image_folder(root: str, per_class: int = 6, size: tuple[int, int] = (10, 12)) -> str:
    """Write ``root/toy/{train,test}/<class>/<i>.png``: colour tells the class."""
    gen = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for label, color in enumerate(COLORS):
            folder = os.path.join(root, "toy", split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                noise = torch.randint(-25, 25, (size[1], size[0], 3), generator=gen)
                pixels = (torch.tensor(color) + noise).clamp(0, 255).to(torch.uint8)
                Image.fromarray(pixels.numpy()).save(os.path.join(folder, f"{i}.png"))
    return root


@register_config
def add_toy_config(cfg: CN) -> None:
    cfg.TRAINER.TOY = CN()
    cfg.TRAINER.TOY.HIDDEN = 8  # hidden width of the toy classifier
    cfg.TRAINER.TOY.FAIL_AT_EPOCH = -1  # raise after saving this epoch (simulated crash)


def _read_split(root: str, split: str) -> list[Datum]:
    folder = os.path.join(root, "toy", split)
    items = []
    for label, name in enumerate(sorted(os.listdir(folder))):
        for fname in sorted(os.listdir(os.path.join(folder, name))):
            items.append(Datum(os.path.join(folder, name, fname), label, 0, name))
    return items


@DATASET_REGISTRY.register()
class ToyFolder(DatasetBase):
    dataset_dir = "toy"

    def __init__(self, cfg: CN) -> None:
        train = _read_split(cfg.DATASET.ROOT, "train")
        test = _read_split(cfg.DATASET.ROOT, "test")
        if cfg.DATASET.NUM_SHOTS >= 1:
            train = self.generate_fewshot_dataset(train, num_shots=cfg.DATASET.NUM_SHOTS)
        super().__init__(train_x=train, val=test, test=test)


class TinyNet(nn.Module):
    def __init__(self, size: tuple[int, int], hidden: int, num_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3 * size[0] * size[1], hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


@TRAINER_REGISTRY.register()
class ToyTrainer(TrainerX):
    def build_model(self) -> None:
        cfg = self.cfg
        self.model = TinyNet(tuple(cfg.INPUT.SIZE), cfg.TRAINER.TOY.HIDDEN, self.num_classes)
        self.model.to(self.device)
        self.optim = build_optimizer(self.model, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def forward_backward(self, batch: dict) -> dict:
        image, label, _ = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}

    def after_epoch(self) -> None:
        super().after_epoch()
        if self.epoch + 1 == self.cfg.TRAINER.TOY.FAIL_AT_EPOCH:
            raise RuntimeError(f"simulated interruption after epoch {self.epoch + 1}")
