"""The official readers' pickled caches, read without running any of their code.

The official readers (CoOp, MaPLe, PromptSRC, on Dassl) pickle two things next to the data:
``split_fewshot/shot_{K}-seed_{S}.pkl`` (the few-shot images a seed picked: ``{"train": [...],
"val": [...]}``) and ``imagenet/preprocessed.pkl`` (ImageNet's image listing, in the order of
``os.listdir`` on the machine that wrote it: ``{"train": [...], "test": [...]}``). Each list holds
Dassl ``Datum`` objects with the absolute image paths of that machine.

Reusing them gives a user exactly the images of their official runs, even where the order of
``os.listdir`` differs (a copied ImageNet lists its folders in another order, so the same seed
would draw other images). A pickle can run code, so these files are read by an unpickler that
builds nothing but dicts, lists, strings and numbers, and ``Datum`` records as plain data; any
other object in the file is refused. Paths are relocated to this machine's image folder.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

from engine.data.datasets import Datum

DATUM_CLASSES = {("dassl.data.datasets.base_dataset", "Datum"),
                 ("dassl.data.datasets", "Datum")}


class OfficialCacheError(ValueError):
    """An official cache file that cannot be used; the message says why and what to do."""


class _DatumRecord:
    """The fields of a pickled Dassl ``Datum`` (built by the unpickler instead of the class)."""

    def __init__(self, *unused: Any) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0] or {}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("a Datum record without its fields")
        self.state = state

    def field(self, name: str) -> Any:
        # Dassl keeps its fields as _impath, _label, _domain, _classname
        return self.state.get(f"_{name}", self.state.get(name))


def _new_record(cls: Any, *unused: Any) -> _DatumRecord:
    if cls is not _DatumRecord:
        raise pickle.UnpicklingError(f"refusing to build {cls!r}")
    return _DatumRecord()


class _CacheUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in DATUM_CLASSES:
            return _DatumRecord
        if (module, name) in {("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor")}:
            return _new_record
        if (module, name) in {("builtins", "object"), ("__builtin__", "object")}:
            return object
        raise pickle.UnpicklingError(
            f"it asks for '{module}.{name}', which an official few-shot or listing cache never "
            "holds (only Dassl Datum records); the file may try to run code")


def read_official_cache(path: str) -> dict[str, list[tuple[str, int, str]]]:
    """``{split name: [(absolute path as written, label, class name), ...]}`` of an official
    cache pickle, read safely (see the module doc)."""
    try:
        with open(path, "rb") as f:
            data = _CacheUnpickler(io.BytesIO(f.read())).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError,
            IndexError, KeyError) as exc:
        raise OfficialCacheError(f"{path} cannot be read as an official cache ({exc}); delete "
                                 "or move it and the selection will be drawn again") from exc
    if not isinstance(data, Mapping):
        raise OfficialCacheError(f"{path} holds {type(data).__name__}, not the official dict of "
                                 "splits; delete or move it")
    splits: dict[str, list[tuple[str, int, str]]] = {}
    for name, records in data.items():
        if not isinstance(records, list) or not all(isinstance(r, _DatumRecord)
                                                    for r in records):
            raise OfficialCacheError(f"{path}: '{name}' is not a list of Datum records; delete "
                                     "or move the file")
        rows = []
        for record in records:
            impath, label = record.field("impath"), record.field("label")
            if not isinstance(impath, str) or not isinstance(label, int):
                raise OfficialCacheError(f"{path}: a Datum of '{name}' has no image path or "
                                         "label; delete or move the file")
            rows.append((impath, label, str(record.field("classname") or "")))
        splits[str(name)] = rows
    return splits


def path_parts(path: str) -> list[str]:
    """The components of a path written on any system (``/`` or ``\\`` separators)."""
    return [part for part in path.replace("\\", "/").split("/") if part]


def relocate_by_suffix(rows: Sequence[tuple[str, int, str]],
                       known: Mapping[str, Datum]) -> tuple[list[Datum], list[str]]:
    """Map each row's foreign absolute path to the item of ``known`` (keyed by the path
    relative to this machine's image folder, ``/``-separated) whose path is its longest
    matching suffix. Returns the items in the rows' order and the paths that matched none."""
    depth = max((len(key.split("/")) for key in known), default=0)
    items, unmatched = [], []
    for impath, _, _ in rows:
        parts = path_parts(impath)
        for k in range(min(depth, len(parts)), 0, -1):
            item = known.get("/".join(parts[-k:]))
            if item is not None:
                items.append(item)
                break
        else:
            unmatched.append(impath)
    return items, unmatched


def relocate_last_parts(rows: Sequence[tuple[str, int, str]], image_dir: str,
                        keep: int) -> list[Datum]:
    """Rows as items under ``image_dir``, keeping the last ``keep`` components of each path
    (ImageNet: ``train/<wnid>/<file>``)."""
    return [Datum(impath=os.path.join(image_dir, *path_parts(impath)[-keep:]), label=label,
                  classname=classname)
            for impath, label, classname in rows]
