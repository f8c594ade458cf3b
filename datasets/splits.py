"""Split files on disk: CoOp's JSON format, atomic writes, and the checks that explain errors.

A split file is a JSON object whose keys are split names (``train``, ``val``, ``test``) and whose
values are lists of ``[relative path, label, class name]``; paths are relative to the dataset's
image folder, so ``impath = os.path.join(image_dir, relative path)`` (as CoOp's ``read_split``).
The few-shot caches and the custom dataset's split use the same format.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence

from engine.data.datasets import Datum

logger = logging.getLogger(__name__)

DOCS = "DATASETS.md"
MAX_LISTED = 5  # missing paths quoted in an error message


class DatasetFilesError(FileNotFoundError):
    """A dataset folder, split file or image is missing; the message says how to fix it."""


def docs_hint(anchor: str) -> str:
    """Where a user reads how to install a dataset."""
    return f"See {DOCS} (section '{anchor}') for the download sources and the expected layout."


def require_path(path: str, what: str, fix: str) -> None:
    """Raise :class:`DatasetFilesError` naming ``path`` unless it exists."""
    if not os.path.exists(path):
        raise DatasetFilesError(f"{what} not found: {path}\n{fix}")


def rows_to_items(rows: Iterable[Sequence], image_dir: str) -> list[Datum]:
    """``[relative path, label, class name]`` rows to items whose paths start with ``image_dir``
    (rows as :func:`check_rows` accepts them)."""
    return [Datum(impath=os.path.join(image_dir, path), label=int(label), classname=classname)
            for path, label, classname in rows]


def row_problem(row: object) -> str | None:
    """What is wrong with one split-file row, or None when it is ``[str, int >= 0, str]``."""
    if not isinstance(row, list | tuple) or len(row) != 3:
        length = f"{len(row)} items" if isinstance(row, list | tuple) else type(row).__name__
        return f"expected [relative path, label, class name], got {length}"
    path, label, classname = row
    if not isinstance(path, str) or not path:
        return f"the path must be a non-empty string, got {path!r}"
    if isinstance(label, bool) or not isinstance(label, int) or label < 0:
        return f"the label must be an integer >= 0, got {label!r}"
    if not isinstance(classname, str):
        return f"the class name must be a string, got {classname!r}"
    return None


def check_rows(data: object, path: str, names: Sequence[str]) -> None:
    """Raise ``ValueError`` naming ``path``, the split and the row when the splits ``names`` of
    ``data`` are not lists of ``[relative path, label, class name]`` rows with one class name
    per label."""
    fix = "fix the file, or delete it and download or generate it again"
    if not isinstance(data, dict):
        raise ValueError(f"Split file {path} holds a JSON {type(data).__name__}; expected an "
                         f"object with the lists {', '.join(names)}; {fix}")
    absent = [name for name in names if name not in data]
    if absent:
        raise ValueError(f"Split file {path} has no {', '.join(absent)} list (it has "
                         f"{', '.join(data) or 'nothing'}); {fix}")
    names_of: dict[int, tuple[str, str, int]] = {}
    for name in names:
        rows = data[name]
        if not isinstance(rows, list):
            raise ValueError(f"Split file {path}: '{name}' must be a list of rows, got a JSON "
                             f"{type(rows).__name__}; {fix}")
        for number, row in enumerate(rows):
            problem = row_problem(row)
            if problem:
                raise ValueError(f"Split file {path}, '{name}' row {number} ({repr(row)[:200]}): "
                                 f"{problem}; {fix}")
            first = names_of.setdefault(row[1], (row[2], name, number))
            if first[0] != row[2]:
                raise ValueError(f"Split file {path}: label {row[1]} is {first[0]!r} in "
                                 f"'{first[1]}' row {first[2]} but {row[2]!r} in '{name}' row "
                                 f"{number}; one label, one class name; {fix}")


def items_to_rows(items: Iterable[Datum], image_dir: str) -> list[list]:
    """Items to ``[path relative to image_dir, label, class name]`` rows."""
    return [[os.path.relpath(item.impath, image_dir), item.label, item.classname]
            for item in items]


def read_json(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it or download it again") \
            from exc
    except RecursionError:  # arrays nested thousands deep: no split file is
        raise ValueError(f"{path} nests its JSON too deeply to be a split file; delete it or "
                         "download it again") from None


def write_json(data: Mapping, path: str) -> None:
    """Write ``data`` as JSON through a temporary file, so readers never see half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(temporary, path)


def read_split(path: str, image_dir: str,
               names: Sequence[str] = ("train", "val", "test")) -> dict[str, list[Datum]]:
    """Read the splits ``names`` of a split file; every one must be present and well formed
    (:func:`check_rows`)."""
    data = read_json(path)
    check_rows(data, path, names)
    logger.info("Reading split from %s", path)
    return {name: rows_to_items(data[name], image_dir) for name in names}


def write_split(splits: Mapping[str, Sequence[Datum]], path: str, image_dir: str) -> None:
    """Write splits in CoOp's format with paths relative to ``image_dir``."""
    write_json({name: items_to_rows(items, image_dir) for name, items in splits.items()}, path)
    logger.info("Saved split to %s", path)


def check_images(items: Iterable[Datum], source: str, fix: str) -> None:
    """Raise one error listing how many of ``items`` are absent on disk and the first paths."""
    missing: list[str] = []
    total = 0
    for item in items:
        total += 1
        if not os.path.exists(item.impath):
            missing.append(item.impath)
    if missing:
        listed = "\n  ".join(missing[:MAX_LISTED])
        more = f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise DatasetFilesError(f"{len(missing)} of {total} images listed in {source} are "
                                f"missing, e.g.:\n  {listed}{more}\n{fix}")
