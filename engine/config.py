"""Configuration: Dassl's default keys and values, trainer nodes, strict merging.

``get_cfg_default()`` returns a fresh :class:`CfgNode` holding Dassl's defaults plus every node
added by functions registered with :func:`register_config` (trainer and dataset files add
their own ``TRAINER.<NAME>`` node that way). Merging a YAML file or a ``KEY VALUE`` list that
names an unknown key raises ``KeyError`` naming the key and the closest valid keys; yacs'
type checking is kept, except for the few keys given more types with :func:`allow_types`
(official configs that write ``CTX_INIT: True`` where others write the words).
:func:`check_values` refuses values that cannot work (an epoch count of 0, an empty batch),
naming the key; the trainer calls it before anything is built.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import yaml
from yacs.config import CfgNode as _YacsNode

from engine.errors import ConfigError, ConfigKeyError

__all__ = ["CfgNode", "CN", "get_cfg_default", "register_config", "registered_config_functions",
           "all_keys", "check_keys", "check_values", "allow_types", "register_alias", "aliases",
           "register_unread"]

_EXTRA_TYPES: dict[str, tuple[type, ...]] = {}
_ALIASES: dict[str, str] = {}  # official dotted key -> the key of the part that reads it
_UNREAD: dict[str, str] = {}  # key nothing reads -> why it is kept


def register_alias(official: str, key: str) -> None:
    """Let the official dotted key ``official`` set ``key`` (the key of the part that reads
    it) in every merge: a config file or command line naming ``official`` sets ``key``."""
    if _ALIASES.get(official, key) != key:
        raise KeyError(f"config key {official} is already an alias of {_ALIASES[official]}")
    _ALIASES[official] = key


def aliases() -> dict[str, str]:
    """Official key -> the key it sets (see :func:`register_alias`)."""
    return dict(_ALIASES)


def register_unread(key: str, why: str = "") -> None:
    """``key`` stays in the defaults (official configs set it) but nothing reads it: a value
    other than its default is refused by :func:`check_values`."""
    _UNREAD[key] = why


def _drop_empty(root: dict, path: list[str]) -> None:
    """Remove the empty nodes along ``path`` (deepest first) that an alias emptied."""
    for depth in range(len(path), 0, -1):
        node = root
        for part in path[:depth - 1]:
            node = node[part]
        if node[path[depth - 1]]:
            return
        del node[path[depth - 1]]


def _rename_aliases(other: dict) -> None:
    """Move every aliased official key of the nested mapping ``other`` to its part's key."""
    for official, key in _ALIASES.items():
        *parents, leaf = official.split(".")
        node = other
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node or isinstance(node[leaf], dict):
            continue  # (a node of that name here, e.g. TRAINER.DISTILL's: not the official leaf)
        value = node.pop(leaf)
        _drop_empty(other, official.split(".")[:-1])
        *parents, leaf = key.split(".")
        target = other
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value


def allow_types(key: str, *types: type) -> None:
    """Let the dotted ``key`` take a value of any of ``types`` (its default's type among
    them): a merge sets such a value as it is; any other type is still refused."""
    _EXTRA_TYPES[key] = tuple(dict.fromkeys(_EXTRA_TYPES.get(key, ()) + types))


def _set_leaf(cfg: _YacsNode, key: str, value: Any) -> bool:
    """Set ``key`` to ``value`` when the key takes that type through :func:`allow_types`;
    ``False`` when yacs should merge it instead (and check its type)."""
    if key not in _EXTRA_TYPES:
        return False
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    if leaf not in node or type(value) not in _EXTRA_TYPES[key]:
        return False
    node[leaf] = value
    return True


