"""One precision policy for the whole engine: fp32, fp16, amp or bf16.

``fp16`` keeps the frozen backbone in half precision (``param_dtype``); ``amp`` runs fp16
autocast with a gradient scaler; ``bf16`` runs bf16 autocast. ``fp16`` and ``amp`` need a GPU:
asked for on a CPU they fall back to fp32 with a warning.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

__all__ = ["Precision", "MODES"]

logger = logging.getLogger(__name__)

MODES = ("fp32", "fp16", "amp", "bf16")


class Precision:
    """Dtype of the frozen weights, autocast context and loss scaling for one mode."""

    def __init__(self, mode: str = "fp32", device: torch.device | str = "cpu") -> None:
        if mode not in MODES:
            raise ValueError(f"Unknown precision {mode!r}; choose one of {', '.join(MODES)}")
        self.device = torch.device(device)
        if mode in ("fp16", "amp") and self.device.type != "cuda":
            logger.warning("Precision %s needs a CUDA device; using fp32 on %s", mode,
                           self.device)
            mode = "fp32"
        self.mode = mode
        self.scaler = torch.amp.GradScaler("cuda") if mode == "amp" else None

    @property
    def param_dtype(self) -> torch.dtype:
        """Dtype for the frozen backbone's weights."""
        return torch.float16 if self.mode == "fp16" else torch.float32

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """fp16 autocast for ``amp``, bf16 autocast for ``bf16``, nothing otherwise."""
        if self.mode == "amp":
            with torch.autocast(self.device.type, dtype=torch.float16):
                yield
        elif self.mode == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(self, *optimizers: torch.optim.Optimizer) -> None:
        """Step every optimizer (through the scaler for ``amp``, updated once after)."""
        for optimizer in optimizers:
            if self.scaler is not None:
                self.scaler.step(optimizer)
            else:
                optimizer.step()
        if self.scaler is not None:
            self.scaler.update()

    def __repr__(self) -> str:
        return f"Precision({self.mode!r}, device={str(self.device)!r})"
