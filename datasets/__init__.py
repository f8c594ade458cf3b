"""Dataset readers of the prompt-learning benchmarks, registered in ``DATASET_REGISTRY``.

Importing this package registers ImageNet, Caltech101, OxfordPets, StanfordCars, OxfordFlowers,
Food101, FGVCAircraft, SUN397, DescribableTextures, EuroSAT, UCF101, ImageNetV2, ImageNetSketch,
ImageNetA, ImageNetR and Custom (your own data), and adds the ``DATASET.CUSTOM`` config keys.
See DATASETS.md for the layouts and ``python -m datasets.check $DATA`` to verify a data folder.
"""

from datasets import benchmarks, custom, demo, fgvc_aircraft, imagenet  # noqa: F401
from datasets.benchmarks import ALL_BENCHMARKS, SPLIT_FILE_BENCHMARKS
from datasets.reader import ProtocolDataset, SplitFileBenchmark, SplitFileDataset
from datasets.sampling import load_few_shot, select_few_shot, subsample_classes

__all__ = ["ALL_BENCHMARKS", "SPLIT_FILE_BENCHMARKS", "ProtocolDataset", "SplitFileBenchmark",
           "SplitFileDataset", "load_few_shot", "select_few_shot", "subsample_classes"]
