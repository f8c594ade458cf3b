"""Checkpoint round trip, atomic writes, official files, refusal of code-running pickles."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import pytest
import torch

import engine.checkpoint as ckpt
from engine.checkpoint import InertObject, load_checkpoint, save_checkpoint

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _state(epoch: int, value: float) -> dict:
    return {"state_dict": {"w": torch.full((3, 2), value)}, "epoch": epoch, "optimizer": None,
            "scheduler": {"last_epoch": epoch, "base_lrs": [0.1]}, "val_result": None}


def test_round_trip_pointer_and_best(tmp_path):
    path = save_checkpoint(_state(3, 1.5), str(tmp_path), is_best=True)
    assert path == str(tmp_path / "model.pth.tar-3")
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["state_dict"]["w"], torch.full((3, 2), 1.5))
    assert loaded["scheduler"] == {"last_epoch": 3, "base_lrs": [0.1]}
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-3\n"
    assert load_checkpoint(str(tmp_path / "model-best.pth.tar"))["epoch"] == 3
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-3"]


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch):
    save_checkpoint(_state(1, 1.0), str(tmp_path), model_name="model.pth.tar-1")
    before = (tmp_path / "model.pth.tar-1").read_bytes()

    def crash(state, f):
        f.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ckpt, "_write_payload", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_state(1, 2.0), str(tmp_path), model_name="model.pth.tar-1")
    assert (tmp_path / "model.pth.tar-1").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.pth.tar-1"]  # no temporary file left


def test_pointer_not_moved_when_epoch_save_fails(tmp_path, monkeypatch):
    save_checkpoint(_state(1, 1.0), str(tmp_path))
    monkeypatch.setattr(ckpt, "_write_payload", lambda s, f: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        save_checkpoint(_state(2, 1.0), str(tmp_path))
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-1\n"


def test_objects_are_refused_at_save(tmp_path):
    state = _state(1, 1.0)
    state["scheduler"] = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match=r"checkpoint\['scheduler'\] holds a torch.optim.sgd.SGD"):
        save_checkpoint(state, str(tmp_path))


@pytest.mark.parametrize("name, shapes", [
    ("coop_model.pth.tar-1", {"ctx": (16, 512), "token_prefix": (10, 1, 512),
                              "token_suffix": (10, 60, 512)}),
    ("cocoop_model.pth.tar-1", {"ctx": (4, 512), "token_prefix": (10, 1, 512),
                                "token_suffix": (10, 72, 512),
                                "meta_net.linear1.weight": (32, 512),
                                "meta_net.linear1.bias": (32,),
                                "meta_net.linear2.weight": (512, 32),
                                "meta_net.linear2.bias": (512,)}),
])
def test_official_checkpoints_load_with_inert_scheduler(name, shapes):
    with pytest.raises(pickle.UnpicklingError):
        torch.load(os.path.join(FIXTURES, name), weights_only=True)
    checkpoint = load_checkpoint(os.path.join(FIXTURES, name))
    assert checkpoint["epoch"] == 1
    assert {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()} == shapes
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all()
               for v in checkpoint["state_dict"].values())
    successor = checkpoint["scheduler"]["successor"]
    assert isinstance(successor, InertObject) and successor.name == "CosineAnnealingLR"
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.002)


class _Cosine(torch.optim.lr_scheduler.CosineAnnealingLR):
    pass


def test_restricted_reader_rebuilds_tensors_exactly(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    payload = {"state_dict": {"a": base, "view": base[1:, ::2], "half": base.half() / 7,
                              "long": torch.tensor([1, -2, 3]), "scalar": torch.tensor(2.5)},
               "scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, 5.0), "epoch": 2}
    torch.save(payload, tmp_path / "f.pth")
    loaded = ckpt.load_foreign_checkpoint(str(tmp_path / "f.pth"))
    for key, value in payload["state_dict"].items():
        assert loaded["state_dict"][key].dtype == value.dtype
        assert torch.equal(loaded["state_dict"][key], value), key
    assert isinstance(loaded["scheduler"], InertObject) and loaded["epoch"] == 2


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip_checkpoint(path: str, obj: object) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.namelist():
            dst.writestr(item, src.read(item))


@pytest.mark.parametrize("payload", ["reduce", "eval"])
def test_code_running_checkpoint_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "evil.pth")
    if payload == "reduce":
        _zip_checkpoint(path, {"state_dict": {}, "scheduler": _Evil(str(marker))})
    else:
        _zip_checkpoint(path, {"state_dict": {"w": torch.zeros(1)}})
        with zipfile.ZipFile(path) as z:
            files = {n: z.read(n) for n in z.namelist()}
        pkl = next(n for n in files if n.endswith("data.pkl"))
        code = f"open('{marker}','w')".encode()
        files[pkl] = (b"\x80\x02cbuiltins\neval\n(X" + len(code).to_bytes(4, "little") + code
                      + b"tR.")
        with zipfile.ZipFile(path, "w") as z:
            for n, data in files.items():
                z.writestr(n, data)
    with pytest.raises(pickle.UnpicklingError, match="Refusing to load global"):
        load_checkpoint(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- damaged files


def _record_offset(path: str, suffix: str) -> int:
    """Where the bytes of the zip record ending with ``suffix`` start in the file."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(suffix))
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + name_len + extra_len


