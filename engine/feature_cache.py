"""An on-disk cache of features that frozen computations give, shared by the jobs of a sweep.

A *context* describes the computation (the backbone's weights fingerprint, the precision, the
exact preprocessing, ...: whatever changes a feature); an entry is one image's feature in one
context, keyed by the image file's identity (path, size and modification time, or its content's
SHA-256 when asked). Both go into the entry's key, so a changed backbone, precision, transform or
image file never finds an old entry.

Files: ``ROOT/<context>/context.json`` (what the context is, for people) and
``ROOT/<context>/<kk>/<key>.feat``, each a header (magic, the entry's key, dtype, shape), the
raw values and a SHA-256 of all that. Writes go to a temporary file that is renamed into place,
so readers never see half a file; many processes may read and write at once (two writers of an
entry write the same bytes). A file that fails its checks is refused, removed and recomputed;
never read. The folder may be deleted at any time: what is missing is recomputed.

The cache stops storing (and says so once) when it would grow past ``max_bytes`` or the disk
would keep less than ``reserve_bytes`` free; features are then computed as without a cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["FeatureCache", "CacheContext", "CacheStats", "file_identity"]

logger = logging.getLogger(__name__)

MAGIC = b"PLFEAT01"
DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}
DTYPE_OF = {code: dtype for dtype, code in DTYPES.items()}
DIGEST = 32  # bytes of a SHA-256
GIB = 1024 ** 3


@dataclass
class CacheStats:
    read: int = 0  # features served from disk
    computed: int = 0  # features computed (stored unless the cache was full)
    refused: int = 0  # files that failed their checks (removed, recomputed)
    not_stored: int = 0  # computed but not stored (cache full, disk short, folder gone)

    def line(self) -> str:
        text = f"{self.read} features read, {self.computed} computed"
        if self.refused:
            text += f", {self.refused} damaged files refused"
        if self.not_stored:
            text += f", {self.not_stored} not stored"
        return text


@dataclass(frozen=True)
class CacheContext:
    digest: str  # hex SHA-256 of the description
    description: dict = field(hash=False, compare=False)


def _stat_identity(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"


_content_hashes: dict[str, str] = {}


def file_identity(path: str, content_hash: bool = False) -> str | None:
    """What identifies an image's bytes: its real path, size and modification time (or the
    SHA-256 of the file, with ``content_hash``); ``None`` when no file backs the path.

    A path ``ARCHIVE@MEMBER`` (an image inside an archive) is identified by the archive's
    identity and the member's name."""
    stat = _stat_identity(path)
    member = ""
    source = path
    if stat is None:
        for i, char in enumerate(path):
            if char == "@" and os.path.isfile(path[:i]):
                source, member = path[:i], path[i + 1:]
                stat = _stat_identity(source)
                break
    if stat is None:
        return None
    if not content_hash:
        return f"{stat}|{member}"
    st = os.stat(source)
    version = f"{stat}|{st.st_ino}|{st.st_ctime_ns}"  # any write changes the change time
    if version not in _content_hashes:  # one hash per file version and process
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _content_hashes[version] = digest.hexdigest()
    return f"sha256:{_content_hashes[version]}|{member}"


