"""Crafted checkpoints: bounded rendering, BUILD that hides a dict's methods, damaged zip
headers, non-finite optimizer state."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict

import pytest
import torch

import engine.checkpoint as ckpt
from engine.checkpoint import describe_value, load_checkpoint, save_checkpoint
from engine.checkpoint_checks import check_meta, check_training_checkpoint
from engine.errors import CheckpointError


class _Tripwire:
    """Fails the test if anything renders it: a bounded renderer never gets this deep."""

    def __repr__(self) -> str:
        raise AssertionError("an untrusted value was walked to its bottom")


def _bomb(levels: int, bottom: object) -> list:
    """40 levels of ``[l] * 10``: a few hundred bytes pickled, 10**40 items rendered."""
    value: list = [bottom]
    for _ in range(levels):
        value = [value] * 10
    return value


def test_a_reference_bomb_is_described_not_walked(tmp_path) -> None:
    bomb = _bomb(40, _Tripwire())
    assert describe_value(bomb) == "a list (10 items)"
    checkpoint = {"state_dict": {"w": torch.zeros(2)}, "epoch": 1, "optimizer": bomb}
    with pytest.raises(CheckpointError, match=r"'optimizer' is a list \(10 items\)"):
        check_training_checkpoint(checkpoint, "x.pth")
    with pytest.raises(CheckpointError, match=r"entry \(.*\) is a list \(10 items\)"):
        check_training_checkpoint({"state_dict": {(1, 2): bomb}}, "x.pth")
    # the same from a file: torch's pickle memo keeps it small on disk
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 1, "optimizer": _bomb(40, 0)},
               tmp_path / "bomb.pth")
    with pytest.raises(CheckpointError, match="bomb.pth: its 'optimizer' is a list"):
        check_training_checkpoint(load_checkpoint(str(tmp_path / "bomb.pth")), "bomb.pth")


def test_huge_scalars_are_cut() -> None:
    assert len(describe_value("x" * 10**6)) < 100
    assert "bits" in describe_value(10 ** 5000)
    assert describe_value(torch.zeros(2, 3)) == "a Tensor (shape [2, 3], torch.float32)"


def _shadowed(tmp_path, method: str) -> str:
    """A checkpoint whose state dict (an OrderedDict of NaN) is given an ``items``
    attribute by pickle's BUILD: ``builtins.list`` or (patched in) ``torch.optim.SGD``."""
    state = OrderedDict(prompt=torch.full((1024,), float("nan")))
    state.items = list  # type: ignore[method-assign]
    buffer = io.BytesIO()
    torch.save({"state_dict": state, "epoch": 1}, buffer)
    with zipfile.ZipFile(buffer) as src:
        files = {n: src.read(n) for n in src.namelist()}
    if method == "SGD":
        name = next(n for n in files if n.endswith("data.pkl"))
        assert b"c__builtin__\nlist\n" in files[name]
        files[name] = files[name].replace(b"c__builtin__\nlist\n", b"ctorch.optim.sgd\nSGD\n")
    path = tmp_path / "shadow.pth"
    with zipfile.ZipFile(path, "w") as dst:
        for n, data in files.items():
            dst.writestr(n, data)
    return str(path)


@pytest.mark.parametrize("method", ["list", "SGD"])
def test_build_that_hides_a_dict_method_is_refused(tmp_path, method) -> None:
    path = _shadowed(tmp_path, method)
    with pytest.raises(pickle.UnpicklingError, match="shadow.pth: Refusing to set the state of a "
                                                     "OrderedDict"):
        load_checkpoint(path)


def test_loaded_dicts_with_hiding_attributes_are_refused(tmp_path) -> None:
    """Whatever unpickler made it, a dict whose attribute hides a method is refused."""
    state = OrderedDict(prompt=torch.zeros(2))
    state.values = list  # type: ignore[method-assign]
    (tmp_path / "f.pth").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="hides one of its methods"):
        ckpt._check_expansion({"state_dict": state}, str(tmp_path / "f.pth"))
    state = OrderedDict(prompt=torch.zeros(2))
    state._metadata = {"": {"version": 1}}  # what torch's state dicts carry: fine
    ckpt._check_expansion({"state_dict": state}, str(tmp_path / "f.pth"))


def test_a_flipped_bit_in_a_record_name_is_a_checkpoint_error(tmp_path) -> None:
    good = save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "epoch": 1},
                           str(tmp_path / "run"))
    data = bytearray(open(good, "rb").read())
    name = data.rfind(b"/data.pkl")  # the central directory's copy of the name
    data[name + 2] ^= 0x80  # no longer UTF-8, which the record's flags promise
    bad = tmp_path / "flipped.pth"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.pth is a damaged zip archive") as err:
        load_checkpoint(str(bad))
    assert "\n" not in str(err.value)


def test_non_finite_optimizer_state_is_refused() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    param.grad = torch.ones(3)
    optimizer.step()
    state = optimizer.state_dict()
    check_training_checkpoint({"state_dict": {"p": param.detach()}, "optimizer": state}, "ok")
    state["state"][0]["momentum_buffer"][1] = float("nan")
    with pytest.raises(CheckpointError, match=r"x.pth: optimizer state 0 'momentum_buffer' "
                                              r"holds 1 NaN"):
        check_training_checkpoint({"state_dict": {"p": param.detach()}, "optimizer": state},
                                  "x.pth")


def test_renderers_are_public() -> None:
    assert ckpt.brief([0.5, "a"]) == "[0.5, 'a']"
    assert ckpt.brief(_bomb(3, 0)) == "a list (10 items)"


def test_malformed_meta_is_a_checkpoint_error() -> None:
    current = {"backbone": {"name": "ViT-B/16"}, "config": {"N_CTX": 4}}
    with pytest.raises(CheckpointError, match=r"x.pth: its meta 'backbone' is a list"):
        check_meta({"backbone": ["ViT-B/16"]}, current, "x.pth", resuming=False)
    with pytest.raises(CheckpointError, match=r"its meta 'config' is a str"):
        check_meta({"config": "N_CTX 4"}, current, "x.pth", resuming=False)
    bomb = {"config": {"N_CTX": _bomb(40, _Tripwire())}}
    with pytest.raises(CheckpointError, match=r"N_CTX is a list \(10 items\) in the checkpoint"):
        check_meta(bomb, current, "x.pth", resuming=False)
