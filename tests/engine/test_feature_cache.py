"""The on-disk feature cache (engine/feature_cache.py): what it keys on, damaged files, many
writers at once, its size bound, a folder deleted under it."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil

import pytest
import torch

from engine.feature_cache import FeatureCache, file_identity

DESCRIPTION = {"backbone": "tiny", "fingerprint": "abc", "precision": "fp32",
               "transform": "Resize(32) CenterCrop(32)"}


def image(folder, name: str = "a.jpg", data: bytes = b"pixels") -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def feature(seed: int = 0) -> torch.Tensor:
    return torch.randn(16, generator=torch.Generator().manual_seed(seed))


def test_a_stored_feature_reads_back_and_is_counted(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    ctx = cache.context(**DESCRIPTION)
    path = image(tmp_path)
    assert cache.get(ctx, path) is None
    assert cache.put(ctx, path, feature().half())
    got = cache.get(ctx, path)
    assert got.dtype == torch.float16 and torch.equal(got, feature().half())
    assert cache.stats.line() == "1 features read, 1 computed"
    assert (tmp_path / "cache" / ctx.digest[:24] / "context.json").exists()


@pytest.mark.parametrize("change", ["fingerprint", "precision", "transform", "backbone"])
def test_another_context_never_hits(tmp_path, change):
    cache = FeatureCache(tmp_path / "cache")
    path = image(tmp_path)
    cache.put(cache.context(**DESCRIPTION), path, feature())
    other = cache.context(**{**DESCRIPTION, change: "something else"})
    assert cache.get(other, path) is None
    assert cache.get(cache.context(**DESCRIPTION), path) is not None


def test_a_changed_image_file_never_hits(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    ctx = cache.context(**DESCRIPTION)
    path = image(tmp_path)
    cache.put(ctx, path, feature())
    stat = os.stat(path)
    image(tmp_path, data=b"pixelz")  # same size, other bytes, other modification time
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert cache.get(ctx, path) is None
    assert cache.get(ctx, image(tmp_path, "b.jpg")) is None  # another file, same bytes


def test_content_hash_follows_the_bytes_not_the_file_times(tmp_path):
    cache = FeatureCache(tmp_path / "cache", content_hash=True)
    ctx = cache.context(**DESCRIPTION)
    path = image(tmp_path)
    cache.put(ctx, path, feature())
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: same bytes
    assert cache.get(ctx, path) is not None
    image(tmp_path, data=b"pixelz")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # other bytes, old times
    assert cache.get(ctx, path) is None


def test_archive_members_are_identified_by_archive_and_member(tmp_path):
    archive = image(tmp_path, "images.zip", b"zip bytes")
    assert file_identity(f"{archive}@x/1.jpg") != file_identity(f"{archive}@x/2.jpg")
    assert file_identity(f"{archive}@x/1.jpg").endswith("|x/1.jpg")
    assert file_identity(str(tmp_path / "missing.jpg")) is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "other-entry", "empty"])
def test_a_damaged_file_is_refused_removed_and_recomputed(tmp_path, damage, caplog):
    cache = FeatureCache(tmp_path / "cache")
    ctx = cache.context(**DESCRIPTION)
    path, other = image(tmp_path), image(tmp_path, "b.jpg", b"other")
    cache.put(ctx, path, feature(0))
    cache.put(ctx, other, feature(1))
    file = cache.path_of(ctx, cache.key(ctx, path))
    data = bytearray(file.read_bytes())
    if damage == "flip":
        data[60] ^= 0x01
    elif damage == "truncate":
        data = data[:-5]
    elif damage == "other-entry":  # a whole, valid file of another image put in its place
        data = bytearray(cache.path_of(ctx, cache.key(ctx, other)).read_bytes())
    else:
        data = bytearray()
    file.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert cache.get(ctx, path) is None
    assert cache.stats.refused == 1 and not file.exists()
    assert "damaged" in caplog.text
    cache.put(ctx, path, feature(0))  # recomputed and stored again
    assert torch.equal(cache.get(ctx, path), feature(0))


def write_many(root: str, paths: list[str], seed: int) -> int:
    cache = FeatureCache(root)
    ctx = cache.context(**DESCRIPTION)
    wrong = 0
    for _ in range(3):
        for i, path in enumerate(paths):
            got = cache.get(ctx, path)
            if got is not None and not torch.equal(got, feature(i)):
                wrong += 1
            cache.put(ctx, path, feature(i))
    return wrong


def test_concurrent_writers_and_readers_see_only_whole_files(tmp_path):
    paths = [image(tmp_path, f"{i}.jpg", bytes([i])) for i in range(40)]
    root = str(tmp_path / "cache")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        wrong = pool.starmap(write_many, [(root, paths, s) for s in range(3)])
    assert wrong == [0, 0, 0]
    cache = FeatureCache(root)
    ctx = cache.context(**DESCRIPTION)
    assert all(torch.equal(cache.get(ctx, p), feature(i)) for i, p in enumerate(paths))
    assert not [f for _, _, files in os.walk(root) for f in files if f.endswith(".tmp")]


def test_the_size_bound_stops_storing_with_one_message(tmp_path, caplog):
    cache = FeatureCache(tmp_path / "cache", max_bytes=400)
    ctx = cache.context(**DESCRIPTION)
    paths = [image(tmp_path, f"{i}.jpg", bytes([i])) for i in range(5)]
    with caplog.at_level(logging.WARNING):
        stored = [cache.put(ctx, p, feature(i)) for i, p in enumerate(paths)]
    assert stored[0] and not all(stored)
    assert caplog.text.count("stops storing") == 1 and "its limit is" in caplog.text
    assert cache.stats.not_stored == stored.count(False)


def test_a_short_disk_stops_storing(tmp_path, caplog):
    cache = FeatureCache(tmp_path / "cache", reserve_bytes=1 << 60)
    ctx = cache.context(**DESCRIPTION)
    with caplog.at_level(logging.WARNING):
        assert not cache.put(ctx, image(tmp_path), feature())
    assert "GiB free" in caplog.text and "another disk" in caplog.text


def test_the_folder_may_be_deleted_at_any_time(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    ctx = cache.context(**DESCRIPTION)
    path = image(tmp_path)
    cache.put(ctx, path, feature())
    shutil.rmtree(tmp_path / "cache")
    assert cache.get(ctx, path) is None
    assert cache.put(ctx, path, feature())
    assert torch.equal(cache.get(ctx, path), feature())
