"""Timings and peak memory of one trainer's training step and evaluation batch.

A trainer's method is assembled as ``PromptTrainer.build_model`` assembles it
(``PromptTrainer.assemble``: its prompt learner, objective, step hooks and head, its prompted
CLIP, its optimizer from the official config, the engine's precision policy), without a dataset
or data loaders: the benchmark feeds random images. The loss and the backward pass are the
method's own, so a step costs what it costs in training.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from clip.model import SPEEDUPS_OFF, speedups
from engine.optim import build_optimizer
from engine.precision import Precision
from trainers.base import PromptMethod

MODES = {
    "on": {},  # every optimisation (the defaults)
    "cut": {"length_groups": False},  # sequences cut to the longest prompt, no grouping
    "off": SPEEDUPS_OFF,  # 77 tokens, nn.MultiheadAttention's path, no text-feature cache
}


def release_memory_to_os() -> None:
    """Make glibc return freed large blocks to the OS at once (a fixed mmap threshold), so
    that the resident set size follows what is alive and per-measurement peaks mean
    something. Does nothing off glibc."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: 1 MiB, fixed
        libc.mallopt(-1, 1 << 20)  # M_TRIM_THRESHOLD


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


class PeakMemory:
    """Peak memory over a block: CUDA max allocated, or the CPU resident set size sampled every
    millisecond (the process's lifetime maximum where /proc is missing)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_rss"
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        elif _rss_bytes() is None:
            self.kind = "cpu_max_rss_of_process"
        else:
            self.peak_bytes = _rss_bytes() or 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak_bytes = max(self.peak_bytes, _rss_bytes() or 0)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self.kind == "cpu_rss":
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, _rss_bytes() or 0)
        else:
            scale = 1 if sys.platform == "darwin" else 1024
            self.peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    @property
    def mib(self) -> float:
        return round(self.peak_bytes / 2 ** 20, 1)


@dataclass(eq=False)
class MethodRun:
    """A trainer's method with its precision policy and optimizer, ready for training steps."""

    method: PromptMethod
    precision: Precision
    optim: torch.optim.Optimizer
    device: torch.device

    @property
    def model(self) -> nn.Module:
        return self.method.model


