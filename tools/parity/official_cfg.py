"""The official ``train.py`` of a checkout, loaded as a module to build its config as it would.

Every official ``train.py`` builds its config with ``setup_cfg(args)``: Dassl defaults, its own
``extend_cfg``, the dataset YAML, the method YAML, ``reset_cfg`` from the flags, then the
``opts``. The generators call that function with the namespace argparse would have produced for
the shipped command line, so the config is the official one, not a transcription.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

# Flags every official train.py reads in reset_cfg (argparse defaults of their parsers).
COMMON_FLAGS = {"root": "", "output_dir": "", "resume": "", "seed": -1, "source_domains": None,
                "target_domains": None, "transforms": None, "trainer": "", "backbone": "",
                "head": "", "config_file": "", "dataset_config_file": "", "eval_only": False,
                "model_dir": "", "load_epoch": None, "no_train": False}


def load_train_module(code_dir: Path) -> ModuleType:
    """The official ``train.py`` imported under the name ``official_train`` (not run)."""
    path = code_dir / "train.py"
    spec = importlib.util.spec_from_file_location("official_train", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no train.py in {code_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["official_train"] = module
    spec.loader.exec_module(module)
    return module


def official_cfg(train: ModuleType, opts: list[str], **flags):
    """``train.setup_cfg`` on the namespace of ``train.py <flags> <opts>`` (frozen config)."""
    values = dict(COMMON_FLAGS) | flags | {"opts": [str(o) for o in opts]}
    return train.setup_cfg(argparse.Namespace(**values))


def cfg_subset(cfg, keys: list[str]) -> dict:
    """Selected nodes and keys of a config as plain JSON values."""
    out = {}
    for key in keys:
        node = cfg
        for part in key.split("."):
            node = node[part]
        out[key] = _plain(node)
    return out


def _plain(value):
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
