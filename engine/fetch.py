"""Downloads that can be trusted and resumed, and archives unpacked safely.

Used by ``python -m scripts.zoo`` (released checkpoints) and ``python -m datasets.fetch``
(benchmarks). Every transfer goes through ``gdown.download`` (Google Drive addresses and plain
URLs alike) with ``resume=True``: an interrupted transfer leaves gdown's ``<name>XXXXXXXX.part``
file beside the target and the next call continues it with an HTTP Range request. Each file's
size and sha256 are recorded at its first download (:class:`Records`) and compared at every
later one, so a file that changed at its source, or on disk, is refused rather than used.
Archives (zip, tar in any compression, recognised by their content) are unpacked member by
member: a member whose path leaves the target, and any link or special file, is refused before
anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.errors import UserError

CHUNK = 1 << 20


class DownloadFailed(UserError):
    """A download that cannot happen now (offline, quota, moved file, changed file); the
    message names the entry, the address and how to fetch it by hand."""


class ChangedFile(DownloadFailed):
    """A file that differs from its record (or from its published size and sha256)."""


class UnsafeArchive(UserError, ValueError):
    """An archive with a member that would land outside its target, or a link."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Expected:
    """What a file must be: published values where known (None: take the first download's)."""

    size: int | None = None
    sha256: str | None = None


class Records:
    """Sizes and sha256 of downloaded files, by key, in one JSON file (written atomically)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except ValueError as err:
            raise UserError(f"{self.path} is not valid JSON ({err}); delete it to record the "
                            "files again at their next download") from err
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict | None:
        return self.load().get(key)

    def put(self, key: str, url: str, size: int, sha256: str) -> None:
        data = self.load()
        data[key] = {"url": url, "size": size, "sha256": sha256}
        _write_json_atomic(self.path, data)

    def forget(self, prefix: str) -> list[str]:
        data = self.load()
        gone = [k for k in data if k == prefix or k.startswith(prefix + "/")]
        for key in gone:
            del data[key]
        _write_json_atomic(self.path, data)
        return gone


def _mismatch(size: int, sha: str, want: dict | Expected) -> str | None:
    want_size = want["size"] if isinstance(want, dict) else want.size
    want_sha = want["sha256"] if isinstance(want, dict) else want.sha256
    if want_size is not None and size != want_size:
        return f"{size} bytes, expected {want_size}"
    if want_sha is not None and sha != want_sha:
        return f"sha256 {sha}, expected {want_sha}"
    return None


def _partial_files(target: Path) -> list[Path]:
    """gdown's partial files of ``target`` (its name, 8 random characters, ``.part``)."""
    if not target.parent.is_dir():
        return []
    n = len(target.name) + 8 + len(".part")
    return [p for p in target.parent.iterdir()
            if p.name.startswith(target.name) and p.name.endswith(".part") and len(p.name) == n]


def download(url: str, target: str | os.PathLike, *, key: str, records: Records,
             expected: Expected = Expected(), what: str = "", retries: int = 3,
             quiet: bool = True) -> Path:
    """Bring ``url`` to the file ``target`` (resuming a partial transfer), then check it
    against ``expected`` and against the record of its first download (``key`` in
    ``records``); record it when it is new. A file already there is only checked; one that no
    longer matches its record is downloaded again, and refused if the source now serves
    other bytes. Failures raise :class:`DownloadFailed` with the manual route."""
    import gdown  # the design's download package; imported here so the engine starts fast

    target = Path(target)
    label = what or key
    record = records.get(key)
    measured = None
    if target.is_file():
        measured = target.stat().st_size, sha256_file(target)
        if _problem(*measured, expected, record) is not None:  # changed on disk: fetch again
            os.replace(target, target.with_name(target.name + ".rejected"))
            measured = None
    if measured is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            gdown.download(url=url, output=str(target), quiet=quiet, resume=True,
                           retries=retries, timeout=60)
        except Exception as err:  # gdown, requests and OS errors alike: say how to go on
            partial = _partial_files(target)
            kept = f"; {partial[0].stat().st_size} bytes kept, the next run resumes" \
                if partial else ""
            raise DownloadFailed(
                f"{label}: could not download {url} ({_reason(err)}{kept}). Run the command "
                f"again later, or download it by hand (a browser) to {target}") from err
        measured = target.stat().st_size, sha256_file(target)
        problem = _problem(*measured, expected, record)
        if problem is not None:
            rejected = target.with_name(target.name + ".rejected")
            os.replace(target, rejected)
            raise ChangedFile(
                f"{label}: {url} now gives a different file ({problem}, as published or "
                f"recorded at its first download in {records.path}); it was moved to "
                f"{rejected}. If the change is expected, remove the key {key!r} from that file "
                "(released models: python -m scripts.zoo forget NAME) and download again")
    if record is None:
        records.put(key, url, *measured)
    return target