def build_trainer(name: str, cfg, clip_model: nn.Module, classnames: list[str],
                  device: torch.device, scale=None) -> MethodRun:
    """The method of trainer ``name`` on ``clip_model`` for ``classnames``, with its optimizer
    (no dataset, no data loaders; PromptKD's teacher at ``scale``: benchmarks/baselines.py)."""
    from benchmarks import baselines
    from engine import TRAINER_REGISTRY
    from trainers.method import assemble, trainer_node

    declaration = TRAINER_REGISTRY.get(name).declaration
    precision = Precision(trainer_node(cfg, declaration.node).PREC, device)
    if name == "PromptKD":
        if scale is None:
            raise ValueError("PromptKD's benchmark builds its teacher at the run's scale: "
                             "pass scale to build_trainer")
        method = baselines.build_promptkd(cfg, clip_model, classnames, scale)
        method.teacher.to(device)
        method.teacher.clip.to(dtype=precision.param_dtype)  # as the trainer casts it
    else:
        if name == "CoPrompt":
            cfg = baselines.coprompt_config(cfg, classnames)
        method = assemble(declaration, cfg, clip_model, classnames)
    method.model.to(device)
    method.objective.to(device)
    optim = build_optimizer(method.trained, cfg.OPTIM, method.param_groups(cfg.OPTIM.LR))
    return MethodRun(method, precision, optim, device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images(count: int, resolution: int, device: torch.device, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, resolution, resolution, generator=generator).to(device)


def train_step(trainer: MethodRun, image: torch.Tensor, label: torch.Tensor) -> None:
    """Forward, backward (through the method's step hooks) and optimizer step, as the trainer
    runs them."""
    precision = trainer.precision
    with precision.autocast():
        losses = trainer.method.losses(image, label)
    trainer.optim.zero_grad(set_to_none=True)
    trainer.method.backward(losses, precision.backward)
    precision.step(trainer.optim)


def time_training(trainers: dict[str, object], batch: int, classes: int, resolution: int,
                  warmup: int, repeat: int, min_seconds: float = 0.0,
                  max_repeat: int = 100) -> dict[str, dict[str, float]]:
    """Per mode (``trainers`` maps a mode of :data:`MODES` to its trainer): median seconds per
    training step and the peak memory of the timed steps. The modes take turns step by step,
    so a change in the machine's load affects them alike; at least ``repeat`` steps are timed,
    more (up to ``max_repeat``) until every mode has run ``min_seconds``."""
    device = next(iter(trainers.values())).device
    image = _images(batch, resolution, device, seed=1)
    label = torch.randint(classes, (batch,), generator=torch.Generator().manual_seed(2))
    label = label.to(device)
    for trainer in trainers.values():
        trainer.model.train()
        trainer.model.clip.eval()
    times: dict[str, list[float]] = {name: [] for name in trainers}
    peaks: dict[str, PeakMemory] = {}
    step = 0
    while step < warmup + repeat or (
            step < warmup + max_repeat and min(sum(t) for t in times.values()) < min_seconds):
        step += 1
        for name, trainer in trainers.items():
            with mode(name), PeakMemory(device) as memory:
                _sync(device)
                start = time.perf_counter()
                train_step(trainer, image, label)
                _sync(device)
                elapsed = time.perf_counter() - start
            if step > warmup:
                times[name].append(elapsed)
                if name not in peaks or memory.peak_bytes > peaks[name].peak_bytes:
                    peaks[name] = memory
    return {name: {"step_s": statistics.median(times[name]), "steps": len(times[name]),
                   "peak_mib": peaks[name].mib, "memory": peaks[name].kind}
            for name in trainers}


def time_evaluation(trainers: dict[str, object], batch: int, resolution: int,
                    batches: int, min_seconds: float = 0.0,
                    max_batches: int = 50) -> dict[str, dict[str, float]]:
    """Per mode: evaluation batches as the trainer's test loop runs them, the class text
    features cached except in mode ``off`` (seconds of the first batch, median seconds of the
    others, images/s of the others, peak memory). The modes take turns batch by batch; after
    the first, at least ``batches - 1`` batches are timed, more (up to ``max_batches``) until
    every mode has run ``min_seconds``."""
    device = next(iter(trainers.values())).device
    image = _images(batch, resolution, device, seed=3)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    peaks: dict[str, PeakMemory] = {}
    for name, trainer in trainers.items():
        trainer.model.eval()
        trainer.model.cache_text_features(name != "off")
    try:
        done = 0
        while done < max(batches, 2) or (
                done < max_batches and min(sum(t[1:]) for t in times.values()) < min_seconds):
            done += 1
            for name, trainer in trainers.items():
                with mode(name), PeakMemory(device) as memory, torch.no_grad():
                    _sync(device)
                    start = time.perf_counter()
                    with trainer.precision.autocast():
                        trainer.model(image).float()
                    _sync(device)
                    times[name].append(time.perf_counter() - start)
                if name not in peaks or memory.peak_bytes > peaks[name].peak_bytes:
                    peaks[name] = memory
    finally:
        for trainer in trainers.values():
            trainer.model.cache_text_features(False)
    out = {}
    for name in trainers:
        steady = statistics.median(times[name][1:])
        out[name] = {"first_batch_s": times[name][0], "batch_s": steady,
                     "batches": len(times[name]),
                     "images_per_s": batch / steady, "peak_mib": peaks[name].mib,
                     "memory": peaks[name].kind}
    return out


@contextlib.contextmanager
def mode(name: str) -> Iterator[None]:
    """The clip speedups of a benchmark mode (``on``, ``cut`` or ``off``)."""
    with speedups(**MODES[name]):
        yield


def logits_difference(trainer, batch: int, resolution: int) -> dict[str, float]:
    """Max abs difference of eval logits with every optimisation on and off (call it on an fp32
    trainer), and the largest logit for scale. (A model that holds its class vectors, as
    PromptKD's student, has no text features to cache.)"""
    model = trainer.model.eval()
    image = _images(batch, resolution, trainer.device, seed=4)
    cache = getattr(model, "cache_text_features", lambda on: None)
    with torch.no_grad():
        cache(True)
        model(image)  # fills the cache
        fast = model(image).float()
        cache(False)
        with mode("off"):
            slow = model(image).float()
    return {"max_abs_diff": (fast - slow).abs().max().item(),
            "max_abs_logit": slow.abs().max().item()}
