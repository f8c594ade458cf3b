"""Checkpoints in Dassl's layout, written atomically, read without running code.

Layout: ``<directory>/<model name>/model.pth.tar-<epoch>`` (and ``model-best.pth.tar``),
each a dict ``{state_dict, epoch, optimizer, scheduler, val_result}`` (ours add
``rng_state``, ``best_result``, ``extras`` and ``meta``: see :mod:`engine.checkpoint_checks`),
plus a ``checkpoint`` text file naming the latest checkpoint file. Every file is written to a
temporary file in the same folder, flushed to disk and renamed over the target, so a crash
leaves either the old or the new file; a run removes the temporary files that killed runs left
(:func:`remove_stale_temporaries`). Files get the permissions of the user's umask.

Between the epochs that ``TRAIN.CHECKPOINT_FREQ`` keeps, the trainer saves the epoch's state
to ``model-resume.pth.tar`` (:data:`RESUME_FILE`, replaced every epoch, named by the pointer
and removed once a later epoch file exists), so an interrupted run resumes from its last
finished epoch whatever the config says.

Reading checks the file before trusting it: the zip archive's checksums (a flipped bit is an
error, not a silently different prompt), only uncompressed records (as torch writes them), and
tensors that do not expand beyond a few times the file's size (:data:`MAX_EXPANSION`).

Our files hold only tensors and plain containers and load with ``weights_only=True``.
Official Dassl files also pickle a scheduler object (``CosineAnnealingLR`` holding the SGD
optimizer); those are read by :func:`load_foreign_checkpoint`, a restricted unpickler that
rebuilds tensors and plain containers, stands an inert :class:`InertObject` in for classes of
``torch.optim`` / ``dassl`` / ``numpy``, and refuses every other global. It never imports a
module nor calls anything that the file names, and sets state (pickle's BUILD) only on the
inert objects and ordered dicts it made itself.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import random
import re
import secrets
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import torch

from engine.errors import CheckpointError

__all__ = ["save_checkpoint", "save_resume_checkpoint", "load_checkpoint",
           "load_foreign_checkpoint", "resume_from_checkpoint", "atomic_write", "check_plain",
           "InertObject", "get_rng_state", "set_rng_state", "latest_checkpoint_path",
           "remove_stale_temporaries", "check_archive", "describe_value", "brief",
           "POINTER_FILE",
           "RESUME_FILE", "BEST_FILE"]

logger = logging.getLogger(__name__)

POINTER_FILE = "checkpoint"
BEST_FILE = "model-best.pth.tar"
RESUME_FILE = "model-resume.pth.tar"
MAX_EXPANSION = 4  # tensors may hold this many times the file's bytes (+ 1 MiB), no more
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8,}\.tmp$")  # what atomic_write leaves behind


# --------------------------------------------------------------------------- writing


def atomic_write(fpath: str, write: Callable[[BinaryIO], None], what: str = "a file") -> None:
    """Run ``write(file)`` on a temporary file next to ``fpath``, fsync it, rename it over
    ``fpath``. On any error the temporary file is removed and ``fpath`` is untouched; an
    ``OSError`` (disk full, read-only folder) says which file and ``what`` was being saved."""
    directory = os.path.dirname(os.path.abspath(fpath))
    try:
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{os.path.basename(fpath)}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    except OSError as exc:
        raise _save_failed(exc, fpath, what) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, fpath)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError):
            raise _save_failed(exc, fpath, what) from exc
        raise
    _fsync_dir(directory)


def _save_failed(exc: OSError, fpath: str, what: str) -> OSError:
    reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    kept = " (the previous file there is intact)" if os.path.exists(fpath) else ""
    return type(exc)(exc.errno, f"could not save {what} to {fpath}: {reason}{kept}")


def remove_stale_temporaries(directory: str) -> list[str]:
    """Remove what interrupted :func:`atomic_write` calls left in ``directory`` and its
    sub-folders (one level: the model folders). Call it only while holding the folder's run
    lock (:mod:`engine.lock`), when no other process can be writing there. Returns the
    removed paths."""
    removed = []
    folders = [directory]
    if os.path.isdir(directory):
        folders += [e.path for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            if _TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
                os.remove(entry.path)
                removed.append(entry.path)
    return removed


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_payload(state: dict, f: BinaryIO) -> None:
    """``torch.save`` into memory, then one write: torch's zip writer turns the ``OSError`` of
    a full disk into a bare ``RuntimeError`` ("unexpected pos"); the file's own write keeps
    it. (Our checkpoints hold only what trains: a few MB.)"""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    f.write(buffer.getbuffer())


_PLAIN_TYPES = (int, float, bool, str, bytes, type(None), torch.dtype, torch.device)


def check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Raise ``TypeError`` if ``obj`` holds anything but tensors and plain containers."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, _PLAIN_TYPES):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            check_plain(key, where)
            check_plain(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, (list, tuple, set)):
        for i, value in enumerate(obj):
            check_plain(value, f"{where}[{i}]")
        return
    raise TypeError(f"{where} holds a {type(obj).__module__}.{type(obj).__qualname__}; "
                    f"checkpoints may only hold tensors and plain containers (convert it to "
                    f"a state dict of plain values)")


def save_checkpoint(state: dict, save_dir: str, is_best: bool = False,
                    remove_module_from_keys: bool = False, model_name: str = "") -> str:
    """Save ``state`` as ``save_dir/model.pth.tar-<state['epoch']>`` (or ``model_name``).

    The pointer file ``save_dir/checkpoint`` names the latest epoch file; it is not moved to
    a best-model file (Dassl does, which would make a resume start from the best epoch).
    ``is_best`` also writes ``model-best.pth.tar``. Returns the path written.
    """
    if remove_module_from_keys:
        state = dict(state)
        state["state_dict"] = OrderedDict(
            (k[7:] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items())
    check_plain(state)
    fpath = os.path.join(save_dir, model_name or f"model.pth.tar-{state['epoch']}")
    atomic_write(fpath, lambda f: _write_payload(state, f),
                 f"the checkpoint of epoch {state['epoch']}")
    logger.info("Checkpoint saved to %s", fpath)
    if not model_name:
        _point_to(save_dir, os.path.basename(fpath))
        resume_file = os.path.join(save_dir, RESUME_FILE)
        if os.path.exists(resume_file):  # older than the file the pointer now names
            os.remove(resume_file)
    if is_best:
        best = os.path.join(save_dir, BEST_FILE)
        atomic_write(best, lambda f: _write_payload(state, f), "the best model's checkpoint")
        logger.info('Best checkpoint saved to "%s"', best)
    return fpath


def save_resume_checkpoint(state: dict, save_dir: str) -> str:
    """Save ``state`` as ``save_dir/model-resume.pth.tar``, replacing the previous one, and
    point the pointer at it: what a resume needs between the epoch files that are kept."""
    check_plain(state)
    fpath = os.path.join(save_dir, RESUME_FILE)
    atomic_write(fpath, lambda f: _write_payload(state, f),
                 f"the resume checkpoint of epoch {state.get('epoch')}")
    _point_to(save_dir, RESUME_FILE)
    logger.info("Resumable checkpoint of epoch %s saved to %s", state.get("epoch"), fpath)
    return fpath


def _point_to(save_dir: str, name: str) -> None:
    atomic_write(os.path.join(save_dir, POINTER_FILE), lambda f: f.write(f"{name}\n".encode()),
                 f"the pointer to {name}")


# --------------------------------------------------------------------------- rendering


_SCALARS = (bool, int, float, str, bytes, type(None))


def _scalar(value: Any, limit: int) -> str:
    if isinstance(value, (str, bytes)):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    if type(value) is int and value.bit_length() > 64:  # a huge int's repr is slow, or refused
        return f"<an integer of {value.bit_length()} bits>"
    return repr(value)


def describe_value(value: Any, limit: int = 60) -> str:
    """A few words on a value read from an untrusted file: its type and a bounded glimpse
    (the length of a container, the shape of a tensor). Never walks a container nor
    renders it whole: a nested-reference bomb renders as fast as a number."""
    kind = type(value).__name__
    if isinstance(value, _SCALARS):
        glimpse = _scalar(value, limit)
    elif isinstance(value, torch.Tensor):
        glimpse = f"shape {list(value.shape)}, {value.dtype}"
    elif isinstance(value, (dict, list, tuple, set)):
        glimpse = f"{len(value)} items"
    else:
        return f"a {kind}"
    return f"a {kind} ({glimpse})"


def brief(value: Any, limit: int = 60) -> str:
    """``repr`` of a scalar or of a short list of scalars (a config value), bounded;
    :func:`describe_value` of anything else."""
    if isinstance(value, _SCALARS):
        return _scalar(value, limit)
    if type(value) in (list, tuple) and len(value) <= 16 and all(
            isinstance(v, _SCALARS) for v in value):
        text = ", ".join(_scalar(v, limit) for v in value)
        return f"[{text}]" if type(value) is list else f"({text})"
    return describe_value(value, limit)


# --------------------------------------------------------------------------- reading


def load_checkpoint(fpath: str) -> Any:
    """Load a checkpoint onto the CPU after checking the file (see the module doc):
    ``weights_only=True`` first; a file that needs more (an official Dassl checkpoint) goes
    through :func:`load_foreign_checkpoint`. A damaged or unreadable file raises
    :class:`~engine.errors.CheckpointError` naming it and saying what is wrong."""
    if not fpath:
        raise ValueError("Checkpoint path is empty")
    if not os.path.isfile(fpath):
        raise FileNotFoundError(f'No checkpoint file at "{fpath}"')
    check_archive(fpath)
    try:
        obj = torch.load(fpath, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        logger.info("%s is not a weights-only file (%s); reading it with the restricted "
                    "unpickler", fpath, str(exc).splitlines()[0][:120])
        return load_foreign_checkpoint(fpath)
    except _READ_ERRORS as exc:
        raise _unreadable(fpath, exc) from exc
    _check_expansion(obj, fpath)
    return obj


# what a malformed record makes torch or the restricted unpickler raise
_READ_ERRORS = (RuntimeError, EOFError, ValueError, TypeError, IndexError, KeyError,
                AttributeError)


def _unreadable(fpath: str, exc: BaseException) -> CheckpointError:
    first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return CheckpointError(f"{fpath} cannot be read as a checkpoint: {first_line[:300]}")


def check_archive(fpath: str) -> None:
    """Refuse a file that cannot be a sound torch checkpoint: empty, truncated, text, a zip
    archive with compressed records (torch never writes them; they can expand to gigabytes)
    or with a record whose checksum does not match (a bit flipped since it was written)."""
    size = os.path.getsize(fpath)
    if size == 0:
        raise CheckpointError(f"{fpath} is empty (0 bytes): its save was interrupted or the copy "
                              "failed; copy it again or train again")
    if not zipfile.is_zipfile(fpath):
        with open(fpath, "rb") as f:
            head = f.read(256)
        if head.startswith(b"PK\x03\x04"):
            raise CheckpointError(f"{fpath} is truncated ({size:,} bytes, the end of its zip "
                                  "archive is missing): its save or copy was cut short")
        if head[:1] == b"\x80":
            return  # a pickle: the legacy format of torch < 1.6, which torch.load reads
        kind = "a text file" if _is_text(head) else "neither a zip archive nor a pickle"
        raise CheckpointError(f"{fpath} is not a torch checkpoint: it is {kind} (it starts "
                              f"with {head[:40]!r})")
    try:
        with zipfile.ZipFile(fpath) as archive:
            packed = [i.filename for i in archive.infolist()
                      if i.compress_type != zipfile.ZIP_STORED]
            if packed:
                raise CheckpointError(f"{fpath} holds compressed records ({packed[0]}), which "
                                      "torch never writes; refusing to expand them")
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        # ValueError: a record name that is not UTF-8 any more (a flipped bit in a header)
        raise CheckpointError(f"{fpath} is a damaged zip archive: "
                              f"{(str(exc).splitlines() or [type(exc).__name__])[0][:200]}; "
                              "copy it again or train again") from None
    if damaged is not None:
        raise CheckpointError(
            f"{fpath} is damaged: the checksum of its record {damaged} does not match the "
            "content (the file changed after it was written: a disk or copy error); copy it "
            "again or train again")


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c.isspace() for c in text)


def _shadowing(kind: type, names: Any) -> list[str]:
    """The names among ``names`` that would hide an attribute of ``kind`` (``items``...)."""
    return [n for n in names if not isinstance(n, str) or n.startswith("__") or hasattr(kind, n)]


def _check_expansion(obj: Any, fpath: str) -> None:
    """Refuse tensors that together hold more than :data:`MAX_EXPANSION` times the file's
    bytes (views with zero or overlapping strides, or one record viewed many times, which
    turn a small file into gigabytes once copied), and ordered dicts given attributes that
    hide their methods (a BUILD that sets ``items`` would hide entries from every check).
    Each object is visited once: the walk is as long as the file."""
    limit = MAX_EXPANSION * os.path.getsize(fpath) + (1 << 20)
    total, seen, stack = 0, set(), [obj]
    while stack:
        item = stack.pop()
        if not isinstance(item, (torch.Tensor, dict, list, tuple, set, InertObject)):
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
            if total > limit:
                raise CheckpointError(
                    f"{fpath}: its tensors would take more than {limit:,} bytes, over "
                    f"{MAX_EXPANSION} times the file's size (views with repeated or "
                    "overlapping strides); refusing to load it")
        elif isinstance(item, dict):
            hidden = _shadowing(type(item), getattr(item, "__dict__", {}))
            if hidden:
                raise CheckpointError(
                    f"{fpath}: a {type(item).__name__} in it carries the attribute "
                    f"{describe_value(hidden[0])}, which hides one of its methods (a crafted "
                    "file); refusing to load it")
            stack.extend(dict.keys(item))
            stack.extend(dict.values(item))
        elif isinstance(item, InertObject):
            stack.extend((item.args, item.state))
        else:
            stack.extend(item)


class InertObject:
    """Stands in for an instance of a class that the restricted unpickler does not build.

    ``module`` and ``name`` say which class the file named; ``args`` and ``state`` hold
    what the file would have passed to it. Nothing of that class is imported or called.
    """

    module = ""
    name = ""
    args: tuple = ()
    state: Any = None

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.module}.{self.name}>"


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_DTYPE_NAMES = {"float32", "float", "float64", "double", "float16", "half", "bfloat16",
                "int64", "long", "int32", "int", "int16", "int8", "uint8", "bool"}
_INERT_MODULE_PREFIXES = ("torch.optim", "dassl", "numpy", "engine", "trainers")


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple,
                    *unused: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("tensor record without storage")
    if not size:
        return storage[offset].clone() if storage.numel() else storage.new_zeros(())
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: Any, *unused: Any) -> Any:
    return data


def _plain_dict(*unused: Any) -> dict:
    return {}


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    if isinstance(cls, type) and issubclass(cls, InertObject):
        return cls()
    raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): _plain_dict,
    ("__builtin__", "dict"): dict, ("builtins", "dict"): dict,
    ("__builtin__", "set"): set, ("builtins", "set"): set,
    ("__builtin__", "list"): list, ("builtins", "list"): list,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("torch", "Size"): torch.Size,
}


class _RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler (its opcodes can be overridden) with the globals of
    :data:`_SAFE_GLOBALS` only and a guarded BUILD."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def _load_build(self) -> None:
        """BUILD sets the state of the object below it: allowed only on the inert objects
        and the ordered dicts (``_metadata``) that this unpickler made, never on a function,
        class or tensor (that would change the loader itself for the rest of the process),
        and never with a name that hides a method of the dict (``items``, ``keys``...)."""
        state, target = self.stack[-1], self.stack[-2]
        plain_attributes = (type(target) is OrderedDict and type(state) is dict
                            and not _shadowing(OrderedDict, dict.keys(state)))
        if not (isinstance(target, InertObject) or plain_attributes):
            raise pickle.UnpicklingError(
                f"Refusing to set the state of a {type(target).__name__} (pickle BUILD): a "
                "checkpoint sets state only on the records it creates")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = _load_build

    def __init__(self, data: bytes, read_record: Callable[[str], bytes]) -> None:
        super().__init__(io.BytesIO(data))
        self._read_record = read_record
        self._storages: dict[str, torch.Tensor] = {}
        self._inert: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _DTYPE_NAMES:
            return getattr(torch, name)
        if module.startswith(_INERT_MODULE_PREFIXES):
            key = (module, name)
            if key not in self._inert:
                self._inert[key] = type(name, (InertObject,), {"module": module, "name": name})
            return self._inert[key]
        raise pickle.UnpicklingError(
            f"Refusing to load global '{module}.{name}': the checkpoint asks for an object that "
            f"is neither a tensor, a plain container nor an optimizer/scheduler record. It may "
            f"try to run code; only load it if you trust its source (torch.load with "
            f"weights_only=False).")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {describe_value(pid)}")
        storage_type, key = pid[1], str(pid[2])
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else torch.uint8
        if key not in self._storages:
            raw = bytearray(self._read_record(key))
            self._storages[key] = (torch.frombuffer(raw, dtype=dtype) if raw
                                   else torch.empty(0, dtype=dtype))
        return self._storages[key]


def load_foreign_checkpoint(fpath: str) -> Any:
    """Read a torch zip checkpoint with the restricted unpickler (see the module doc)."""
    if not zipfile.is_zipfile(fpath):
        raise pickle.UnpicklingError(
            f"{fpath} is neither a weights-only checkpoint nor a torch zip archive (legacy "
            f"torch<1.6 format is not supported: re-save it with a recent torch)")
    with zipfile.ZipFile(fpath) as archive:
        if any(i.compress_type != zipfile.ZIP_STORED for i in archive.infolist()):
            raise CheckpointError(f"{fpath} holds compressed records, which torch never "
                                  "writes; refusing to expand them")
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise pickle.UnpicklingError(f"{fpath}: expected one data.pkl, found {pkl}")
        prefix = pkl[0][: -len("data.pkl")]
        order = prefix + "byteorder"
        if order in archive.namelist() and archive.read(order).strip() != b"little":
            raise pickle.UnpicklingError(f"{fpath}: big-endian checkpoints are not supported")
        unpickler = _RestrictedUnpickler(archive.read(pkl[0]),
                                         lambda key: archive.read(f"{prefix}data/{key}"))
        try:
            obj = unpickler.load()
        except pickle.UnpicklingError as exc:
            raise pickle.UnpicklingError(f"{fpath}: {exc}") from None
        except _READ_ERRORS as exc:
            raise _unreadable(fpath, exc) from exc
    _check_expansion(obj, fpath)
    return obj


def latest_checkpoint_path(model_dir: str) -> str | None:
    """The file named by ``model_dir/checkpoint``, or None when there is no pointer."""
    pointer = os.path.join(model_dir, POINTER_FILE)
    if not os.path.isfile(pointer):
        return None
    with open(pointer) as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        raise CheckpointError(f"Checkpoint pointer {pointer} is empty; delete it to start "
                              "again")
    name = lines[0]
    if os.path.basename(name) != name or name in (".", ".."):
        raise CheckpointError(f"Checkpoint pointer {pointer} names {name!r}, which is not a file "
                              "of its own folder; it must hold a bare file name such as "
                              "model.pth.tar-5")
    return os.path.join(model_dir, name)


def resume_from_checkpoint(fdir: str, model: torch.nn.Module, optimizer: Any = None,
                           scheduler: Any = None) -> int:
    """Load the latest checkpoint of ``fdir`` into model/optimizer/scheduler; returns its
    epoch (the number of finished epochs)."""
    fpath = latest_checkpoint_path(fdir)
    if fpath is None:
        raise FileNotFoundError(f"No '{POINTER_FILE}' file in {fdir}")
    checkpoint = load_checkpoint(fpath)
    logger.info('Loading checkpoint from "%s"', fpath)
    model.load_state_dict(checkpoint["state_dict"])
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        sched_state = checkpoint["scheduler"]
        if not isinstance(sched_state, dict):
            raise TypeError(f"{fpath} stores its scheduler as a pickled object; training "
                            f"cannot resume from it (use it with --eval-only)")
        scheduler.load_state_dict(sched_state)
    logger.info("Previous epoch: %s", checkpoint["epoch"])
    return int(checkpoint["epoch"])


# --------------------------------------------------------------------------- RNG state


def get_rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states as plain data."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