class CfgNode(_YacsNode):
    """A yacs ``CfgNode`` whose merges reject unknown keys with a helpful message."""

    def merge_from_file(self, cfg_filename: str) -> None:
        with open(cfg_filename) as f:
            text = f.read()
        try:  # always YAML: yacs' load_cfg runs a .py file it is given
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(_yaml_problem(cfg_filename, exc)) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{cfg_filename} is not a YAML mapping of config keys (it holds "
                              f"a {type(loaded).__name__})")
        other = type(self)(loaded)
        _rename_aliases(other)
        check_keys(self, _flatten(other), source=cfg_filename)
        for key in list(_EXTRA_TYPES):
            *parents, leaf = key.split(".")
            node = other
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and leaf in node and _set_leaf(self, key, node[leaf]):
                del node[leaf]
        try:
            self.merge_from_other_cfg(other)
        except ValueError as exc:  # yacs' type check: the message names the key
            raise ConfigError(f"{cfg_filename}: {exc}") from exc

    def merge_from_list(self, cfg_list: Sequence) -> None:
        cfg_list = list(cfg_list)
        if len(cfg_list) % 2:
            raise ConfigError(f"Config overrides must be KEY VALUE pairs; got an odd number of "
                             f"items: {cfg_list}")
        cfg_list[0::2] = [_ALIASES.get(k, k) if isinstance(k, str) else k
                          for k in cfg_list[0::2]]
        check_keys(self, cfg_list[0::2], source="the command line")
        rest = []
        for key, value in zip(cfg_list[0::2], cfg_list[1::2], strict=True):
            if not _set_leaf(self, key, self._decode_cfg_value(value)):
                rest += [key, value]
        try:
            super().merge_from_list(rest)
        except ValueError as exc:  # yacs' type check: the message names the key
            raise ConfigError(f"{exc} (from the command line)") from exc


CN = CfgNode


def _yaml_problem(path: str, exc: yaml.YAMLError) -> str:
    """One line on why ``path`` is not a plain YAML config (a ``!!python/object`` tag, a
    syntax error), with the line it is on."""
    mark = getattr(exc, "problem_mark", None)
    where = f", line {mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    hint = (": configs hold plain values, and tags that build Python objects are refused"
            if "constructor" in problem else "")
    return f"{path}{where} is not a plain YAML config ({problem[:200]}){hint}"


def _flatten(node: _YacsNode, prefix: str = "") -> Iterator[str]:
    """Full dotted names of the leaves of ``node`` (and of empty sub-nodes)."""
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _flatten(value, name + ".")
        else:
            yield name


def all_keys(cfg: _YacsNode) -> list[str]:
    """Every valid dotted key of ``cfg``."""
    return list(_flatten(cfg))


def _allows_new(cfg: _YacsNode, parts: list[str]) -> bool:
    node = cfg
    for part in parts:
        if isinstance(node, _YacsNode) and node.is_new_allowed():
            return True
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return False


def _exists(cfg: _YacsNode, key: str) -> bool:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def check_keys(cfg: _YacsNode, keys: Sequence[str] | Iterator[str], source: str) -> None:
    """Raise ``KeyError`` for the first key of ``keys`` that ``cfg`` does not define."""
    valid = None
    for key in keys:
        if not isinstance(key, str):
            raise ConfigKeyError(f"Config key {key!r} from {source} is not a string")
        if _exists(cfg, key) or _allows_new(cfg, key.split(".")[:-1]):
            continue
        valid = valid if valid is not None else all_keys(cfg)
        close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
        leaf = key.rsplit(".", 1)[-1]
        close += [k for k in valid if k.rsplit(".", 1)[-1] == leaf and k not in close][:3]
        hint = f" Closest valid keys: {', '.join(close)}." if close else ""
        raise ConfigKeyError(f"Unknown config key '{key}' (from {source}).{hint} If the key "
                             f"belongs to a trainer or dataset, make sure its module is imported "
                             f"so that its @register_config function runs.")


# key -> (smallest valid value, what the key means); checked by check_values
_AT_LEAST = {
    "OPTIM.MAX_EPOCH": (1, "the number of training epochs"),
    "DATALOADER.TRAIN_X.BATCH_SIZE": (1, "the training batch size"),
    "DATALOADER.TRAIN_U.BATCH_SIZE": (1, "the batch size of the unlabelled loader"),
    "DATALOADER.TEST.BATCH_SIZE": (1, "the evaluation batch size"),
    "DATALOADER.NUM_WORKERS": (0, "the number of loader processes"),
    "TRAIN.PRINT_FREQ": (1, "a training line every N batches"),
    "OPTIM.LR": (0, "the learning rate"),
}
_ONE_OF = {
    "TEST.FINAL_MODEL": ("last_step", "best_val"),
    "TEST.SPLIT": ("test", "val"),
}


