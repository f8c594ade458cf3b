"""Helpers with Dassl's names (``dassl.utils``): seeding, logging, files, meters, images."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
import time
from collections import OrderedDict, defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.checkpoint import load_checkpoint, resume_from_checkpoint, save_checkpoint
from engine.data.read_image import read_image

__all__ = ["set_random_seed", "setup_logger", "log_to_file", "mkdir_if_missing", "check_isfile",
           "read_json", "write_json", "read_image", "collect_env_info", "listdir_nohidden",
           "tolist_if_not", "count_num_param", "load_checkpoint", "save_checkpoint",
           "resume_from_checkpoint", "load_pretrained_weights", "AverageMeter", "MetricMeter"]

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(message)s"
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[0-~])")  # colours, cursor moves


class PlainFormatter(logging.Formatter):
    """For log files: the message without ANSI escape sequences."""

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI.sub("", super().format(record))


def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, numpy and torch (all devices), as Dassl does."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def setup_logger(output: str | None = None, level: int = logging.INFO) -> str | None:
    """Send every log record to stdout and to ``output/log.txt`` (or to ``output`` itself
    when it ends with .txt or .log). An existing log file is appended to, after a separator
    line (Dassl starts a time-stamped file instead, so the result of a resumed run never
    reached the log.txt that result parsers read). Returns the log file path."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_engine_handler", False):
            root.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(LOG_FORMAT))
    console._engine_handler = True  # type: ignore[attr-defined]
    root.addHandler(console)
    if output is None:
        return None
    fpath = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
    mkdir_if_missing(os.path.dirname(fpath) or ".")
    if os.path.exists(fpath):
        with open(fpath, "a", encoding="utf-8") as f:
            f.write(f"\n===== new run: {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
    file_handler = logging.FileHandler(fpath, mode="a", encoding="utf-8")
    file_handler.setFormatter(PlainFormatter(LOG_FORMAT))
    file_handler._engine_handler = True  # type: ignore[attr-defined]
    root.addHandler(file_handler)
    return fpath


def log_to_file(message: str, level: int = logging.ERROR) -> bool:
    """Write ``message`` to the log file that :func:`setup_logger` opened, not to the
    console (for what the console shows in another form); False when there is none."""
    record = logging.LogRecord("train", level, __file__, 0, message, None, None)
    handlers = [h for h in logging.getLogger().handlers
                if getattr(h, "_engine_handler", False) and isinstance(h, logging.FileHandler)]
    for handler in handlers:
        handler.handle(record)
    return bool(handlers)


def mkdir_if_missing(dirname: str) -> None:
    os.makedirs(dirname, exist_ok=True)


def check_isfile(fpath: str) -> bool:
    isfile = os.path.isfile(fpath)
    if not isfile:
        logger.warning('No file found at "%s"', fpath)
    return isfile


def read_json(fpath: str) -> Any:
    with open(fpath) as f:
        return json.load(f)


def write_json(obj: Any, fpath: str) -> None:
    mkdir_if_missing(os.path.dirname(fpath) or ".")
    with open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def collect_env_info() -> str:
    """The system facts a result depends on: platform, Python, library versions, CUDA and the
    GPUs. (torch.utils.collect_env's full report takes seconds, spent at every run.)"""
    import platform

    import PIL
    import torchvision

    lines = [f"Platform: {platform.platform()}",
             f"Python: {platform.python_version()}",
             f"PyTorch: {torch.__version__} (CUDA {torch.version.cuda}, "
             f"cuDNN {torch.backends.cudnn.version() if torch.cuda.is_available() else None})",
             f"torchvision: {torchvision.__version__}; numpy: {np.__version__}; "
             f"Pillow: {PIL.__version__}",
             f"CPU threads: {torch.get_num_threads()}"]
    if torch.cuda.is_available():
        lines += [f"GPU {i}: {torch.cuda.get_device_name(i)}"
                  for i in range(torch.cuda.device_count())]
    else:
        lines.append("GPU: none")
    return "\n".join(lines)


def listdir_nohidden(path: str, sort: bool = False) -> list[str]:
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    return sorted(items) if sort else items


def tolist_if_not(x: Any) -> list:
    return x if isinstance(x, list) else [x]


def count_num_param(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Load the entries of a checkpoint whose names and shapes match ``model`` (Dassl's
    behaviour: the others are listed and skipped; no match at all is an error here)."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for key, value in state_dict.items():
        key = key[7:] if key.startswith("module.") else key
        if key in model_dict and torch.is_tensor(value) and model_dict[key].shape == value.shape:
            matched[key] = value
        else:
            discarded.append(key)
    if not matched:
        raise ValueError(f'No weight of "{weight_path}" matches the model by name and shape; '
                         f"check the key names (first model keys: {list(model_dict)[:5]})")
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    logger.info('Successfully loaded pretrained weights from "%s"', weight_path)
    if discarded:
        logger.info("** The following layers are discarded due to unmatched keys or layer "
                    "size: %s", discarded)


class AverageMeter:
    """Current value and running average."""

    def __init__(self, ema: bool = False) -> None:
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val = 0.0
        self.avg = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, val: float | torch.Tensor, n: int = 1) -> None:
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.val if self.ema and self.count == n else (
            self.avg * 0.9 + self.val * 0.1 if self.ema else self.sum / self.count)


class MetricMeter:
    """A group of AverageMeters printed as ``name val (avg)``, as Dassl's."""

    def __init__(self, delimiter: str = " ") -> None:
        self.meters: dict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: dict[str, Any] | None) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("forward_backward must return a dict of losses, got "
                            f"{type(input_dict).__name__}")
        for key, value in input_dict.items():
            if isinstance(value, torch.Tensor):
                value = value.item()
            self.meters[key].update(value)

    def __str__(self) -> str:
        return self.delimiter.join(f"{name} {meter.val:.4f} ({meter.avg:.4f})"
                                   for name, meter in self.meters.items())
