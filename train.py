"""Train or evaluate a prompt learner with the official command line.

    python train.py --root DATA --trainer CoOp \
        --dataset-config-file configs/datasets/caltech101.yaml \
        --config-file configs/trainers/CoOp/vit_b16_ep50.yaml \
        --output-dir output/coop --seed 1 DATASET.NUM_SHOTS 16

Config merge order: defaults (with every registered trainer/dataset node), dataset config
file, method config file, command-line flags, ``KEY VALUE`` overrides, freeze.
The packages ``trainers`` and ``datasets`` are imported when present; the environment
variable ``ENGINE_IMPORTS`` (comma-separated module names) imports more modules first, e.g.
a trainer or dataset of your own.

A run locks its output folder (``OUTPUT_DIR/run.lock``, :mod:`engine.lock`) before it writes
there. An error in the input (flag, config value, file) is printed as one message, without a
traceback (``--debug`` or ``ENGINE_DEBUG=1`` shows it), and written to the run's log.txt; the
exit status says what happened (:mod:`engine.errors`: 2 input refused, 75 folder locked by
another run, 1 crash).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import os
import socket
import sys
import traceback
from collections.abc import Iterator

import torch

from engine import distributed
from engine.checkpoint import remove_stale_temporaries
from engine.config import CfgNode, get_cfg_default
from engine.errors import ConfigError, RunLocked, exit_status, is_own_error
from engine.interrupt import EXIT_INTERRUPTED, interrupted_message
from engine.lock import RunLock, describe_holder
from engine.preflight import check_inputs, foreign_trainer_nodes
from engine.trainer import build_trainer
from engine.utils import collect_env_info, log_to_file, set_random_seed, setup_logger

logger = logging.getLogger("train")

PLUGIN_PACKAGES = ("datasets", "trainers")


def import_plugins() -> None:
    """Import ``datasets``, ``trainers`` and the modules named in ``ENGINE_IMPORTS``."""
    for package in PLUGIN_PACKAGES:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as exc:
            if exc.name != package:
                raise
    extra = os.environ.get("ENGINE_IMPORTS", "")
    for module in filter(None, (m.strip() for m in extra.split(","))):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            raise ConfigError(f"ENGINE_IMPORTS names {module}, which cannot be imported "
                              f"({exc}); check the name and PYTHONPATH") from exc


def reset_cfg(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Apply the command-line flags (a seed of 0 counts, unlike the official script)."""
    flags = [("root", "DATASET.ROOT"), ("output_dir", "OUTPUT_DIR"), ("resume", "RESUME"),
             ("source_domains", "DATASET.SOURCE_DOMAINS"),
             ("target_domains", "DATASET.TARGET_DOMAINS"), ("transforms", "INPUT.TRANSFORMS"),
             ("trainer", "TRAINER.NAME"), ("backbone", "MODEL.BACKBONE.NAME"),
             ("head", "TRAINER.PARTS.HEAD"), ("feature_cache", "FEATURE_CACHE.DIR")]
    for attr, key in flags:
        value = getattr(args, attr)
        if value:
            node = cfg
            *parents, leaf = key.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
    if args.seed is not None and args.seed >= 0:
        cfg.SEED = args.seed
        if "RANDOM_SEED_SAMPLING" in cfg.DATASET:
            cfg.DATASET.RANDOM_SEED_SAMPLING = args.seed
    reset_multitask_cfg(cfg, args)


# MVLPT's flags (multitask data) as its train.py maps them: (flag, config keys)
MULTITASK_FLAGS = [("dataset", ("DATASET.DATASET",)),
                   ("shots", ("DATASET.NUM_SAMPLES_PER_CLASS", "DATASET.NUM_SHOTS")),
                   ("multi_task", ("DATASET.MULTITASK",)),
                   ("multi_task_label_pertask", ("DATASET.MULTITASK_LABEL_PERTASK",)),
                   ("dataset_coop", ("DATASET.COOP",)),
                   ("cut_contextlen", ("TRAINER.CUT_CONTEXTLEN",)),
                   ("act_ckpt", ("TRAINER.ACT_CKPT",))]


