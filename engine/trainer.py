"""The training loop with Dassl's classes and hooks: TrainerBase, SimpleTrainer, TrainerX.

As in Dassl, the engine never steps the schedulers by itself: a trainer calls
``self.update_lr()`` in ``forward_backward`` when ``self.batch_idx + 1 == self.num_batches``
(once per epoch, after the last batch), so trainer files written for Dassl keep working.

Checkpoints: every epoch ends with a save. The epochs kept by ``TRAIN.CHECKPOINT_FREQ`` (and
the last) become ``model.pth.tar-<epoch>``; the others replace ``model-resume.pth.tar`` (one
file, removed once a later epoch file exists). Each checkpoint records ``meta`` from
:meth:`TrainerBase.checkpoint_meta` (trainer, optimisation config; prompt trainers add the
backbone and their prompt settings), checked whenever a checkpoint is loaded
(:mod:`engine.checkpoint_checks`).

Resume: ``before_train`` looks for the ``checkpoint`` pointer of every registered model in
``RESUME`` (or ``OUTPUT_DIR``) and restores weights, optimizer, scheduler, trainer extras and
the Python / numpy / torch generator states saved with them, so training goes on exactly as
if it had not stopped (the data order comes from those generators, as in Dassl). A resume
with other ``OPTIM`` values or another ``SEED`` than the saved ones is refused, naming both.

Under torchrun (:mod:`engine.distributed`) the gradients of what the optimizers update are
averaged over the processes in :meth:`TrainerBase.model_update`, and only the first process
writes checkpoints and tensorboard files.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import sys
import time
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from engine import distributed
from engine.checkpoint import (
    BEST_FILE,
    POINTER_FILE,
    get_rng_state,
    latest_checkpoint_path,
    load_checkpoint,
    save_checkpoint,
    save_resume_checkpoint,
    set_rng_state,
)
from engine.checkpoint_checks import (
    check_meta,
    check_training_checkpoint,
    describe_mismatch,
    flat_config,
)
from engine.config import check_values
from engine.data import DataManager
from engine.data.samplers import EveryNth
from engine.errors import CheckpointError, ConfigError
from engine.evaluator import build_evaluator
from engine.registry import TRAINER_REGISTRY
from engine.utils import AverageMeter, MetricMeter, tolist_if_not

__all__ = ["TrainerBase", "SimpleTrainer", "TrainerX", "build_trainer"]

logger = logging.getLogger(__name__)


class TrainerBase:
    """Registered models with their optimizers and schedulers; generic loop and hooks."""

    def __init__(self) -> None:
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict[str, Any] = OrderedDict()
        self._scheds: OrderedDict[str, Any] = OrderedDict()
        self._writer = None
        self.precision = None  # an engine.precision.Precision, set by trainers that use one
        self.best_result = -math.inf

    # ------------------------------------------------------------------ models
    def register_model(self, name: str = "model", model: nn.Module | None = None,
                       optim: Any = None, sched: Any = None) -> None:
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot register a model before super().__init__() runs")
        if name in self._models:
            raise KeyError(f"A model named {name!r} is already registered")
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: str | list[str] | None = None) -> list[str]:
        real = list(self._models.keys())
        if names is None:
            return real
        names = tolist_if_not(names)
        for name in names:
            if name not in real:
                raise KeyError(f"No registered model {name!r}; registered: {real}")
        return names

    def set_model_mode(self, mode: str = "train", names: str | list[str] | None = None) -> None:
        if mode not in ("train", "test", "eval"):
            raise KeyError(f"Unknown mode {mode!r}; use train, test or eval")
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def update_lr(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def get_current_lr(self, names: str | list[str] | None = None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]

    # ------------------------------------------------------------------ checkpoint hooks
    def map_checkpoint_state_dict(self, name: str, state_dict: dict) -> dict:
        """Map a loaded state dict (e.g. official key names) before the strict load."""
        return state_dict

    def checkpoint_extras(self, name: str) -> dict:
        """Extra training state of model ``name`` to save (tensors and plain data only)."""
        return {}

    def load_checkpoint_extras(self, name: str, checkpoint: dict) -> None:
        """Restore what :meth:`checkpoint_extras` saved (called on resume)."""

    def checkpoint_meta(self, name: str) -> dict:
        """What model ``name``'s checkpoints record about the run that made them (plain
        data), compared with the loading run by :func:`engine.checkpoint_checks.check_meta`:
        ``trainer``; ``backbone`` ``{"name", "fingerprint"}``; ``config`` and ``optim``
        (``{"DOTTED.KEY": value}``: the settings that shape the learned tensors, which must
        match to load them, and the optimisation settings and seed, which must match to
        resume)."""
        return {}

    # ------------------------------------------------------------------ save / load
    def save_model(self, epoch: int, directory: str, is_best: bool = False,
                   val_result: float | None = None, model_name: str = "",
                   resume_point: bool = False) -> None:
        """Save every registered model as ``directory/<name>/model.pth.tar-<epoch + 1>``
        (``model_name`` instead, if given; ``model-resume.pth.tar`` with ``resume_point``), by
        the first process only when several run."""
        if not distributed.is_main():
            return
        rng_state = get_rng_state()
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
                "best_result": self.best_result,
                "rng_state": rng_state,
                "extras": self.checkpoint_extras(name),
                "meta": self.checkpoint_meta(name),
            }
            if resume_point:
                save_resume_checkpoint(state, os.path.join(directory, name))
            else:
                save_checkpoint(state, os.path.join(directory, name), is_best=is_best,
                                model_name=model_name)

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume from the latest checkpoints in ``directory``; returns the start epoch."""
        names = self.get_model_names()
        paths = {name: latest_checkpoint_path(os.path.join(directory, name)) for name in names}
        if not names or any(path is None for path in paths.values()):
            logger.info("No checkpoint found, train from scratch")
            return 0
        logger.info("Found checkpoint at %s (will resume training)", directory)
        start_epoch = 0
        for i, name in enumerate(names):
            path = paths[name]
            if not os.path.isfile(path):
                raise CheckpointError(
                    f"{os.path.join(directory, name, POINTER_FILE)} names {path}, which does "
                    "not exist; delete the pointer to train from scratch")
            checkpoint = check_training_checkpoint(load_checkpoint(path), path, resuming=True)
            check_meta(checkpoint.get("meta"), self.checkpoint_meta(name), path, resuming=True)
            logger.info('Resuming %s from "%s"', name, path)
            self._restore(name, checkpoint, path)
            start_epoch = checkpoint["epoch"]
            if i == 0 and checkpoint.get("rng_state") is not None:
                try:
                    set_rng_state(checkpoint["rng_state"])
                except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                    raise CheckpointError(f"{path}: its 'rng_state' is malformed ({exc}); "
                                          "it cannot resume exactly") from exc
            self.best_result = checkpoint.get("best_result", self.best_result)
        logger.info("Previous epoch: %d", start_epoch)
        return start_epoch

    def _restore(self, name: str, checkpoint: dict, path: str) -> None:
        self._load_weights(name, checkpoint["state_dict"], path, checkpoint.get("meta"))
        optim, sched = self._optims[name], self._scheds[name]
        optim_state, sched_state = checkpoint.get("optimizer"), checkpoint.get("scheduler")
        if sched is not None and sched_state is not None and not isinstance(sched_state, dict):
            raise CheckpointError(f"{path} stores its scheduler as a pickled object (an official "
                                  "checkpoint); training cannot resume from it")
        try:
            if optim is not None and optim_state is not None:
                optim.load_state_dict(optim_state)
            if sched is not None and sched_state is not None:
                sched.load_state_dict(sched_state)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"{path}: its optimizer or scheduler state does not fit this "
                                  f"run's ({type(exc).__name__}: {exc})") from exc
        self.load_checkpoint_extras(name, checkpoint.get("extras") or {})

    def _load_weights(self, name: str, state_dict: dict, path: str,
                      saved_meta: dict | None) -> None:
        """Strict load; a mismatch says what the file looks like instead of torch's lists."""
        model = self._models[name]
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise CheckpointError(describe_mismatch(model, state_dict, path, saved_meta,
                                                    self.checkpoint_meta(name))) from exc

    def _read_model_file(self, directory: str, name: str, epoch: int | None
                         ) -> tuple[str, dict, dict | None, dict]:
        """(path, checkpoint, its meta, the state dict mapped for model ``name``) of
        ``directory/<name>/model-best.pth.tar`` (``model.pth.tar-<epoch>``), checked: the file
        is a sound checkpoint and its recorded backbone and prompt settings are this run's."""
        model_file = BEST_FILE if epoch is None else f"model.pth.tar-{epoch}"
        path = os.path.join(directory, name, model_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(_missing_model_message(directory, name, path))
        checkpoint = check_training_checkpoint(load_checkpoint(path), path)
        meta = checkpoint.get("meta")
        check_meta(meta, self.checkpoint_meta(name), path, resuming=False)
        return path, checkpoint, meta, self.map_checkpoint_state_dict(name,
                                                                      checkpoint["state_dict"])

    def initialize_from(self, directory: str, epoch: int | None = None) -> None:
        """Start training from the learned tensors of another run (``--model-dir`` without
        ``--eval-only``, e.g. MVLPT's source prompts for a target task): every registered model
        loads ``directory/<name>/model-best.pth.tar`` (``model.pth.tar-<epoch>``) through
        :meth:`map_checkpoint_state_dict`; optimizer and schedule start fresh. Every tensor of
        the model must be in the file with its shape, and nothing else."""
        for name in self.get_model_names():
            path, checkpoint, meta, state = self._read_model_file(directory, name, epoch)
            _check_transfer(name, path, state, self._models[name].state_dict())
            self._load_weights(name, state, path, meta)
            taken = ", ".join(f"{key} {list(value.shape)}" for key, value in state.items())
            logger.info("Initialised %s from %s (epoch %s of that run): took %s", name, path,
                        checkpoint.get("epoch"), taken)

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load ``directory/<name>/model.pth.tar-<epoch>`` (default ``model-best.pth.tar``)
        into every registered model, through :meth:`map_checkpoint_state_dict`."""
        if not directory:
            logger.info("Note that load_model() is skipped as no pretrained model is given "
                        "(ignore this if it's done on purpose)")
            return
        for name in self.get_model_names():
            path, checkpoint, meta, state_dict = self._read_model_file(directory, name, epoch)
            val = checkpoint.get("val_result")
            val_text = f", val_result={val:.1f}" if isinstance(val, (int, float)) else ""
            logger.info("Load %s to %s (epoch=%s%s)", path, name, checkpoint.get("epoch"),
                        val_text)
            self._load_weights(name, state_dict, path, meta)
            trainer = self.checkpoint_meta(name).get("trainer")
            if meta and trainer and meta.get("trainer") not in (None, trainer):
                logger.info("Note: %s was trained by %s; it is loaded by %s", path,
                            meta["trainer"], trainer)

    # ------------------------------------------------------------------ optimisation
    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def model_zero_grad(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        if self.precision is not None:
            self.precision.backward(loss)
        else:
            loss.backward()

    def model_update(self, names: str | list[str] | None = None) -> None:
        optims = [self._optims[n] for n in self.get_model_names(names)
                  if self._optims[n] is not None]
        distributed.average_gradients(p for optim in optims for group in optim.param_groups
                                      for p in group["params"])  # under torchrun only
        if self.precision is not None:
            self.precision.step(*optims)
            return
        for optim in optims:
            optim.step()

    def model_backward_and_update(self, loss: torch.Tensor,
                                  names: str | list[str] | None = None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)

    # ------------------------------------------------------------------ tensorboard
    def init_writer(self, log_dir: str) -> None:
        if self._writer is None and distributed.is_main():
            from torch.utils.tensorboard import SummaryWriter

            logger.info("Initialize tensorboard (log_dir=%s)", log_dir)
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    # ------------------------------------------------------------------ loop
    def train(self, start_epoch: int, max_epoch: int) -> None:
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_epoch(self) -> None: ...

    def after_epoch(self) -> None: ...

    def before_test(self) -> None:
        """Runs before the evaluation loop (e.g. to cache class text features)."""

    def after_test(self) -> None:
        """Runs after the evaluation loop (e.g. to drop cached features)."""

    def run_epoch(self) -> None:
        raise NotImplementedError

    def test(self, split: str | None = None) -> float:
        raise NotImplementedError

    def parse_batch_train(self, batch: dict) -> Any:
        raise NotImplementedError

    def parse_batch_test(self, batch: dict) -> Any:
        raise NotImplementedError

    def forward_backward(self, batch: dict) -> dict:
        raise NotImplementedError

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _check_transfer(name: str, path: str, state: dict, own: dict) -> None:
    """Raise ValueError naming every tensor that does not carry over from ``path``."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{key} {list(state[key].shape)} in the file, {list(own[key].shape)} here"
                  for key in sorted(set(own) & set(state)) if state[key].shape != own[key].shape]
    if not (missing or unexpected or mismatched):
        return
    problems = ([f"not in the file: {', '.join(missing)}"] if missing else []) + (
        [f"not in this model: {', '.join(unexpected)}"] if unexpected else []) + (
        [f"other shapes: {'; '.join(mismatched)}"] if mismatched else [])
    raise ValueError(
        f"{path} cannot initialise {name}: {'. '.join(problems)}. The source run must use the "
        "same method settings (prompt lengths, variant); tensors sized by the classes (e.g. "
        "class-specific context) cannot initialise a task with other classes.")


