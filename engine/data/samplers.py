"""Samplers chosen by name, in one place (``DATALOADER.*.SAMPLER``).

``RandomSampler`` draws its permutation from torch's global generator when its iterator
starts, exactly as in Dassl; the trainer checkpoints the global generators' states, so a
resumed run draws the same permutations as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sized

from torch.utils.data import RandomSampler, Sampler, SequentialSampler

__all__ = ["AVAI_SAMPLERS", "build_sampler"]

AVAI_SAMPLERS = ["RandomSampler", "SequentialSampler"]


def build_sampler(sampler_type: str, data_source: Sized, **unused: object) -> Sampler:
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    raise ValueError(f"Unknown sampler {sampler_type!r}; supported: {', '.join(AVAI_SAMPLERS)} "
                     f"(set DATALOADER.TRAIN_X.SAMPLER / DATALOADER.TEST.SAMPLER)")
