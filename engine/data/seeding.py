"""Random augmentations under torchrun: different in every process, reproducible.

Every process of a torchrun run is seeded with ``SEED`` (so that all build the same initial
prompts); drawing augmentations from those generators would give every process the same
flips and crops for its k-th image. :class:`RankSeededLoader` (the training loader when
several processes run) instead seeds, each epoch, the transform of item i from
``(SEED, rank, epoch, i)`` (:class:`engine.data.DatasetWrapper` runs it under
:func:`seeded_generators`), and the DataLoader workers from ``(SEED, rank, epoch)``. The
draws depend neither on ``DATALOADER.NUM_WORKERS`` nor on what ran before, so a resumed run
draws what an uninterrupted one does. One process keeps Dassl's behaviour.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from engine import distributed

__all__ = ["RankSeededLoader", "derive_seed", "seeded_generators"]


def derive_seed(*numbers: int) -> int:
    """A 64-bit seed that depends on every number given (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([n % 2**63 for n in numbers]).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


@contextlib.contextmanager
def seeded_generators(seed: int) -> Iterator[None]:
    """Run the block with torch's, Python's and numpy's global generators seeded from ``seed``,
    then restore them."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class RankSeededLoader(DataLoader):
    """The training loader under torchrun: before each epoch (the sampler's, ``set_epoch``)
    it seeds its dataset's items and its workers for this process and this epoch."""

    def __init__(self, dataset: Dataset, *args: Any, seed: int, **kwargs: Any) -> None:
        super().__init__(dataset, *args, generator=torch.Generator(), **kwargs)
        self.seed = seed

    def __iter__(self):
        epoch = getattr(self.sampler, "epoch", 0)
        rank = distributed.rank()
        self.generator.manual_seed(derive_seed(self.seed, rank, epoch, -1))
        if hasattr(self.dataset, "item_seeds"):  # a DatasetWrapper
            self.dataset.item_seeds = (self.seed, rank, epoch)
        return super().__iter__()
