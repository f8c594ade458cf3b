"""Samplers chosen by name, in one place (``DATALOADER.*.SAMPLER``).

``RandomSampler`` draws its permutation from torch's global generator when its iterator
starts, exactly as in Dassl; the trainer checkpoints the global generators' states, so a
resumed run draws the same permutations as an uninterrupted one.

Under torchrun (several processes, see :mod:`engine.distributed`) training loaders shard each
epoch: a ``DistributedSampler`` whose permutation comes from ``SEED`` and the epoch (the trainer
calls ``set_epoch``), the same in every process, each taking its own part.
"""

from __future__ import annotations

from collections.abc import Sized

from torch.utils.data import DistributedSampler, RandomSampler, Sampler, SequentialSampler

from engine import distributed

__all__ = ["AVAI_SAMPLERS", "EveryNth", "build_sampler"]

AVAI_SAMPLERS = ["RandomSampler", "SequentialSampler"]


def build_sampler(sampler_type: str, data_source: Sized, shard: bool = False, seed: int = 0,
                  **unused: object) -> Sampler:
    """The sampler ``sampler_type`` names; ``shard=True`` (training loaders) gives each process
    its part of the epoch when several run."""
    if sampler_type not in AVAI_SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler_type!r}; supported: "
                         f"{', '.join(AVAI_SAMPLERS)} (set DATALOADER.TRAIN_X.SAMPLER / "
                         "DATALOADER.TEST.SAMPLER)")
    if shard and distributed.world_size() > 1:
        return DistributedSampler(data_source, num_replicas=distributed.world_size(),
                                  rank=distributed.rank(),
                                  shuffle=sampler_type == "RandomSampler", seed=max(seed, 0))
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    return SequentialSampler(data_source)


class EveryNth(Sampler[int]):
    """Indices ``start, start + step, ...`` of a data source, in order: one process's shard of an
    evaluation (no index repeated or padded, unlike ``DistributedSampler``)."""

    def __init__(self, data_source: Sized, start: int, step: int) -> None:
        self.indices = range(start, len(data_source), step)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