def _missing_model_message(directory: str, name: str, model_path: str) -> str:
    if not os.path.isdir(directory):
        return (f"No model at {model_path}: the model directory {directory} does not exist "
                f"(check --model-dir)")
    listing = sorted(os.listdir(directory))
    if not os.path.isdir(os.path.join(directory, name)) and any(
            f in (POINTER_FILE, BEST_FILE) or f.startswith("model.pth.tar-") for f in listing):
        parent = os.path.dirname(os.path.normpath(directory)) or "."
        return (f"No model at {model_path}: {directory} holds checkpoint files itself (it is "
                f"the model sub-folder of a run); pass the run's folder: --model-dir {parent}")
    sub = os.path.join(directory, name)
    if os.path.isdir(sub):
        listing = [f"{name}/{f}" for f in sorted(os.listdir(sub))] or [f"{name}/ (empty)"]
    return (f"No model at {model_path}. {directory} holds: {', '.join(listing) or '(nothing)'}"
            f". Pass --load-epoch N for model.pth.tar-N, or point --model-dir at the output "
            f"directory of a training run.")


class SimpleTrainer(TrainerBase):
    """Device, data, model, evaluator from ``cfg``; Dassl's epoch hooks and ``test``."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        check_values(cfg)
        self.check_cfg(cfg)
        use_cuda = torch.cuda.is_available() and cfg.USE_CUDA
        distributed.init_distributed(use_cuda)  # under torchrun; sets this process's GPU
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname,
                                         tasks=getattr(getattr(self, "dm", None), "tasks", None))
        self.best_result = -math.inf

    def check_cfg(self, cfg: Any) -> None:
        """Check trainer-specific settings (optional)."""

    def checkpoint_meta(self, name: str) -> dict:
        # a resume continues the saved run: its schedule, and its seed's random streams
        return {"trainer": self.cfg.TRAINER.NAME or type(self).__name__,
                "optim": {**flat_config(self.cfg.OPTIM, "OPTIM"), "SEED": self.cfg.SEED}}

    def build_data_loader(self) -> None:
        self.use_data_manager(DataManager(self.cfg))

    def use_data_manager(self, dm: DataManager) -> None:
        """Take the loaders and class facts of ``dm`` (for trainers that build their own)."""
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement build_model() and "
                                  f"register its model(s) with self.register_model()")

    def train(self) -> None:  # type: ignore[override]
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        if self.cfg.RESUME and not os.path.isdir(self.cfg.RESUME):
            raise ConfigError(f"--resume {self.cfg.RESUME}: no such folder (RESUME names the "
                              "output folder of the run to resume)")
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)
        if self.start_epoch >= self.max_epoch:
            self.epoch = max(self.start_epoch - 1, 0)
            logger.info("Training already finished: %s holds the checkpoint of epoch %d of %d; "
                        "nothing left to train (use a new --output-dir to train again)",
                        directory, self.start_epoch, self.max_epoch)
        writer_dir = os.path.join(self.output_dir, "tensorboard")
        os.makedirs(writer_dir, exist_ok=True)
        self.init_writer(writer_dir)
        self.time_start = time.time()

    def after_train(self) -> None:
        logger.info("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                logger.info("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                logger.info("Deploy the last-epoch model")
            self.test()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        logger.info("Elapsed: %s", elapsed)
        self.close_writer()

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = (self.epoch + 1) % freq == 0 if freq > 0 else False
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result,
                                model_name="model-best.pth.tar")
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)
        else:  # what a resume needs, in one file replaced every epoch
            self.save_model(self.epoch, self.output_dir, resume_point=True)

    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        """Evaluate on ``split`` (default ``TEST.SPLIT``; test when there is no val set);
        returns the first result (accuracy)."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split, data_loader = "test", self.test_loader
        if data_loader is None:
            raise RuntimeError("No test data: the dataset has no test split")
        logger.info("Evaluate on the *%s* set", split)
        sharded = distributed.world_size() > 1 and hasattr(self.evaluator,
                                                           "gather_from_processes")
        if sharded:  # under torchrun: every N-th image here, the rest in the other processes
            data_loader = DataLoader(
                data_loader.dataset, batch_size=data_loader.batch_size,
                sampler=EveryNth(data_loader.dataset, distributed.rank(),
                                 distributed.world_size()),
                num_workers=data_loader.num_workers, pin_memory=data_loader.pin_memory)
        self.before_test()
        try:
            for batch in tqdm(data_loader, desc=f"eval {split}", leave=False,
                              disable=not _on_terminal()):
                input, label = self.parse_batch_test(batch)
                self.evaluator.process(self.model_inference(input), label)
        finally:
            self.after_test()
        if sharded:
            self.evaluator.gather_from_processes()
        results = self.evaluator.evaluate()
        for key, value in results.items():
            self.write_scalar(f"{split}/{key}", value, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)

    def parse_batch_test(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)


