"""What a training checkpoint must hold before a trainer trusts it.

:func:`check_training_checkpoint` refuses malformed content (not a dict, no ``state_dict``,
garbage optimizer / scheduler / epoch fields, NaN or infinite weights), naming the file and
the field. Our checkpoints also record ``meta``: the trainer, the backbone (name and a
fingerprint of its weights), the config that shapes the learned tensors and the optimisation
config and seed; :func:`check_meta` compares them with the current run (a checkpoint trained
on another backbone, or resumed with another schedule or seed, is an error naming both) and
:func:`describe_mismatch` replaces torch's raw size-mismatch lists by what the file looks like.
Official checkpoints have no ``meta``; they are checked for structure only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from engine.checkpoint import InertObject, brief, describe_value
from engine.errors import CheckpointError, ConfigError

__all__ = ["check_training_checkpoint", "check_meta", "describe_mismatch", "flat_config"]


def flat_config(node: Mapping, prefix: str) -> dict[str, Any]:
    """``{"OPTIM.LR": 0.002, ...}``: the leaves of a config node as plain values (tuples as
    lists), for checkpoints and comparisons."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            flat.update(flat_config(value, name))
        else:
            flat[name] = list(value) if isinstance(value, (tuple, list)) else value
    return flat


def check_training_checkpoint(checkpoint: Any, path: str, resuming: bool = False) -> dict:
    """``checkpoint`` if it is sound; otherwise :class:`~engine.errors.CheckpointError`."""
    if not isinstance(checkpoint, dict):
        kind = "a single tensor" if isinstance(checkpoint, torch.Tensor) else (
            f"a {type(checkpoint).__name__}")
        raise CheckpointError(f"{path} holds {kind}, not a checkpoint (a dict with "
                              "'state_dict', 'epoch', 'optimizer', ...)")
    _check_state_dict(checkpoint, path)
    epoch = checkpoint.get("epoch")
    if epoch is not None or resuming:
        if type(epoch) is not int or epoch < 0:
            raise CheckpointError(f"{path}: its 'epoch' is {brief(epoch)}; a checkpoint's "
                                  "epoch is the number of finished epochs, an integer >= 0")
    optimizer = checkpoint.get("optimizer")
    if optimizer is not None and not (
            isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list)):
        raise CheckpointError(f"{path}: its 'optimizer' is {describe_value(optimizer)}, not "
                              "an optimizer state dict ({'state': ..., 'param_groups': [...]})")
    if optimizer is not None:
        _check_optimizer_state(optimizer["state"], path)
    scheduler = checkpoint.get("scheduler")
    if scheduler is not None and not isinstance(scheduler, (dict, InertObject)):
        raise CheckpointError(f"{path}: its 'scheduler' is {describe_value(scheduler)}, not a "
                              "scheduler state dict")
    for field in ("extras", "meta", "rng_state"):
        if checkpoint.get(field) is not None and not isinstance(checkpoint[field], dict):
            raise CheckpointError(f"{path}: its '{field}' is "
                                  f"{describe_value(checkpoint[field])}, not a dict")
    return checkpoint


def _check_state_dict(checkpoint: dict, path: str) -> None:
    if "state_dict" not in checkpoint:
        keys = ", ".join(brief(k) for k in list(checkpoint)[:6]) or "none"
        bare = checkpoint and all(isinstance(v, torch.Tensor) for v in dict.values(checkpoint))
        hint = (" It looks like a bare state dict (model.state_dict()); save it as "
                "{'state_dict': ..., 'epoch': N}." if bare else "")
        raise CheckpointError(f"{path} has no 'state_dict' (its keys: {keys}).{hint}")
    state_dict = checkpoint["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: its 'state_dict' is {describe_value(state_dict)}, not "
                              "a dict of tensors")
    for key, value in dict.items(state_dict):
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict entry {brief(key)} is "
                                  f"{describe_value(value)}, not a tensor")
        _check_finite(value, f"tensor '{key}'", path)