def test_damaged_files_are_named_and_explained(tmp_path):
    good = save_checkpoint(_state(2, 0.5), str(tmp_path / "ok"))
    data = bytearray(open(good, "rb").read())
    flipped = bytearray(data)
    flipped[_record_offset(good, "data/0") + 5] ^= 0x10  # one bit of the tensor's bytes
    cases = {"flipped": (bytes(flipped), "checksum of its record .*data/0 does not match"),
             "empty": (b"", r"is empty \(0 bytes\)"),
             "truncated": (bytes(data[:len(data) // 2]), "is truncated"),
             "text": (b"version https://git-lfs.github.com/spec/v1\n", "is a text file")}
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ckpt.CheckpointError, match=message) as error:
            load_checkpoint(str(path))
        assert str(error.value).startswith(str(path))


def test_expanding_files_are_refused(tmp_path):
    # a zero-stride view: 40 bytes on disk, 4 MiB once copied
    torch.save({"state_dict": {"w": torch.zeros(10).as_strided((1 << 20,), (0,))}},
               tmp_path / "strided.pth")
    with pytest.raises(ckpt.CheckpointError, match="more than .* bytes"):
        load_checkpoint(str(tmp_path / "strided.pth"))
    # a compressed record (torch never writes one): a few KB that inflate to 4 MiB
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(1 << 20)}}, buffer)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(tmp_path / "packed.pth", "w",
                                                         zipfile.ZIP_DEFLATED) as dst:
        for item in src.namelist():
            dst.writestr(item, src.read(item))
    with pytest.raises(ckpt.CheckpointError, match="compressed records"):
        load_checkpoint(str(tmp_path / "packed.pth"))


def test_build_on_the_loaders_functions_is_refused(tmp_path):
    """pickle's BUILD on a global would set attributes of the loader's own function for the
    rest of the process."""
    path = str(tmp_path / "build.pth")
    _zip_checkpoint(path, {"state_dict": {"w": torch.zeros(1)}})
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in files if n.endswith("data.pkl"))
    files[pkl] = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x08\x00\x00\x00injectedK\x01sb.")
    with zipfile.ZipFile(path, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    with pytest.raises(pickle.UnpicklingError, match="Refusing to set the state of a function"):
        load_checkpoint(path)
    assert not hasattr(ckpt._rebuild_tensor, "injected")


def test_pointer_must_name_a_file_of_its_folder(tmp_path):
    (tmp_path / "checkpoint").write_text("../other_run/model.pth.tar-9\n")
    with pytest.raises(ckpt.CheckpointError, match="not a file of its own folder"):
        ckpt.latest_checkpoint_path(str(tmp_path))


def test_files_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(_state(1, 1.0), str(tmp_path))
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "checkpoint").st_mode & 0o777 == 0o644


def test_resume_file_is_replaced_and_dropped_once_an_epoch_file_exists(tmp_path):
    ckpt.save_resume_checkpoint(_state(1, 1.0), str(tmp_path))
    ckpt.save_resume_checkpoint(_state(2, 2.0), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model-resume.pth.tar"]
    assert load_checkpoint(ckpt.latest_checkpoint_path(str(tmp_path)))["epoch"] == 2
    save_checkpoint(_state(3, 3.0), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.pth.tar-3"]


def test_stale_temporaries_are_removed(tmp_path):
    model_dir = tmp_path / "prompt_learner"
    model_dir.mkdir()
    stale = [model_dir / ".model.pth.tar-3.k2j4h5g6.tmp",
             tmp_path / ".checkpoint.0a1b2c3d4e5f.tmp"]
    for path in stale:
        path.write_bytes(b"PK half")
    keep = [model_dir / "model.pth.tar-2", tmp_path / ".hidden.tmp", tmp_path / "notes.tmp"]
    for path in keep:
        path.write_bytes(b"x")
    assert sorted(ckpt.remove_stale_temporaries(str(tmp_path))) == sorted(map(str, stale))
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