def reset_multitask_cfg(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Apply the multitask flags that were given (``--multi-task-evalkey`` when not
    ``average``); their keys are registered by ``datasets.multitask`` and ``trainers.mvlpt``."""
    given = [(keys, getattr(args, attr)) for attr, keys in MULTITASK_FLAGS
             if getattr(args, attr, None) not in (None, False, "")]
    if getattr(args, "multi_task_evalkey", "average") != "average":
        given.append((("DATASET.MULTITASK_EVALKEY",), args.multi_task_evalkey))
    for keys, value in given:
        for key in keys:
            cfg.merge_from_list([key, value])


def check_args(args: argparse.Namespace) -> None:
    """Refuse, before any work, the command-line mistakes that would otherwise surface as an
    unrelated error: flags among the overrides, config files that do not exist."""
    opts = [str(item) for item in args.opts or []]
    flags = [i for i, item in enumerate(opts) if item.startswith("--")]
    if flags:
        i = flags[0]
        flag = opts[i:i + 2] if i + 1 < len(opts) and not _is_key(opts[i + 1]) else opts[i:i + 1]
        rest = [item for j, item in enumerate(opts) if j not in range(i, i + len(flag))]
        raise ConfigError(
            f"{' '.join(flag)} comes after the KEY VALUE overrides, where it is read as a config "
            f"key; flags go first: train.py ... {' '.join(flag)} {' '.join(rest[:4])}"
            f"{' ...' if len(rest) > 4 else ''}")
    for flag, path in (("--dataset-config-file", args.dataset_config_file),
                       ("--config-file", args.config_file)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{flag} {path}: no such file{_similar_files(path)}")
    if args.load_epoch is not None and args.load_epoch < 1:
        raise ConfigError(f"--load-epoch {args.load_epoch}: epoch files start at "
                          "model.pth.tar-1; pass N >= 1 (or omit it for model-best.pth.tar)")


def _is_key(item: str) -> bool:
    return item.startswith("--") or (item.isupper() and "." in item)


def _similar_files(path: str) -> str:
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        return f" (the folder {folder} does not exist either)"
    stem, ext = os.path.splitext(os.path.basename(path))
    names = {os.path.splitext(n)[0]: n for n in os.listdir(folder) if n.endswith(ext)}
    close = [names[c] for c in difflib.get_close_matches(stem, list(names), n=3, cutoff=0.7)]
    return f" (did you mean {', '.join(os.path.join(folder, c) for c in close)}?)" if close else ""


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    check_args(args)
    cfg = get_cfg_default()
    if args.dataset_config_file:
        cfg.merge_from_file(args.dataset_config_file)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    reset_cfg(cfg, args)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    return cfg


def print_args(args: argparse.Namespace, cfg: CfgNode) -> None:
    lines = ["***************", "** Arguments **", "***************"]
    lines += [f"{key}: {value}" for key, value in sorted(vars(args).items())]
    lines += ["************", "** Config **", "************", str(cfg)]
    logger.info("\n".join(lines))


def main(args: argparse.Namespace) -> None:
    try:
        cfg = setup_cfg(args)
    except Exception as exc:
        _record_in_folder(args.output_dir, exc)
        raise
    # under torchrun: join the process group; only the first process locks the output folder
    # and logs to log.txt
    distributed.init_distributed(torch.cuda.is_available() and cfg.USE_CUDA)
    try:
        with run_folder(cfg.OUTPUT_DIR):
            run(args, cfg)
    finally:
        distributed.shutdown()


def run(args: argparse.Namespace, cfg: CfgNode) -> None:
    logger.info("Run: trainer %s, dataset %s, backbone %s, seed %s, output %s (pid %d on %s)",
                cfg.TRAINER.NAME or "-", run_datasets(cfg), cfg.MODEL.BACKBONE.NAME or "-",
                cfg.SEED, cfg.OUTPUT_DIR, os.getpid(), socket.gethostname())
    if cfg.SEED >= 0:
        logger.info("Setting fixed seed: %d", cfg.SEED)
        set_random_seed(cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    check_inputs(cfg)  # input mistakes stop here, before the config dump
    warning = foreign_trainer_nodes(cfg, args.config_file)
    if warning:
        logger.warning("Warning: %s", warning)
    print_args(args, cfg)
    logger.info("Collecting env info ...")
    logger.info("** System info **\n%s\n", collect_env_info())
    with distributed.in_turn():  # under torchrun: first-use downloads and files, once
        trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if args.model_dir:  # start from another run's learned tensors (MVLPT's transfer)
        trainer.initialize_from(args.model_dir, epoch=args.load_epoch)
    if not args.no_train:
        trainer.train()


def run_datasets(cfg: CfgNode) -> str:
    """The dataset of a run for its first log line: DATASET.NAME, or the tasks of --dataset
    (ELEVATER's tasks, MVLPT's multitask runs)."""
    return cfg.DATASET.NAME or cfg.DATASET.get("DATASET") or "-"


@contextlib.contextmanager
def run_folder(output_dir: str) -> Iterator[None]:
    """Hold ``output_dir`` for one run: lock it (or stop with RunLocked naming the holder),
    open its log.txt, remove the temporary files of killed runs, and write a failure to
    log.txt. Under torchrun only the first process does this; the others follow its lead."""
    lock = RunLock(output_dir) if distributed.is_main() else None
    failure = None
    if lock is not None:
        try:
            lock.acquire()
        except Exception as exc:  # every process must hear of it, or the others would wait
            failure = exc
    shared = [r for r in distributed.all_gather_objects(str(failure) if failure else None) if r]
    if failure is not None:
        raise failure
    if shared:
        raise RunLocked(shared[0])
    try:
        if lock is None:
            setup_logger(None, level=logging.WARNING)
        else:
            setup_logger(output_dir)
            _tidy(lock, output_dir)
        try:
            yield
        except BaseException as exc:
            if lock is not None:
                log_to_file(_failure_text(exc))
            raise
    finally:
        if lock is not None:
            lock.release()


def _tidy(lock: RunLock, output_dir: str) -> None:
    if lock.taken_over:
        logger.info("Took over the lock of %s from a run that ended without releasing it: %s",
                    output_dir, describe_holder(lock.taken_over))
    removed = remove_stale_temporaries(output_dir)
    if removed:
        logger.info("Removed %d temporary files left by interrupted saves (%s%s)", len(removed),
                    ", ".join(os.path.basename(p) for p in removed[:3]),
                    ", ..." if len(removed) > 3 else "")


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "Interrupted (KeyboardInterrupt)"
    trace = "".join(traceback.format_exception(exc))
    if exit_status(exc) is None:
        return f"Run failed:\n{trace}"
    return f"Error: {exc}" if is_own_error(exc) else f"Error: {exc}\n{trace}"


def _record_in_folder(output_dir: str, exc: BaseException) -> None:
    """An error before the run could open its folder (bad flag or config) still goes to the
    folder's log.txt, unless another run holds the folder."""
    if not output_dir or not _first_process() or exit_status(exc) is None:
        return
    try:
        with RunLock(output_dir):
            setup_logger(output_dir)
            log_to_file(_failure_text(exc))
            setup_logger(None)
    except (RunLocked, OSError):
        return


def _first_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=str, default="", help="path to dataset")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="",
                   help="checkpoint directory (from which the training resumes)")
    p.add_argument("--seed", type=int, default=-1,
                   help="seed for python, numpy and torch (>= 0; 0 included)")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to config file")
    p.add_argument("--dataset-config-file", type=str, default="",
                   help="path to config file for dataset setup")
    p.add_argument("--trainer", type=str, default="", help="name of trainer")
    p.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    p.add_argument("--head", type=str, default="",
                   help="a registered head on the prompt method (TRAINER.PARTS.HEAD), e.g. DePT")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="",
                   help="load model from this directory (eval-only: to evaluate; otherwise: to "
                        "initialise the training, MVLPT's source-to-target transfer)")
    p.add_argument("--load-epoch", type=int,
                   help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("--feature-cache", type=str, default="", metavar="DIR",
                   help="read and store the frozen image tower's features in DIR, shared by "
                        "runs (FEATURE_CACHE.DIR; used where it gives the same results)")
    p.add_argument("--dataset", type=str, default="",
                   help="comma-separated registered datasets, one task each (MVLPT)")
    p.add_argument("--shots", type=int, help="few shot (DATASET.NUM_SHOTS)")
    p.add_argument("--multi-task", action="store_true",
                   help="train on the tasks of --dataset jointly, evaluate each task")
    p.add_argument("--multi-task-label_pertask", action="store_true",
                   help="zero the logits of other tasks' classes in the training loss")
    p.add_argument("--multi-task-evalkey", type=str, default="average",
                   help="model selection value: 'average' over tasks or one task's name")
    p.add_argument("--dataset-coop", action="store_true",
                   help="the tasks are CoOp-data datasets (DATASET.COOP)")
    p.add_argument("--cut-contextlen", action="store_true",
                   help="TRAINER.CUT_CONTEXTLEN (the text tower always runs on cut sequences)")
    p.add_argument("--act-ckpt", type=int, default=None,
                   help="activation checkpointing segments of the text tower (1: off)")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of input errors too (also: ENGINE_DEBUG=1)")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                   help="modify config options using the command-line")
    return p


def cli(argv: list[str] | None = None) -> None:
    """The command line: errors in the input end the process with one message and the exit
    status of :func:`engine.errors.exit_status`; crashes keep their traceback."""
    setup_logger(None)
    args = build_parser().parse_args(argv)
    try:
        import_plugins()
        main(args)
    except Exception as exc:
        status = exit_status(exc)
        if status is None or args.debug or os.environ.get("ENGINE_DEBUG", "0") not in ("", "0"):
            raise
        if _first_process():  # under torchrun every process has the same input: say it once
            sys.stderr.write(f"train.py: error: {exc}\n")
        raise SystemExit(status) from None
    except KeyboardInterrupt:
        if _first_process():
            given = sys.argv[1:] if argv is None else argv
            script = sys.argv[0] if given == sys.argv[1:] else "train.py"
            sys.stderr.write(interrupted_message(script, given, args.output_dir, args.opts)
                             + "\n")
        raise SystemExit(EXIT_INTERRUPTED) from None


if __name__ == "__main__":
    cli(sys.argv[1:])
