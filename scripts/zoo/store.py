"""Where released checkpoints lie on disk, and how they get there.

    $ZOO_DIR/<entry>/downloads/<file>     what the source serves (a Drive folder keeps its tree)
    $ZOO_DIR/<entry>/<...>                the archives among them, unpacked
    $ZOO_DIR/records.json                 size and sha256 of every file at its first download

``ZOO_DIR`` defaults to ``released`` in the current directory. ``ZOO_MIRROR`` (a base URL)
serves Google Drive content from elsewhere: a Drive file ``ID`` is read from ``MIRROR/ID``, a
Drive folder ``ID`` from ``MIRROR/ID/<path>`` with its file list in ``MIRROR/ID/index.json``
(a JSON list of relative paths), through the same download as the Drive addresses.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from engine.errors import UserError
from engine.fetch import (
    ChangedFile,
    DownloadFailed,
    Records,
    archive_kind,
    download,
    sha256_file,
    unpack,
)
from scripts.zoo.catalogue import Entry

DRIVE_FILE = "https://drive.google.com/uc?id={}"
_EPOCH_FILE = re.compile(r"model\.pth\.tar-(\d+)$")


def zoo_dir(value: str | os.PathLike | None = None) -> Path:
    return Path(value or os.environ.get("ZOO_DIR") or "released")


def entry_dir(entry: Entry, root: Path) -> Path:
    return root / entry.name


def records(root: Path) -> Records:
    return Records(root / "records.json")


def manual_line(entry: Entry, root: Path, why: str) -> str:
    return (f"{entry.name}: {why}; download {entry.address} by hand (a browser) into "
            f"{entry_dir(entry, root) / 'downloads'}/ and run the command again")


def _mirror() -> str | None:
    value = os.environ.get("ZOO_MIRROR", "").strip()
    return value.rstrip("/") if value else None


def files_to_fetch(entry: Entry, root: Path) -> list[tuple[str, str]]:
    """(url, path below downloads/) of every file of ``entry``'s source."""
    kind, value, mirror = entry.source_kind, entry.source, _mirror()
    if kind == "manual":
        raise DownloadFailed(manual_line(entry, root, "its host needs a browser (login or "
                                         "a page gdown cannot read)"))
    if kind == "url":
        return [(value, value.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "download")]
    if kind == "drive_file":
        return [(f"{mirror}/{value}" if mirror else DRIVE_FILE.format(value), value)]
    return _folder_files(entry, root, mirror)


def _folder_files(entry: Entry, root: Path, mirror: str | None) -> list[tuple[str, str]]:
    import gdown

    listing = entry_dir(entry, root) / "downloads" / ".listing.json"
    if listing.is_file():  # listed before: a resumed download needs no new listing
        return [tuple(item) for item in json.loads(listing.read_text())]
    try:
        if mirror:
            index = listing.with_name(".index.json")
            download(f"{mirror}/{entry.source}/index.json", index, key=f"{entry.name}/index",
                     records=records(root), what=f"{entry.name} (file list)")
            paths = json.loads(index.read_text())
            files = [(f"{mirror}/{entry.source}/{p}", p) for p in paths]
        else:
            found = gdown.download_folder(id=entry.source, skip_download=True, quiet=True)
            files = [(DRIVE_FILE.format(f.id), f.path) for f in found]
    except DownloadFailed:
        raise
    except Exception as err:  # gdown's errors, requests', or a malformed index
        raise DownloadFailed(manual_line(entry, root, f"its folder cannot be listed "
                                         f"({' '.join(str(err).split())[:160]})")) from err
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(json.dumps(files))
    return files


def fetch(entry: Entry, root: Path, retries: int = 3, quiet: bool = True) -> Path:
    """Download (or resume, or check) every file of ``entry`` and unpack its archives; returns
    the entry's folder."""
    folder = entry_dir(entry, root)
    book = records(root)
    try:
        files = files_to_fetch(entry, root)
    except DownloadFailed:
        local = placed_by_hand(entry, root)
        if not local:
            raise
        files = [(f"file:{rel}", rel) for rel in local]
    for url, rel in files:
        target = folder / "downloads" / rel
        if not target.resolve().is_relative_to((folder / "downloads").resolve()):
            raise UserError(f"{entry.name}: the source names a file outside its folder: {rel!r}")
        try:
            download(url, target, key=f"{entry.name}/{rel}", records=book, retries=retries,
                     what=f"{entry.name} ({rel})", quiet=quiet)
        except ChangedFile:
            raise
        except DownloadFailed as err:
            raise DownloadFailed(f"{err}. The entry's page: {entry.address}") from err
        _unpack_once(target, folder)
    return folder


