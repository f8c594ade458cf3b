"""Dataset readers of the prompt-learning benchmarks, registered in ``DATASET_REGISTRY``.

Importing this package registers ImageNet, Caltech101, OxfordPets, StanfordCars, OxfordFlowers,
Food101, FGVCAircraft, SUN397, DescribableTextures, EuroSAT, UCF101, ImageNetV2, ImageNetSketch,
ImageNetA, ImageNetR and Custom (your own data), and adds the ``DATASET.CUSTOM`` config keys.
See DATASETS.md for the layouts and ``python -m datasets.check $DATA`` to verify a data folder.
"""

from datasets.benchmarks import ALL_BENCHMARKS, SPLIT_FILE_BENCHMARKS
from datasets.reader import ProtocolDataset, SplitFileBenchmark, SplitFileDataset
from datasets.sampling import load_few_shot, select_few_shot, subsample_classes
from datasets.splits import DatasetFilesError, read_split, write_split

# isort: split
# The readers register themselves; imported after the names above, which they may import.
from datasets import custom, demo, fgvc_aircraft, imagenet, multitask  # noqa: F401

# isort: split
# ELEVATER's 20 tasks (MVLPT's protocol) and their evaluator.
import datasets.elevater  # noqa: F401, E402

__all__ = ["ALL_BENCHMARKS", "SPLIT_FILE_BENCHMARKS", "DatasetFilesError", "ProtocolDataset",
           "SplitFileBenchmark", "SplitFileDataset", "load_few_shot", "read_split",
           "select_few_shot", "subsample_classes", "write_split"]
