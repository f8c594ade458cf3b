"""Dataset registry and base classes (Dassl's ``dassl.data.datasets``)."""

from engine.data.datasets.base import DatasetBase, Datum, sample_few_shot, split_by_label
from engine.registry import DATASET_REGISTRY

__all__ = ["DATASET_REGISTRY", "Datum", "DatasetBase", "sample_few_shot", "split_by_label",
           "build_dataset"]


def build_dataset(cfg):
    """Instantiate the dataset named by ``cfg.DATASET.NAME`` (Dassl's ``build_dataset``)."""
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
