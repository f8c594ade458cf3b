"""Data: datasets registry, loaders, transforms, samplers (Dassl's ``dassl.data``)."""

from engine.data.data_manager import DataManager, DatasetWrapper, build_data_loader
from engine.data.read_image import read_image
from engine.data.samplers import build_sampler
from engine.data.transforms import build_transform

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader", "build_sampler",
           "build_transform", "read_image"]
