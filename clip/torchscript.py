"""TorchScript archives (OpenAI's released weights) read as data: their code never runs.

An archive made by ``torch.jit.save`` is a zip of ``data.pkl`` (the module tree, pickled),
``data/<key>`` (the tensors' bytes) and ``code/`` (the TorchScript source of every class).
``torch.jit.load`` compiles that code and runs each class's ``__setstate__`` while it reads, so
an archive from a stranger can run anything. :func:`read_archive` instead unpickles ``data.pkl``
with a restricted unpickler: every ``__torch__`` class becomes a plain :class:`ScriptObject`
recording the attributes the file gives it; tensors are rebuilt from the ``data/`` records;
no other global is allowed. ``code/`` is only parsed (never compiled or run) for each class's
``__parameters__`` and ``__buffers__`` declarations, which say which tensor attributes are the
state dict. A class that defines ``__setstate__`` is refused: its attributes are whatever its
code would compute.
"""

from __future__ import annotations

import ast
import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import WeightsError

__all__ = ["ScriptArchive", "ScriptObject", "is_torchscript", "read_archive"]

MAX_DEPTH = 64  # module nesting; CLIP's deepest module is 6 levels down
MAX_EXPANSION = 4  # tensors may hold this many times the file's bytes (+ 1 MiB), no more
_STORAGES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class ScriptObject:
    """Stands in for an instance of a TorchScript class: ``module`` and ``name`` say which
    class the file named, ``state`` holds what the file gives it (a dict of attributes for a
    module). Nothing of the class is compiled or run."""

    module = ""
    name = ""

    def __init__(self) -> None:
        self.state: Any = None

    def __repr__(self) -> str:
        return f"<{self.module}.{self.name}>"


@dataclass
class ScriptArchive:
    """What an archive holds: its state dict (dotted names, as ``module.state_dict()`` gives
    them) and the class name of each module (``""`` is the root), without mangling."""

    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)


class ArchiveError(WeightsError):
    """An archive that cannot be read as data (the message names the file)."""


def _listify(value: Any, *unused: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _type_tag(value: Any, *unused: Any) -> Any:
    return value


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *unused: Any
                    ) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("a tensor record without storage")
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.jit._pickle", "build_intlist"): _listify,
    ("torch.jit._pickle", "build_doublelist"): _listify,
    ("torch.jit._pickle", "build_boollist"): _listify,
    ("torch.jit._pickle", "build_tensorlist"): _listify,
    ("torch.jit._pickle", "restore_type_tag"): _type_tag,
}


class _Unpickler(pickle._Unpickler):
    """The pure-Python unpickler (its BUILD can be overridden) allowing only tensor records,
    plain containers and ``__torch__`` classes, which become :class:`ScriptObject`."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def _load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if type(target).__bases__ != (ScriptObject,):
            raise pickle.UnpicklingError(f"it sets the state of a {type(target).__name__} "
                                         "(pickle BUILD); an archive sets only its modules'")
        target.state = state

    dispatch[pickle.BUILD[0]] = _load_build

    def __init__(self, data: bytes, read_record: Any) -> None:
        super().__init__(io.BytesIO(data))
        self._read_record = read_record
        self._storages: dict[str, torch.Tensor] = {}
        self._classes: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        if module == "__torch__" or module.startswith("__torch__."):
            key = (module, name)
            if key not in self._classes:
                self._classes[key] = type(name, (ScriptObject,), {"module": module, "name": name})
            return self._classes[key]
        raise pickle.UnpicklingError(f"it names the global '{module}.{name}', which is neither "
                                     "a tensor record nor a TorchScript class")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"
                and isinstance(pid[1], torch.dtype)):
            raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:80]}")
        key, dtype = str(pid[2]), pid[1]
        if key not in self._storages:
            raw = bytearray(self._read_record(key))
            self._storages[key] = (torch.frombuffer(raw, dtype=dtype) if raw
                                   else torch.empty(0, dtype=dtype))
        return self._storages[key]


def _archive_prefix(archive: zipfile.ZipFile) -> str | None:
    """``"name/"`` of a TorchScript archive (one ``data.pkl`` beside a ``code/`` folder)."""
    names = archive.namelist()
    pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pickles) != 1:
        return None
    prefix = pickles[0][: -len("data.pkl")]
    return prefix if any(n.startswith(f"{prefix}code/") for n in names) else None


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``data.pkl`` and ``code/``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _archive_prefix(archive) is not None
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


class _Declarations:
    """Each class's ``__parameters__`` and ``__buffers__``, parsed (not run) from ``code/``;
    ``None`` for a class that defines ``__setstate__``."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str) -> None:
        self._archive, self._prefix = archive, prefix
        self._files: dict[str, dict[str, tuple[list[str], list[str]] | None]] = {}

    def __call__(self, module: str, name: str) -> tuple[list[str], list[str]] | None:
        if module not in self._files:
            self._files[module] = self._parse(module)
        classes = self._files[module]
        if name not in classes:
            raise ArchiveError(f"the class {module}.{name} is not declared in its code/")
        return classes[name]

    def _parse(self, module: str) -> dict[str, tuple[list[str], list[str]] | None]:
        member = f"{self._prefix}code/{module.replace('.', '/')}.py"
        try:
            tree = ast.parse(self._archive.read(member).decode("utf-8"))
        except (KeyError, SyntaxError, UnicodeDecodeError, ValueError) as err:
            raise ArchiveError(f"its code/ has no readable {member} ({err})") from None
        classes: dict[str, tuple[list[str], list[str]] | None] = {}
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                classes[node.name] = _class_declarations(node)
        return classes