def check_values(cfg: _YacsNode) -> None:
    """Raise :class:`~engine.errors.ConfigError`, naming the key, for a value that cannot
    work: see ``_AT_LEAST`` and ``_ONE_OF``; an empty ``DATASET.NAME`` says which flag sets
    it."""
    for key, (least, meaning) in _AT_LEAST.items():
        value = _get(cfg, key)
        if value is not None and value < least:
            raise ConfigError(f"{key} is {value}; it is {meaning} and must be >= {least}")
    for key, valid in _ONE_OF.items():
        value = _get(cfg, key)
        if value is not None and value not in valid:
            raise ConfigError(f"{key} is {value!r}; use one of {', '.join(valid)}")
    defaults = None
    for key, why in _UNREAD.items():
        value = _get(cfg, key)
        if value is None:
            continue
        defaults = defaults if defaults is not None else get_cfg_default()
        default = _get(defaults, key)
        if _plain(value) != _plain(default):
            raise ConfigError(f"{key} is {value!r}, but nothing reads it{why and f' ({why})'}: "
                              f"remove it (or leave it at {default!r})")
    if _get(cfg, "DATASET.NAME") == "" and not _get(cfg, "DATASET.DATASET"):
        raise ConfigError("No dataset: pass --dataset-config-file configs/datasets/<name>.yaml "
                          "(or set DATASET.NAME; several tasks: --dataset A,B,...)")


def _plain(value: object) -> object:
    return list(value) if isinstance(value, (tuple, list)) else value


def _get(cfg: _YacsNode, key: str) -> object:
    node: object = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


_CONFIG_FUNCTIONS: list[Callable[[CfgNode], None]] = []


def register_config(fn: Callable[[CfgNode], None]) -> Callable[[CfgNode], None]:
    """Decorator: ``fn(cfg)`` adds nodes to the defaults (e.g. ``cfg.TRAINER.COOP = CN()``)."""
    if fn not in _CONFIG_FUNCTIONS:
        _CONFIG_FUNCTIONS.append(fn)
    return fn


def registered_config_functions() -> list[Callable[[CfgNode], None]]:
    return list(_CONFIG_FUNCTIONS)


def get_cfg_default() -> CfgNode:
    """Dassl's defaults extended by every registered config function (a fresh copy)."""
    cfg = _defaults()
    for fn in _CONFIG_FUNCTIONS:
        fn(cfg)
    # nodes added as plain yacs CfgNodes become ours, so their merges check keys too
    return CfgNode(cfg)


def _defaults() -> CfgNode:
    _C = CN()
    _C.VERSION = 1  # config format version (Dassl's)
    _C.OUTPUT_DIR = "./output"  # where log.txt, tensorboard files and checkpoints go
    _C.RESUME = ""  # directory of a previous run to resume from (default: OUTPUT_DIR)
    _C.SEED = -1  # >= 0: seed python, numpy and torch; negative: do not seed
    _C.USE_CUDA = True  # use the GPU when one is available
    _C.VERBOSE = True  # log dataset statistics and other details
    _add_input(_C)
    _add_dataset(_C)
    _add_dataloader(_C)
    _add_model(_C)
    _add_optim(_C)
    _add_train_test(_C)
    _C.TRAINER = CN()
    _C.TRAINER.NAME = ""  # registered trainer class name (TRAINER_REGISTRY)
    return _C


# Dassl's keys that no part of this project reads: kept so that official configs load, refused
# at any value but their default (check_values)
for _key in ("INPUT.CUTOUT_N", "INPUT.CUTOUT_LEN", "INPUT.GN_MEAN", "INPUT.GN_STD",
             "INPUT.RANDAUGMENT_N", "INPUT.RANDAUGMENT_M", "DATASET.NUM_LABELED",
             "DATASET.VAL_PERCENT", "DATASET.STL10_FOLD", "DATASET.CIFAR_C_TYPE",
             "DATASET.CIFAR_C_LEVEL", "DATASET.ALL_AS_UNLABELED", "DATALOADER.TRAIN_X.N_DOMAIN",
             "DATALOADER.TRAIN_X.N_INS", "DATALOADER.TRAIN_U.N_DOMAIN",
             "DATALOADER.TRAIN_U.N_INS", "MODEL.BACKBONE.PRETRAINED",
             "MODEL.HEAD.HIDDEN_LAYERS", "MODEL.HEAD.ACTIVATION", "MODEL.HEAD.BN",
             "MODEL.HEAD.DROPOUT", "TRAIN.COUNT_ITER"):
    register_unread(_key)
register_unread("MODEL.HEAD.NAME", "a prompt method's head is TRAINER.PARTS.HEAD (--head)")