class FeatureCache:
    """Features on disk under ``root`` (see the module's doc)."""

    def __init__(self, root: str | os.PathLike, max_bytes: int = 50 * GIB,
                 reserve_bytes: int = GIB, content_hash: bool = False) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self.content_hash = content_hash
        self.stats = CacheStats()
        self._size: int | None = None  # bytes under root, measured at the first write
        self._full_reason = ""

    # ------------------------------------------------------------------ keys
    def context(self, **description) -> CacheContext:
        """The context of a computation, from a JSON-able description of all it depends on."""
        text = json.dumps(description, sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()
        context = CacheContext(digest, description)
        folder = self.root / digest[:24]
        if not (folder / "context.json").exists():
            try:
                self._write_atomic(folder / "context.json", (text + "\n").encode())
            except OSError:
                pass  # only for people reading the folder
        return context

    def key(self, context: CacheContext, path: str) -> bytes | None:
        """The entry's key (SHA-256 of the context and the file's identity), or ``None`` when
        the image is not a file this cache can identify. A ``path`` of the form
        ``"named:TEXT"`` is an entry that no file backs (TEXT is all the key has beyond the
        context: a computation fully described by both)."""
        if path.startswith("named:"):
            identity = path
        else:
            identity = file_identity(path, self.content_hash)
        if identity is None:
            return None
        return hashlib.sha256(f"{context.digest}\n{identity}".encode()).digest()

    def path_of(self, context: CacheContext, key: bytes) -> Path:
        hexkey = key.hex()
        return self.root / context.digest[:24] / hexkey[:2] / f"{hexkey}.feat"

    # ------------------------------------------------------------------ read
    def get(self, context: CacheContext, path: str) -> torch.Tensor | None:
        """The stored feature of the image at ``path``, or ``None`` (then compute and
        :meth:`put` it). A damaged file is removed and counted in ``stats.refused``."""
        key = self.key(context, path)
        if key is None:
            return None
        file = self.path_of(context, key)
        try:
            data = file.read_bytes()
        except OSError:
            return None
        tensor = decode(data, key)
        if tensor is None:
            self.stats.refused += 1
            logger.warning("Feature cache: %s is damaged; removed, the feature is recomputed",
                           file)
            try:
                file.unlink()
            except OSError:
                pass
            return None
        self.stats.read += 1
        return tensor

    # ------------------------------------------------------------------ write
    def put(self, context: CacheContext, path: str, tensor: torch.Tensor) -> bool:
        """Store ``tensor`` as the feature of the image at ``path``; False when it was not
        stored (the image has no file identity, or the cache is full, or the disk short)."""
        self.stats.computed += 1
        key = self.key(context, path)
        if key is None or self._full_reason:
            self.stats.not_stored += key is not None
            return False
        data = encode(tensor, key)
        if not self._room_for(len(data)):
            self.stats.not_stored += 1
            return False
        try:
            self._write_atomic(self.path_of(context, key), data)
        except OSError as exc:
            self._stop(f"writing failed ({exc.strerror or exc})")
            self.stats.not_stored += 1
            return False
        self._size = (self._size or 0) + len(data)
        return True

    def _room_for(self, size: int) -> bool:
        if self._size is None:
            self._size = folder_size(self.root)
        if self._size + size > self.max_bytes:
            self._stop(f"it holds {self._size / GIB:.2f} GiB, its limit is "
                       f"{self.max_bytes / GIB:.2f} GiB (raise the limit or delete the folder)")
            return False
        if self.stats.computed % 256 == 1:  # the disk is shared: look now and then
            try:
                free = shutil.disk_usage(self.root if self.root.exists()
                                         else self.root.parent).free
            except OSError:
                free = 0
            if free - size < self.reserve_bytes:
                self._stop(f"the disk has {free / GIB:.2f} GiB free, less than the "
                           f"{self.reserve_bytes / GIB:.2f} GiB it keeps free (free space, or "
                           "put the cache on another disk)")
                return False
        return True

    def _stop(self, reason: str) -> None:
        if not self._full_reason:
            self._full_reason = reason
            logger.warning("Feature cache %s stops storing: %s; features are computed as "
                           "without a cache", self.root, reason)

    @staticmethod
    def _write_atomic(file: Path, data: bytes) -> None:
        for attempt in range(2):  # the folder may be deleted under us: make it again once
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, file)
                return
            except FileNotFoundError:
                if attempt:
                    raise
            except OSError:
                try:
                    tmp.unlink()
                except OSError:
                    pass
                raise


def folder_size(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def encode(tensor: torch.Tensor, key: bytes) -> bytes:
    tensor = tensor.detach().to("cpu").contiguous()
    if tensor.dtype not in DTYPES:
        raise TypeError(f"the feature cache stores floating tensors; got {tensor.dtype}")
    header = MAGIC + key + struct.pack("<BB", DTYPES[tensor.dtype], tensor.dim()) + struct.pack(
        f"<{tensor.dim()}I", *tensor.shape)
    body = header + tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else header
    return body + hashlib.sha256(body).digest()


def decode(data: bytes, key: bytes) -> torch.Tensor | None:
    """The tensor of a cache file, or ``None`` when any check fails (length, magic, key,
    dtype, checksum)."""
    start = len(MAGIC) + DIGEST + 2
    if len(data) < start + DIGEST or not data.startswith(MAGIC):
        return None
    if data[len(MAGIC):len(MAGIC) + DIGEST] != key:
        return None
    body, checksum = data[:-DIGEST], data[-DIGEST:]
    if hashlib.sha256(body).digest() != checksum:
        return None
    code, ndim = struct.unpack_from("<BB", data, len(MAGIC) + DIGEST)
    if code not in DTYPE_OF or len(body) < start + 4 * ndim:
        return None
    shape = struct.unpack_from(f"<{ndim}I", data, start)
    dtype = DTYPE_OF[code]
    payload = body[start + 4 * ndim:]
    count = 1
    for size in shape:
        count *= size
    if len(payload) != count * torch.empty((), dtype=dtype).element_size():
        return None
    if not count:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8).view(dtype).reshape(shape)