def _class_declarations(node: ast.ClassDef) -> tuple[list[str], list[str]] | None:
    found: dict[str, list[str]] = {"__parameters__": [], "__buffers__": []}
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__setstate__":
            return None
        if (isinstance(item, ast.Assign) and len(item.targets) == 1
                and isinstance(item.targets[0], ast.Name) and item.targets[0].id in found):
            value = ast.literal_eval(item.value)
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ArchiveError(f"{node.name}.{item.targets[0].id} is not a list of names")
            found[item.targets[0].id] = value
    return found["__parameters__"], found["__buffers__"]


def _collect(root: Any, declarations: _Declarations) -> ScriptArchive:
    """The state dict and module classes of the module tree under ``root``, walked once per
    object, at most :data:`MAX_DEPTH` deep."""
    result, seen = ScriptArchive(), set()
    stack: list[tuple[str, Any, int]] = [("", root, 0)]
    while stack:
        prefix, obj, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ArchiveError(f"its modules nest deeper than {MAX_DEPTH} levels")
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        declared = declarations(obj.module, obj.name)
        if declared is None:
            raise ArchiveError(f"its module {prefix.rstrip('.') or 'at the root'} "
                               f"({obj.module}.{obj.name}) sets its state with its own "
                               "__setstate__ code, which a weight file does not need; it is "
                               "not run")
        if type(obj.state) is not dict:
            raise ArchiveError(f"its module {prefix.rstrip('.') or 'at the root'} holds a "
                               f"{type(obj.state).__name__}, not a dict of attributes")
        result.modules[prefix.rstrip(".")] = obj.name
        attributes = obj.state
        for key in [*declared[0], *declared[1]]:
            value = dict.get(attributes, key)
            if isinstance(value, torch.Tensor):
                result.state_dict[prefix + key] = value
            elif value is not None:
                raise ArchiveError(f"its tensor {prefix + key} is a {type(value).__name__}")
        children = [(k, v) for k, v in dict.items(attributes) if isinstance(v, ScriptObject)]
        stack.extend((f"{prefix}{k}.", v, depth + 1) for k, v in reversed(children))
    return result


def _check_size(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    limit = MAX_EXPANSION * path.stat().st_size + (1 << 20)
    total = sum(t.numel() * t.element_size() for t in state_dict.values())
    if total > limit:
        raise ArchiveError(f"its tensors would take {total:,} bytes, over {MAX_EXPANSION} "
                           "times the file's size (views with repeated strides)")


def read_archive(path: str | Path) -> ScriptArchive:
    """The state dict and module classes of the TorchScript archive ``path``, read as data
    (see the module doc). Anything else is refused with an :class:`ArchiveError`."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive)
            if prefix is None:
                raise ArchiveError("it has no data.pkl beside a code/ folder")
            order = f"{prefix}byteorder"
            if order in archive.namelist() and archive.read(order).strip() != b"little":
                raise ArchiveError("it is big-endian")
            unpickler = _Unpickler(archive.read(f"{prefix}data.pkl"),
                                   lambda key: archive.read(f"{prefix}data/{key}"))
            root = unpickler.load()
            if not isinstance(root, ScriptObject):
                raise ArchiveError(f"its data.pkl holds a {type(root).__name__}, not a module")
            result = _collect(root, _Declarations(archive, prefix))
        _check_size(result.state_dict, path)
    except ArchiveError as err:
        raise ArchiveError(f"cannot read {path} as a TorchScript archive: {err}") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError, ValueError,
            TypeError, IndexError, AttributeError, RuntimeError, OSError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0][:300]
        raise ArchiveError(f"cannot read {path} as a TorchScript archive: {first}") from None
    return result
