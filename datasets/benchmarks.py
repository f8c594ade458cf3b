"""The benchmarks of the papers as a table, and the registration of the split-file ones.

Nine datasets are read by one reader from CoOp's ``split_zhou_<Name>.json``; their rows below
give the folder under ``DATASET.ROOT``, the image folder that the split's paths are relative to,
and where the split file is published. ImageNet, its four variants and FGVCAircraft have their
own readers (``datasets/imagenet.py``, ``datasets/fgvc_aircraft.py``) because their layouts
differ. :data:`ALL_BENCHMARKS` lists all fifteen with their config file and folder.
"""

from __future__ import annotations

from typing import NamedTuple

from datasets.reader import SplitFileBenchmark, SplitFileDataset, split_file_reader
from engine.registry import DATASET_REGISTRY


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/file/d/{file_id}/view?usp=sharing"


SPLIT_FILE_BENCHMARKS: tuple[SplitFileBenchmark, ...] = (
    SplitFileBenchmark("Caltech101", "caltech-101", "101_ObjectCategories",
                       _drive("1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"), "Caltech101"),
    SplitFileBenchmark("OxfordPets", "oxford_pets", "images",
                       _drive("1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"), "OxfordPets"),
    SplitFileBenchmark("StanfordCars", "stanford_cars", "",
                       _drive("1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"), "StanfordCars"),
    SplitFileBenchmark("OxfordFlowers", "oxford_flowers", "jpg",
                       _drive("1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"), "Flowers102"),
    SplitFileBenchmark("Food101", "food-101", "images",
                       _drive("1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"), "Food101"),
    SplitFileBenchmark("SUN397", "sun397", "SUN397",
                       _drive("1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"), "SUN397"),
    SplitFileBenchmark("DescribableTextures", "dtd", "images",
                       _drive("1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"), "DTD"),
    SplitFileBenchmark("EuroSAT", "eurosat", "2750",
                       _drive("1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"), "EuroSAT"),
    SplitFileBenchmark("UCF101", "ucf101", "UCF-101-midframes",
                       _drive("1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"), "UCF101"),
)

SPLIT_FILE_READERS: dict[str, type[SplitFileDataset]] = {}
for _benchmark in SPLIT_FILE_BENCHMARKS:
    SPLIT_FILE_READERS[_benchmark.name] = DATASET_REGISTRY.register(split_file_reader(_benchmark))


class Benchmark(NamedTuple):
    name: str  # DATASET.NAME
    config: str  # configs/datasets/<config>.yaml
    folder: str  # folder under DATASET.ROOT


ALL_BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("ImageNet", "imagenet", "imagenet"),
    Benchmark("Caltech101", "caltech101", "caltech-101"),
    Benchmark("OxfordPets", "oxford_pets", "oxford_pets"),
    Benchmark("StanfordCars", "stanford_cars", "stanford_cars"),
    Benchmark("OxfordFlowers", "oxford_flowers", "oxford_flowers"),
    Benchmark("Food101", "food101", "food-101"),
    Benchmark("FGVCAircraft", "fgvc_aircraft", "fgvc_aircraft"),
    Benchmark("SUN397", "sun397", "sun397"),
    Benchmark("DescribableTextures", "dtd", "dtd"),
    Benchmark("EuroSAT", "eurosat", "eurosat"),
    Benchmark("UCF101", "ucf101", "ucf101"),
    Benchmark("ImageNetV2", "imagenetv2", "imagenetv2"),
    Benchmark("ImageNetSketch", "imagenet_sketch", "imagenet-sketch"),
    Benchmark("ImageNetA", "imagenet_a", "imagenet-adversarial"),
    Benchmark("ImageNetR", "imagenet_r", "imagenet-rendition"),
)
