"""python -m datasets.fetch against a local server (--mirror): archives fetched, recorded,
unpacked into the readers' layout that datasets.check accepts, resumed runs that redo nothing,
and archives that would write outside their target, or hold links, refused."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from datasets.fetch import main
from engine.fetch import Records, UnsafeArchive, unpack
from tests.datasets.elevater_layouts import write_task
from tests.datasets.layouts import build_fgvc_aircraft, build_split_file_dataset
from tests.http_server import serve


def zip_folder(folder: Path, arc_root: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{arc_root}/{path.relative_to(folder)}")
    return buffer.getvalue()


def tar_folder(folder: Path, arc_root: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        tf.add(folder, arcname=arc_root)
    return buffer.getvalue()


def served(mirror: Path, name: str, files: dict[str, bytes]) -> None:
    (mirror / name).mkdir(parents=True, exist_ok=True)
    for file, data in files.items():
        (mirror / name / file).write_bytes(data)


@pytest.fixture
def eurosat_mirror(tmp_path):
    """EuroSAT as its sources give it: EuroSAT.zip holding 2750/<class>/..., the split file."""
    staging = tmp_path / "staging"
    build_split_file_dataset(str(staging), "EuroSAT", "eurosat", "2750")
    mirror = tmp_path / "mirror"
    served(mirror, "EuroSAT", {
        "EuroSAT.zip": zip_folder(staging / "eurosat" / "2750", "2750"),
        "split_zhou_EuroSAT.json": (staging / "eurosat" / "split_zhou_EuroSAT.json").read_bytes()})
    return mirror


def test_fetch_unpacks_into_the_layout_that_check_accepts(eurosat_mirror, tmp_path, capsys):
    root = tmp_path / "data"
    with serve(eurosat_mirror) as server:
        assert main(["eurosat", "--root", str(root), "--mirror", server.url]) == 0
        out = capsys.readouterr().out
        assert "EuroSAT: fetched into" in out
        report = out.split("Datasets under", 1)[1]
        line = next(x for x in report.splitlines() if "EuroSAT" in x)
        assert " ok " in f"{line} ", report
        assert (root / "eurosat" / "2750" / "AnnualCrop" / "AnnualCrop_0.jpg").is_file()
        assert (root / "eurosat" / "split_zhou_EuroSAT.json").is_file()
        assert not (root / ".downloads" / "EuroSAT" / "EuroSAT.zip").exists()  # unpacked, removed
        records = Records(root / ".downloads" / "records.json").load()
        zip_bytes = (eurosat_mirror / "EuroSAT" / "EuroSAT.zip").read_bytes()
        assert records["EuroSAT/EuroSAT.zip"]["size"] == len(zip_bytes)
        # a second run finds everything done: the archive is not fetched again
        before = len(server.requests)
        assert main(["EuroSAT", "--root", str(root), "--mirror", server.url]) == 0
        assert len(server.requests) == before


def test_a_part_of_a_tar_archive_lands_under_its_reader_folder(tmp_path, capsys):
    """FGVCAircraft: the archive's fgvc-aircraft-2013b/data/ becomes ROOT/fgvc_aircraft/."""
    staging = tmp_path / "staging"
    build_fgvc_aircraft(str(staging))
    mirror = tmp_path / "mirror"
    served(mirror, "FGVCAircraft", {"fgvc-aircraft-2013b.tar.gz": tar_folder(
        staging / "fgvc_aircraft", "fgvc-aircraft-2013b/data")})
    root = tmp_path / "data"
    with serve(mirror) as server:
        assert main(["FGVCAircraft", "--root", str(root), "--mirror", server.url,
                     "--keep-archives"]) == 0
    assert (root / "fgvc_aircraft" / "variants.txt").is_file()
    assert sorted(p.name for p in root.iterdir()) == [".downloads", "fgvc_aircraft"]
    assert (root / ".downloads" / "FGVCAircraft" / "fgvc-aircraft-2013b.tar.gz").is_file()
    report = capsys.readouterr().out.split("Datasets under", 1)[1]
    line = next(x for x in report.splitlines() if "FGVCAircraft" in x)
    assert " ok " in f"{line} ", report


def test_an_elevater_task_is_fetched_as_its_toolkit_lays_it_out(tmp_path, capsys):
    staging = tmp_path / "staging"
    folder = Path(write_task(str(staging), "cifar-10"))
    mirror = tmp_path / "mirror"
    served(mirror, "cifar-10", {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})
    root = tmp_path / "data"
    with serve(mirror) as server:
        assert main(["cifar-10", "--root", str(root), "--mirror", server.url]) == 0
    assert sorted(p.name for p in (root / "classification" / folder.name).iterdir()) == \
        sorted(p.name for p in folder.iterdir() if p.is_file())
    report = capsys.readouterr().out.split("Datasets under", 1)[1]
    line = next(x for x in report.splitlines() if "cifar-10" in x)
    assert " ok " in f"{line} ", report


