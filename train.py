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
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import torch

from engine import distributed
from engine.config import CfgNode, get_cfg_default
from engine.trainer import build_trainer
from engine.utils import collect_env_info, set_random_seed, setup_logger

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
        importlib.import_module(module)


def reset_cfg(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Apply the command-line flags (a seed of 0 counts, unlike the official script)."""
    flags = [("root", "DATASET.ROOT"), ("output_dir", "OUTPUT_DIR"), ("resume", "RESUME"),
             ("source_domains", "DATASET.SOURCE_DOMAINS"),
             ("target_domains", "DATASET.TARGET_DOMAINS"), ("transforms", "INPUT.TRANSFORMS"),
             ("trainer", "TRAINER.NAME"), ("backbone", "MODEL.BACKBONE.NAME"),
             ("head", "MODEL.HEAD.NAME")]
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


def setup_cfg(args: argparse.Namespace) -> CfgNode:
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
    cfg = setup_cfg(args)
    # under torchrun: join the process group; only the first process logs to log.txt
    distributed.init_distributed(torch.cuda.is_available() and cfg.USE_CUDA)
    if distributed.is_main():
        setup_logger(cfg.OUTPUT_DIR)
    else:
        setup_logger(None, level=logging.WARNING)
    if cfg.SEED >= 0:
        logger.info("Setting fixed seed: %d", cfg.SEED)
        set_random_seed(cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    logger.info("Collecting env info ...")
    logger.info("** System info **\n%s\n", collect_env_info())
    try:
        trainer = build_trainer(cfg)
        if args.eval_only:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
            trainer.test()
            return
        if args.model_dir:  # start from another run's learned tensors (MVLPT's transfer)
            trainer.initialize_from(args.model_dir, epoch=args.load_epoch)
        if not args.no_train:
            trainer.train()
    finally:
        distributed.shutdown()


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
    p.add_argument("--head", type=str, default="", help="name of head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="",
                   help="load model from this directory (eval-only: to evaluate; otherwise: to "
                        "initialise the training, MVLPT's source-to-target transfer)")
    p.add_argument("--load-epoch", type=int,
                   help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
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
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                   help="modify config options using the command-line")
    return p


def cli(argv: list[str] | None = None) -> None:
    setup_logger(None)
    import_plugins()
    main(build_parser().parse_args(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
