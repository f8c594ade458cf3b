"""Optimizers and learning-rate schedulers built from ``cfg.OPTIM`` as Dassl builds them.

Schedulers are stepped once per epoch (``TrainerBase.update_lr``). The main schedules are
torch's own (``StepLR``, ``MultiStepLR``, ``CosineAnnealingLR(T_max=MAX_EPOCH)``), so the
values match Dassl's to the last bit. With ``WARMUP_EPOCH > 0`` a warmup scheduler wraps
them: epochs ``0..WARMUP_EPOCH-1`` use ``WARMUP_CONS_LR`` (constant) or a ramp from
``WARMUP_MIN_LR`` (linear); after that the main schedule runs, starting from its epoch 0
(``WARMUP_RECOUNT=True``) or from epoch ``WARMUP_EPOCH`` (``False``).
Unlike Dassl's, the warmup schedulers' ``state_dict`` holds the main schedule's state dict,
not the scheduler object, so checkpoints stay plain data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["AVAI_OPTIMS", "AVAI_SCHEDS", "build_optimizer", "build_lr_scheduler",
           "ConstantWarmupScheduler", "LinearWarmupScheduler"]

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "adamw"]
AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


def build_optimizer(model: nn.Module | Iterable, optim_cfg: Any,
                    param_groups: Iterable | None = None) -> torch.optim.Optimizer:
    """Dassl's ``build_optimizer``: ``optim_cfg`` is ``cfg.OPTIM``; ``model`` a module or an
    iterable of parameters; ``param_groups`` (if given) replaces both."""
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ValueError(f"Unsupported optimizer OPTIM.NAME={name!r}; choose one of "
                         f"{AVAI_OPTIMS}")
    if optim_cfg.STAGED_LR:
        raise NotImplementedError("OPTIM.STAGED_LR is not supported; pass param_groups to "
                                  "build_optimizer instead")
    if param_groups is None:
        param_groups = model.parameters() if isinstance(model, nn.Module) else model
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas,
                                amsgrad=name == "amsgrad")
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM,
                               weight_decay=wd, dampening=optim_cfg.SGD_DAMPNING,
                               nesterov=optim_cfg.SGD_NESTEROV)
    if name == "rmsprop":
        return torch.optim.RMSprop(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM,
                                   weight_decay=wd, alpha=optim_cfg.RMSPROP_ALPHA)
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=wd, betas=betas)


class _BaseWarmupScheduler(LRScheduler):
    """Runs its own rule for ``warmup_epoch`` epochs, then steps ``successor``."""

    def __init__(self, optimizer: torch.optim.Optimizer, successor: LRScheduler,
                 warmup_epoch: int, last_epoch: int = -1) -> None:
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def step(self, epoch: int | None = None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        successor = state.pop("successor", None)
        if not isinstance(successor, dict):
            raise TypeError("warmup scheduler state must hold the successor's state dict")
        self.successor.load_state_dict(successor)
        self.__dict__.update(state)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """``cons_lr`` during warmup."""

    def __init__(self, optimizer: torch.optim.Optimizer, successor: LRScheduler,
                 warmup_epoch: int, cons_lr: float, last_epoch: int = -1) -> None:
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """``min_lr`` at epoch 0, then ``base_lr * epoch / warmup_epoch`` during warmup."""

    def __init__(self, optimizer: torch.optim.Optimizer, successor: LRScheduler,
                 warmup_epoch: int, min_lr: float, last_epoch: int = -1) -> None:
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def _main_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> LRScheduler:
    name, stepsize = optim_cfg.LR_SCHEDULER, optim_cfg.STEPSIZE
    if name not in AVAI_SCHEDS:
        raise ValueError(f"Unsupported OPTIM.LR_SCHEDULER={name!r}; choose one of "
                         f"{AVAI_SCHEDS}")
    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise TypeError(f"OPTIM.STEPSIZE must be an integer for single_step, got "
                            f"{stepsize!r}")
        if stepsize <= 0:
            stepsize = optim_cfg.MAX_EPOCH
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=stepsize,
                                               gamma=optim_cfg.GAMMA)
    if name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(f"OPTIM.STEPSIZE must be a list for multi_step, got {stepsize!r}")
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(stepsize),
                                                    gamma=optim_cfg.GAMMA)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(optim_cfg.MAX_EPOCH))


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> LRScheduler:
    """Dassl's ``build_lr_scheduler`` (``optim_cfg`` is ``cfg.OPTIM``)."""
    scheduler = _main_scheduler(optimizer, optim_cfg)
    if optim_cfg.WARMUP_EPOCH <= 0:
        return scheduler
    if not optim_cfg.WARMUP_RECOUNT:
        scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
    if optim_cfg.WARMUP_TYPE == "constant":
        return ConstantWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH,
                                       optim_cfg.WARMUP_CONS_LR)
    if optim_cfg.WARMUP_TYPE == "linear":
        return LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH,
                                     optim_cfg.WARMUP_MIN_LR)
    raise ValueError(f"Unsupported OPTIM.WARMUP_TYPE={optim_cfg.WARMUP_TYPE!r}; choose "
                     f"'constant' or 'linear'")