def test_a_malicious_archive_is_refused_in_one_line(tmp_path, capsys):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("2750/AnnualCrop/a.jpg", b"x")
        zf.writestr("../../escaped.txt", b"owned")
    mirror = tmp_path / "mirror"
    served(mirror, "EuroSAT", {"EuroSAT.zip": buffer.getvalue(),
                               "split_zhou_EuroSAT.json": b"{}"})
    root = tmp_path / "data"
    with serve(mirror) as server:
        assert main(["EuroSAT", "--root", str(root), "--mirror", server.url, "--no-check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'../../escaped.txt' would be written outside" in err
    assert not list(tmp_path.rglob("escaped.txt")) and not (root / "eurosat" / "2750").exists()


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        ok = tarfile.TarInfo("fine/file.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        tf.addfile(member, io.BytesIO(data) if data else None)
    return buffer


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "absolute", "dotdot", "zip-symlink"])
def test_unpack_refuses_links_and_escapes_before_writing_anything(tmp_path, kind):
    archive, target = tmp_path / "a.archive", tmp_path / "target"
    if kind == "zip-symlink":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr("fine/file.txt", b"ok")
            link = zipfile.ZipInfo("fine/link")
            link.external_attr = (0o120777 << 16)
            zf.writestr(link, "/etc/passwd")
        archive.write_bytes(buffer.getvalue())
    else:
        member = tarfile.TarInfo({"symlink": "fine/link", "hardlink": "fine/hard",
                                  "absolute": "/tmp/abs.txt", "dotdot": "fine/../../up.txt"}[kind])
        if kind == "symlink":
            member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            member.type, member.linkname = tarfile.LNKTYPE, "fine/file.txt"
        else:
            member.size = 1
        archive.write_bytes(_tar_with(member, b"x" if member.size else b"").getvalue())
    with pytest.raises(UnsafeArchive, match="refused"):
        unpack(archive, target)
    assert not target.exists() or list(target.iterdir()) == []
    assert not (tmp_path / "up.txt").exists()


def test_unpack_moves_in_whole_and_merges_folders(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/new.txt", b"new")
    target = tmp_path / "target"
    (target / "top").mkdir(parents=True)
    (target / "top" / "old.txt").write_text("old")
    unpack(archive, target)
    assert sorted(os.listdir(target / "top")) == ["new.txt", "old.txt"]
    assert sorted(os.listdir(target)) == ["top"]  # no staging folder left
    shutil.rmtree(target)


def test_an_unreachable_file_ends_in_one_line_and_a_file_put_there_by_hand_is_used(
        eurosat_mirror, tmp_path, capsys):
    root = tmp_path / "data"
    with serve(tmp_path / "nothing") as server:  # 404 for every file
        assert main(["EuroSAT", "--root", str(root), "--mirror", server.url, "--retries", "0",
                     "--no-check"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        place = root / ".downloads" / "EuroSAT" / "EuroSAT.zip"
        assert f"{server.url}/EuroSAT/EuroSAT.zip" in err and f"by hand (a browser) to {place}" \
            in err
    shutil.copy(eurosat_mirror / "EuroSAT" / "EuroSAT.zip", place)
    (root / "eurosat").mkdir()
    shutil.copy(eurosat_mirror / "EuroSAT" / "split_zhou_EuroSAT.json", root / "eurosat")
    assert main(["EuroSAT", "--root", str(root), "--retries", "0"]) == 0  # no address needed
    assert (root / "eurosat" / "2750" / "Highway").is_dir()


def test_the_sources_match_the_readers_table():
    """Every benchmark and ELEVATER task has a source landing where its reader looks, and the
    split files come from the addresses the readers name."""
    from datasets.benchmarks import ALL_BENCHMARKS, SPLIT_FILE_BENCHMARKS
    from datasets.elevater_tasks import ELEVATER_TASKS
    from datasets.fetch import COOP_SOURCES, ELEVATER_SOURCES

    assert {s.name: s.folder for s in COOP_SOURCES} == \
        {b.name: b.folder for b in ALL_BENCHMARKS}
    by_name = {s.name: s for s in COOP_SOURCES}
    for bench in SPLIT_FILE_BENCHMARKS:
        (step,) = [st for st in by_name[bench.name].steps
                   if st.file == f"{bench.folder}/{bench.split_file}"]
        file_id = bench.split_url.split("/d/")[1].split("/")[0]
        assert step.url == f"https://drive.google.com/uc?id={file_id}"
    for task, source in zip(ELEVATER_TASKS, ELEVATER_SOURCES, strict=True):
        needed = {task.train_index, task.test_index, *task.train_archives, *task.test_archives}
        needed |= {task.labelmap} if task.labelmap else set()
        assert {st.file for st in source.steps} == {f"{task.folder}/{f}" for f in needed}