def _problem(size: int, sha: str, expected: Expected, record: dict | None) -> str | None:
    """How a file of ``size`` bytes and ``sha`` differs from what it must be, or None."""
    return _mismatch(size, sha, expected) or (_mismatch(size, sha, record) if record else None)


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ---------------------------------------------------------------- archives


def archive_kind(path: str | os.PathLike) -> str | None:
    """``zip``, ``tar`` or None, from the file's content (not its name)."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        return "tar" if tarfile.is_tarfile(path) else None
    except OSError:
        return None


def _safe_name(name: str, archive: Path) -> PurePosixPath:
    """A member's path, relative and inside the target, or :class:`UnsafeArchive`."""
    text = name.replace("\\", "/")
    parts = PurePosixPath(text).parts
    if text.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise UnsafeArchive(f"{archive}: member {name!r} would be written outside the target "
                            "folder; the archive is refused (nothing was unpacked)")
    return PurePosixPath(*parts)


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> Iterator[tuple[zipfile.ZipInfo,
                                                                       PurePosixPath]]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchive(f"{archive}: member {info.filename!r} is a symbolic link; "
                                "links are refused (nothing was unpacked)")
        yield info, _safe_name(info.filename, archive)


def _tar_members(archive: Path, tf: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo,
                                                                       PurePosixPath]]:
    for member in tf:  # one pass: a compressed archive is not decompressed twice
        if not (member.isfile() or member.isdir()):
            kind = "a link" if (member.issym() or member.islnk()) else "a special file"
            raise UnsafeArchive(f"{archive}: member {member.name!r} is {kind}; links and "
                                "special files are refused (nothing was unpacked)")
        yield member, _safe_name(member.name, archive)


def _extract(archive: Path, dest: Path) -> None:
    """Every member of ``archive`` under the staging folder ``dest``, each checked before it
    is written (a zip's members all first, from its directory); the caller removes ``dest``
    when one is refused."""
    if archive_kind(archive) == "zip":
        with zipfile.ZipFile(archive) as zf:
            members = list(_zip_members(archive, zf))
            for info, rel in members:
                _write_member(dest, rel, info.is_dir(), lambda i=info: zf.open(i))
        return
    with tarfile.open(archive) as tf:
        for member, rel in _tar_members(archive, tf):
            _write_member(dest, rel, member.isdir(), lambda m=member: tf.extractfile(m))


def _write_member(dest: Path, rel: PurePosixPath, is_dir: bool, opener) -> None:
    path = dest.joinpath(*rel.parts) if rel.parts else dest
    if not path.resolve().is_relative_to(dest.resolve()):
        raise UnsafeArchive(f"member {str(rel)!r} would be written outside {dest}")
    if is_dir:
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener() as src, open(path, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _merge(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; folders are merged, files replace files; a file never
    replaces a folder (nor a folder a file)."""
    if src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            _merge(child, dst / child.name)
        src.rmdir()
        return
    if dst.is_dir() or src.is_dir() and dst.exists():
        raise UserError(f"cannot unpack {src.name}: {dst} exists and is a "
                        f"{'folder' if dst.is_dir() else 'file'}; move it away and run again")
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)


def unpack(archive: str | os.PathLike, target: str | os.PathLike,
           take: dict[str, str] | None = None) -> None:
    """Unpack ``archive`` into ``target``: into a staging folder first, then moved in, so an
    interrupted unpack leaves nothing half-written in ``target``. ``take`` maps folders of the
    archive to places under ``target`` (``{"fgvc-aircraft-2013b/data": "fgvc_aircraft"}``);
    without it every member lands under ``target`` as it is named in the archive."""
    archive, target = Path(archive), Path(target)
    if archive_kind(archive) is None:
        raise UserError(f"{archive} is neither a zip nor a tar archive; delete it and "
                        "download it again")
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".unpacking-{archive.name}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        _extract(archive, staging)
        moves = take or {child.name: child.name for child in staging.iterdir()}
        for src, dst in moves.items():
            origin = staging.joinpath(*_safe_name(src, archive).parts)
            if not origin.exists():
                raise UserError(f"{archive} has no {src!r}; the archive's top level holds "
                                f"{sorted(p.name for p in staging.iterdir())}")
            _merge(origin, target.joinpath(*_safe_name(dst, archive).parts))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