def placed_by_hand(entry: Entry, root: Path) -> list[str]:
    """Files under the entry's downloads/ (put there by hand), relative to it."""
    downloads = entry_dir(entry, root) / "downloads"
    if not downloads.is_dir():
        return []
    return sorted(str(p.relative_to(downloads)) for p in downloads.rglob("*")
                  if p.is_file() and not p.name.startswith(".")
                  and not p.name.endswith((".part", ".rejected")))


def _unpack_once(archive: Path, folder: Path) -> None:
    """Unpack ``archive`` into ``folder`` unless this very file (by sha256) was unpacked."""
    if archive_kind(archive) is None:
        return
    marks = folder / ".unpacked.json"
    done = json.loads(marks.read_text()) if marks.is_file() else {}
    key, sha = str(archive.relative_to(folder)), sha256_file(archive)
    if done.get(key) == sha:
        return
    unpack(archive, folder)
    done[key] = sha
    marks.write_text(json.dumps(done, indent=1))


def downloaded(entry: Entry, root: Path) -> bool:
    """True when every file of the entry's listing (or, by hand, some file) is there and
    none is still partial."""
    downloads = entry_dir(entry, root) / "downloads"
    here = placed_by_hand(entry, root)
    listing = downloads / ".listing.json"
    if listing.is_file():
        listed = [rel for _, rel in json.loads(listing.read_text())]
        if not set(listed) <= set(here):
            return False
    return bool(here) and not any(downloads.rglob("*.part"))


def forget(entry: Entry, root: Path) -> list[str]:
    """Drop the entry's records and its cached folder listing (listed again next time)."""
    for name in (".listing.json", ".index.json"):
        (entry_dir(entry, root) / "downloads" / name).unlink(missing_ok=True)
    return records(root).forget(entry.name)


# ---------------------------------------------------------------- model folders


def model_dirs(folder: Path, epoch: int | None) -> list[Path]:
    """Folders that ``--model-dir`` can name: each holds ``<ModelName>/model.pth.tar-<epoch>``
    (``model-best.pth.tar`` when ``epoch`` is None; any epoch when it is 0)."""
    found = set()
    for path in folder.rglob("model*.pth.tar*"):
        match = _EPOCH_FILE.search(path.name)
        if epoch is None and path.name == "model-best.pth.tar" or \
                match and (epoch in (0, int(match[1]))):
            found.add(path.parent.parent)
    return sorted(found)


def _epochs_found(folder: Path) -> str:
    """What checkpoints are there when none of the wanted epoch is."""
    names = sorted({p.name for p in folder.rglob("model*.pth.tar*") if p.is_file()})
    return f"none of that epoch; files found: {', '.join(names[:6])}" if names else "none"


def locate(entry: Entry, root: Path, dataset: str | None = None, seed: int | None = None,
           shots: int | None = None) -> Path:
    """The ``--model-dir`` of ``entry`` for one dataset, seed (and shot count), from its
    layout; a one-line error when it is missing or not documented."""
    folder = entry_dir(entry, root)
    if not folder.is_dir():
        raise UserError(f"{entry.name} is not downloaded into {folder}; run: python -m "
                        f"scripts.zoo download {entry.name}")
    candidates = model_dirs(folder, entry.load_epoch)
    if entry.layout is None:
        listed = ", ".join(str(p) for p in candidates[:6]) or "none found"
        raise UserError(f"{entry.name}: the official files do not document where each model "
                        f"lies; give --model-dir one of: {listed}")
    values = {"dataset": dataset or "", "seed": seed if seed is not None else "",
              "shots": shots if shots is not None else ""}
    suffix = tuple(entry.layout.format(**values).lower().split("/"))
    hits = [p for p in candidates if tuple(x.lower() for x in p.parts[-len(suffix):]) == suffix]
    if dataset and len(hits) > 1:
        hits = [p for p in hits if dataset.lower() in (x.lower() for x in p.parts)] or hits
    if len(hits) == 1:
        return hits[0]
    what = entry.layout.format(**values)
    epoch = "model-best.pth.tar" if entry.load_epoch is None else \
        f"model.pth.tar-{entry.load_epoch}"
    if not hits:
        there = ", ".join(str(p.relative_to(folder)) for p in candidates[:6]) or \
            _epochs_found(folder)
        raise UserError(f"{entry.name}: no {what}/<Model>/{epoch} under {folder} (model "
                        f"folders there: {there}); give --model-dir, or download it again")
    raise UserError(f"{entry.name}: several folders match {what}: "
                    f"{', '.join(str(p) for p in hits[:6])}; give --model-dir")