def _add_input(_C: CfgNode) -> None:
    _C.INPUT = CN()
    _C.INPUT.SIZE = (224, 224)  # (height, width) of the network input
    _C.INPUT.INTERPOLATION = "bilinear"  # resize interpolation: bilinear, bicubic or nearest
    # ours: how test images (and train images without a crop) reach INPUT.SIZE: "shortest"
    # (Dassl's: the short side, then a center crop) or "squash" (both sides: SigLIP's)
    _C.INPUT.RESIZE_MODE = "shortest"  # "shortest" or "squash" (above)
    _C.INPUT.TRANSFORMS = ()  # training augmentations, e.g. random_resized_crop random_flip
    _C.INPUT.NO_TRANSFORM = False  # True: loaders apply no transform at all
    _C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]  # normalisation mean (ImageNet's by default)
    _C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]  # normalisation std (ImageNet's by default)
    _C.INPUT.CROP_PADDING = 4  # padding of random_crop
    _C.INPUT.RRCROP_SCALE = (0.08, 1.0)  # area scale range of random_resized_crop
    _C.INPUT.CUTOUT_N = 1  # cutout: number of holes
    _C.INPUT.CUTOUT_LEN = 16  # cutout: hole side length
    _C.INPUT.GN_MEAN = 0.0  # gaussian noise mean
    _C.INPUT.GN_STD = 0.15  # gaussian noise std
    _C.INPUT.RANDAUGMENT_N = 2  # randaugment: number of operations
    _C.INPUT.RANDAUGMENT_M = 10  # randaugment: magnitude
    _C.INPUT.COLORJITTER_B = 0.4  # color jitter brightness
    _C.INPUT.COLORJITTER_C = 0.4  # color jitter contrast
    _C.INPUT.COLORJITTER_S = 0.4  # color jitter saturation
    _C.INPUT.COLORJITTER_H = 0.1  # color jitter hue
    _C.INPUT.RGS_P = 0.2  # probability of random gray scale
    _C.INPUT.GB_P = 0.5  # probability of gaussian blur
    _C.INPUT.GB_K = 21  # gaussian blur kernel size (odd)


def _add_dataset(_C: CfgNode) -> None:
    _C.DATASET = CN()
    _C.DATASET.ROOT = ""  # folder holding the datasets
    _C.DATASET.NAME = ""  # registered dataset class name (DATASET_REGISTRY)
    _C.DATASET.SOURCE_DOMAINS = ()  # source domain names (multi-domain datasets)
    _C.DATASET.TARGET_DOMAINS = ()  # target domain names (multi-domain datasets)
    _C.DATASET.NUM_LABELED = -1  # labelled instances in total (semi-supervised setting)
    _C.DATASET.NUM_SHOTS = -1  # images per class for few-shot training; -1: all
    _C.DATASET.VAL_PERCENT = 0.1  # fraction kept for validation (semi-supervised datasets)
    _C.DATASET.STL10_FOLD = -1  # STL-10 fold index; negative: none
    _C.DATASET.CIFAR_C_TYPE = ""  # CIFAR-C corruption type
    _C.DATASET.CIFAR_C_LEVEL = 1  # CIFAR-C corruption level
    _C.DATASET.ALL_AS_UNLABELED = False  # use all data as unlabelled data
    _C.DATASET.SUBSAMPLE_CLASSES = "all"  # base-to-new protocol: all, base or new


def _add_dataloader(_C: CfgNode) -> None:
    _C.DATALOADER = CN()
    _C.DATALOADER.NUM_WORKERS = 4  # loader worker processes
    _C.DATALOADER.K_TRANSFORMS = 1  # augmentations per training image (above 1: a list)
    _C.DATALOADER.RETURN_IMG0 = False  # also return the un-augmented image as img0
    _C.DATALOADER.TRAIN_X = CN()
    _C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"  # RandomSampler or SequentialSampler
    _C.DATALOADER.TRAIN_X.BATCH_SIZE = 32  # training batch size
    _C.DATALOADER.TRAIN_X.N_DOMAIN = 0  # RandomDomainSampler: domains per batch (unused here)
    _C.DATALOADER.TRAIN_X.N_INS = 16  # RandomClassSampler: instances per class (unused here)
    _C.DATALOADER.TRAIN_U = CN()
    _C.DATALOADER.TRAIN_U.SAME_AS_X = True  # train_u loader uses the TRAIN_X settings
    _C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"  # sampler of the unlabelled loader
    _C.DATALOADER.TRAIN_U.BATCH_SIZE = 32  # batch size of the unlabelled loader
    _C.DATALOADER.TRAIN_U.N_DOMAIN = 0  # RandomDomainSampler setting of train_u
    _C.DATALOADER.TRAIN_U.N_INS = 16  # RandomClassSampler setting of train_u
    _C.DATALOADER.TEST = CN()
    _C.DATALOADER.TEST.SAMPLER = "SequentialSampler"  # sampler of the val/test loaders
    _C.DATALOADER.TEST.BATCH_SIZE = 32  # val/test batch size