def _on_terminal() -> bool:
    """Progress bars only for a person watching: not in redirected output or log files."""
    return sys.stderr.isatty()


class TrainerX(SimpleTrainer):
    """A trainer on labelled data only (``train_loader_x``)."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time, data_time = AverageMeter(), AverageMeter()
        self.num_batches = len(self.train_loader_x)
        if hasattr(self.train_loader_x.sampler, "set_epoch"):  # sharded under torchrun
            self.train_loader_x.sampler.set_epoch(self.epoch)
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            meet_freq = (self.batch_idx + 1) % self.cfg.TRAIN.PRINT_FREQ == 0
            if meet_freq or self.num_batches < self.cfg.TRAIN.PRINT_FREQ:
                self._log_batch(losses, batch_time, data_time)
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()

    def _log_batch(self, losses: MetricMeter, batch_time: AverageMeter,
                   data_time: AverageMeter) -> None:
        nb_remain = self.num_batches - self.batch_idx - 1
        nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
        eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
        info = [f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                f"{losses}",
                f"lr {self.get_current_lr():.4e}",
                f"eta {eta}"]
        logger.info(" ".join(info))

    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (batch["img"].to(self.device), batch["label"].to(self.device),
                batch["domain"].to(self.device))


def build_trainer(cfg: Any) -> TrainerBase:
    """Instantiate the trainer named by ``cfg.TRAINER.NAME``."""
    if not cfg.TRAINER.NAME:
        raise ValueError("No trainer given: pass --trainer NAME (registered: "
                         f"{', '.join(sorted(TRAINER_REGISTRY)) or 'none'})")
    logger.info("Loading trainer: %s", cfg.TRAINER.NAME)
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