def _check_finite(value: torch.Tensor, what: str, path: str) -> None:
    if (value.is_floating_point() or value.is_complex()) and not bool(
            torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise CheckpointError(
            f"{path}: {what} holds {bad} NaN or infinite values (of {value.numel()}); the file "
            "is damaged or was saved from a diverged training")


def _check_optimizer_state(state: dict, path: str) -> None:
    """The optimizer's per-parameter tensors (momentum, Adam's moments) are finite: a resume
    from NaN momentum diverges at its first step. Two levels, each entry once."""
    for index, slots in dict.items(state):
        if not isinstance(slots, dict):
            raise CheckpointError(f"{path}: optimizer state {brief(index)} is "
                                  f"{describe_value(slots)}, not a dict of tensors")
        for name, value in dict.items(slots):
            if isinstance(value, torch.Tensor):
                _check_finite(value, f"optimizer state {brief(index)} {brief(name)}", path)


def check_meta(saved: dict | None, current: dict, path: str, resuming: bool) -> None:
    """Compare the ``meta`` saved in ``path`` with the current run's (see the module doc).
    Keys present on one side only are skipped (a key added to a trainer later is not a
    mismatch); so is everything for a file without ``meta`` (official checkpoints)."""
    if not saved:
        return
    for field in ("backbone", "config", "optim"):
        if saved.get(field) is not None and not isinstance(saved[field], dict):
            raise CheckpointError(f"{path}: its meta '{field}' is "
                                  f"{describe_value(saved[field])}, not a dict")
    saved_backbone, backbone = saved.get("backbone"), current.get("backbone")
    if saved_backbone and backbone and _other_backbone(saved_backbone, backbone):
        raise CheckpointError(
            f"{path} was trained on the backbone {_backbone(saved_backbone)}, but this run "
            f"loads {_backbone(backbone)}: its prompts do not fit that backbone's features. "
            f"Set MODEL.BACKBONE.NAME to {brief(saved_backbone.get('name'))} to use this file.")
    differences = _differences(saved.get("config"), current.get("config"))
    if differences:
        raise CheckpointError(
            f"{path} was trained with other prompt settings than this run's ({differences}); "
            f"use the config it was trained with")
    if resuming:
        differences = _differences(saved.get("optim"), current.get("optim"))
        if differences:
            raise ConfigError(
                f"Cannot resume from {path}: {differences}. A resume continues the saved run "
                "(its optimizer, learning-rate schedule and random streams were made for the "
                "saved values): resume with them, or train in a new --output-dir.")


def _other_backbone(saved: dict, current: dict) -> bool:
    if saved.get("fingerprint") and current.get("fingerprint"):
        return saved["fingerprint"] != current["fingerprint"]
    return saved.get("name") != current.get("name")


def _backbone(backbone: dict) -> str:
    fingerprint = backbone.get("fingerprint")
    return brief(backbone.get("name")) + (f" (weights {_key(fingerprint)})" if fingerprint
                                          else "")


def _differences(saved: dict | None, current: dict | None) -> str:
    if not saved or not current:
        return ""
    keys = [k for k in saved if k in current and _plain(saved[k]) != _plain(current[k])]
    return "; ".join(f"{_key(k)} is {brief(saved[k])} in the checkpoint, {brief(current[k])} "
                     "in this run" for k in keys)


def _key(key: Any) -> str:
    return key if isinstance(key, str) and len(key) <= 80 else brief(key)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def describe_mismatch(model: nn.Module, state_dict: dict, path: str, saved_meta: dict | None,
                      meta: dict) -> str:
    """Why ``state_dict`` does not load into ``model``, in a few words: what the file was
    saved by (from its ``meta``) and the first differing keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} {list(state_dict[k].shape)} in the file, {list(own[k].shape)} here"
              for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    facts = []
    if shapes:
        facts.append(f"{len(shapes)} tensors of other shapes ({'; '.join(shapes[:3])})")
    if missing:
        facts.append(f"{len(missing)} missing ({', '.join(missing[:3])})")
    if unexpected:
        facts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})")
    trainer = meta.get("trainer") or "this"
    origin = ""
    if saved_meta:
        saved_trainer = saved_meta.get("trainer") or "another trainer"
        config = _differences(saved_meta.get("config"), meta.get("config"))
        origin = f" It was saved by {saved_trainer}" + (
            f" with other settings ({config})." if config else
            " too, with other settings." if saved_trainer == trainer else ".")
    return (f"{path} does not fit the {trainer} model of this run: {', '.join(facts)}."
            f"{origin} Load it with the trainer and config it was trained with.")
