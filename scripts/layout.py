"""The output layout of the official scripts, in one place (scripts/protocols/*.sh write it).

    base2new/train_base/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<N>     train on base classes
    base2new/test_<base|new>/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<N> evaluate
    <dataset>/<Trainer>/<cfg>_<K>shots[/<tag>]/seed<N>                   train on all classes
                                                  (few-shot; the ImageNet model of xd and dg)
    evaluation/<Trainer>/<cfg>_<K>shots[/<tag>]/<dataset>/seed<N>        cross-dataset and
                                                  domain generalization evaluation
    few_shot/<dataset>/<Trainer>/<cfg>_<K>shots[/<tag>]/seed<N>          evaluation of
                                                  published few-shot weights
"""

from __future__ import annotations

from pathlib import Path

# The benchmarks of the papers, in the order of their tables.
BASE2NEW_DATASETS = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
)
XD_TARGETS = BASE2NEW_DATASETS[1:]
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
FEW_SHOTS = (1, 2, 4, 8, 16)
DISPLAY_NAMES = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT",
    "ucf101": "UCF101", "imagenetv2": "ImageNetV2", "imagenet_sketch": "ImageNet-Sketch",
    "imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R",
}


def display_name(dataset: str) -> str:
    """The name of a dataset in the papers' tables (the folder name when unknown)."""
    return DISPLAY_NAMES.get(dataset, dataset)


def base2new_dir(output: Path, phase: str, dataset: str, shots: int, trainer: str, cfg: str,
                 seed: int) -> Path:
    """Run folder of the base-to-novel protocol; phase is train_base, test_base or test_new."""
    return Path(output, "base2new", phase, dataset, f"shots_{shots}", trainer, cfg, f"seed{seed}")


def train_dir(output: Path, dataset: str, trainer: str, cfg: str, shots: int, seed: int,
              tag: str = "") -> Path:
    """Run folder of a training on all classes (few-shot, and the ImageNet model of xd/dg)."""
    parts = [dataset, trainer, f"{cfg}_{shots}shots"] + ([tag] if tag else [])
    return Path(output, *parts, f"seed{seed}")


def evaluation_dir(output: Path, trainer: str, cfg: str, shots: int, dataset: str, seed: int,
                   tag: str = "") -> Path:
    """Run folder of a cross-dataset / domain-generalization evaluation."""
    parts = ["evaluation", trainer, f"{cfg}_{shots}shots"] + ([tag] if tag else [])
    return Path(output, *parts, dataset, f"seed{seed}")
