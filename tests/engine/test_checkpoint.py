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