def _add_model(_C: CfgNode) -> None:
    _C.MODEL = CN()
    _C.MODEL.INIT_WEIGHTS = ""  # checkpoint to initialise the model from
    _C.MODEL.BACKBONE = CN()
    _C.MODEL.BACKBONE.NAME = ""  # backbone name, e.g. ViT-B/16 for CLIP trainers
    _C.MODEL.BACKBONE.ARCH = ""  # architecture of a weight file in NAME, e.g. open_clip:ViT-B-16
    _C.MODEL.BACKBONE.PRETRAINED = True  # load pretrained backbone weights
    _C.MODEL.HEAD = CN()
    _C.MODEL.HEAD.NAME = ""  # Dassl's head (unread: a prompt method's head is TRAINER.PARTS.HEAD)
    _C.MODEL.HEAD.HIDDEN_LAYERS = ()  # hidden layer sizes of the head
    _C.MODEL.HEAD.ACTIVATION = "relu"  # head activation
    _C.MODEL.HEAD.BN = True  # batch norm in the head
    _C.MODEL.HEAD.DROPOUT = 0.0  # dropout in the head


def _add_optim(_C: CfgNode) -> None:
    _C.OPTIM = CN()
    _C.OPTIM.NAME = "adam"  # sgd, adam, amsgrad, adamw, rmsprop
    _C.OPTIM.LR = 0.0003  # base learning rate
    _C.OPTIM.WEIGHT_DECAY = 5e-4  # weight decay
    _C.OPTIM.MOMENTUM = 0.9  # momentum of sgd and rmsprop
    _C.OPTIM.SGD_DAMPNING = 0  # sgd dampening (Dassl's spelling)
    _C.OPTIM.SGD_NESTEROV = False  # sgd nesterov momentum
    _C.OPTIM.RMSPROP_ALPHA = 0.99  # rmsprop smoothing constant
    _C.OPTIM.ADAM_BETA1 = 0.9  # beta1 of adam-like optimizers
    _C.OPTIM.ADAM_BETA2 = 0.999  # beta2 of adam-like optimizers
    _C.OPTIM.STAGED_LR = False  # different lr for new layers (not supported here)
    _C.OPTIM.NEW_LAYERS = ()  # names of new layers for STAGED_LR (only with it, as in Dassl)
    _C.OPTIM.BASE_LR_MULT = 0.1  # lr multiplier of base layers (only with STAGED_LR, as in Dassl)
    _C.OPTIM.LR_SCHEDULER = "single_step"  # single_step, multi_step or cosine
    _C.OPTIM.STEPSIZE = (-1,)  # step size(s) in epochs; -1 or 0: MAX_EPOCH
    _C.OPTIM.GAMMA = 0.1  # decay factor of the step schedulers
    _C.OPTIM.MAX_EPOCH = 10  # number of training epochs
    _C.OPTIM.WARMUP_EPOCH = -1  # > 0 enables warmup for that many epochs
    _C.OPTIM.WARMUP_TYPE = "linear"  # linear or constant
    _C.OPTIM.WARMUP_CONS_LR = 1e-5  # lr during constant warmup
    _C.OPTIM.WARMUP_MIN_LR = 1e-5  # lr of the first linear-warmup epoch
    _C.OPTIM.WARMUP_RECOUNT = True  # True: the main schedule starts at 0 after warmup


def _add_train_test(_C: CfgNode) -> None:
    _C.TRAIN = CN()
    _C.TRAIN.CHECKPOINT_FREQ = 0  # keep every N-th epoch file (<= 0: the last); others: resume file
    _C.TRAIN.PRINT_FREQ = 10  # log a training line every N batches
    _C.TRAIN.COUNT_ITER = "train_x"  # which loader defines an epoch (TrainerXU only)
    _C.TEST = CN()
    _C.TEST.EVALUATOR = "Classification"  # evaluator name
    _C.TEST.PER_CLASS_RESULT = False  # also log per-class accuracy
    _C.TEST.COMPUTE_CMAT = False  # save the confusion matrix to OUTPUT_DIR/cmat.pt
    _C.TEST.NO_TEST = False  # skip the final evaluation
    _C.TEST.SPLIT = "test"  # split of the final evaluation: test or val
    _C.TEST.FINAL_MODEL = "last_step"  # model evaluated after training: last_step or best_val
