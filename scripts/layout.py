"""The output layout of the official scripts, in one place (scripts/protocols/*.sh write it).

    base2new/train_base/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<N>     train on base classes
    base2new/test_<base|new>/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<N> evaluate
    <dataset>/<Trainer>/<cfg>_<K>shots[/<tag>]/seed<N>                   train on all classes
                                                  (few-shot; the ImageNet model of xd and dg)
    evaluation/<Trainer>/<cfg>_<K>shots[/<tag>]/<dataset>/seed<N>        cross-dataset and
                                                  domain generalization evaluation
    few_shot/<dataset>/<Trainer>/<cfg>_<K>shots[/<tag>]/seed<N>          evaluation of
                                                  published few-shot weights
    <tasks>/<variant>/<cfg>_<K>shots/nctx<M>_csc_ctp/seed<N>             MVLPT source runs
                                                  (<tasks>: comma-separated), their average
                                                  one level up (prompt_learner/)
    <dataset or ELEVATER task>/<variant>/<cfg>_<K>shots/nctx<M>_csc_ctp/seed<N>  targets
"""

from __future__ import annotations

if __name__ == "__main__":  # a module, not a command
    raise SystemExit("scripts/layout.py is a module of the sweep runner and the table readers; "
                     "run python scripts/sweep.py --help, python scripts/results.py --help")

from pathlib import Path

# The benchmarks of the papers, in the order of their tables.
BASE2NEW_DATASETS = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
)
XD_TARGETS = BASE2NEW_DATASETS[1:]
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
FEW_SHOTS = (1, 2, 4, 8, 16)
# MVLPT: the source tasks (CoOp's 11 datasets, registered names, in the official order), the
# CoOp-data targets, ELEVATER's 20 tasks and the shots of the paper
MVLPT_SOURCE_TASKS = ("ImageNet", "Caltech101", "Food101", "StanfordCars", "OxfordPets",
                      "OxfordFlowers", "FGVCAircraft", "SUN397", "DescribableTextures", "EuroSAT",
                      "UCF101")
MVLPT_TARGETS = MVLPT_SOURCE_TASKS[1:]
ELEVATER_TASKS = (
    "caltech-101", "cifar-10", "cifar-100", "country211", "dtd", "eurosat_clip", "fer-2013",
    "fgvc-aircraft-2013b-variants102", "food-101", "gtsrb", "hateful-memes", "kitti-distance",
    "mnist", "oxford-flower-102", "oxford-iiit-pets", "patch-camelyon", "rendered-sst2",
    "resisc45_clip", "stanford-cars", "voc-2007-classification",
)
MVLPT_SHOTS = (1, 5, 20)
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


def few_shot_eval_dir(output: Path, dataset: str, trainer: str, cfg: str, shots: int,
                      seed: int) -> Path:
    """Run folder of an evaluation of published few-shot weights."""
    return Path(output, "few_shot", dataset, trainer, f"{cfg}_{shots}shots", f"seed{seed}")


def mvlpt_dir(output: Path, tasks: str, variant: str, cfg: str, nctx: int, shots: int,
              seed: int | None = None) -> Path:
    """Run folder of MVLPT on ``tasks`` (a source: several, comma-separated; a target: one);
    without ``seed`` the folder of the seeds' average."""
    folder = Path(output, tasks, variant, f"{cfg}_{shots}shots", f"nctx{nctx}_csc_ctp")
    return folder if seed is None else folder / f"seed{seed}"
