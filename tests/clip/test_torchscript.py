"""TorchScript archives are read as data: a scripted payload never runs, tensors still load."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import clip
from clip.torchscript import ArchiveError, read_archive

from .open_clip_models import TINY_CONFIG, TINY_PREPROCESS, hub_config
from .test_load import _Archived

_LIBRARY = torch.library.Library("trust_canary_test", "DEF")
_LIBRARY.define("touch(str path) -> Tensor")


def _touch(path: str) -> torch.Tensor:
    Path(path).write_text("the archive's code ran")
    return torch.zeros(())


_LIBRARY.impl("touch", _touch, "CompositeExplicitAutograd")


class _Payload(nn.Module):
    """A module whose TorchScript ``__setstate__`` writes a file (through an op of this
    process) when ``torch.jit.load`` reads it."""

    def __init__(self, canary: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.canary = canary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.weight, self.canary, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        self.weight = state[0] + torch.ops.trust_canary_test.touch(state[1])
        self.canary = state[1]
        self.training = state[2]


def _payload_archive(path: Path, canary: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_Payload(str(canary))).save(str(path))
    return path


def test_the_payload_runs_under_torch_jit_load(tmp_path) -> None:
    """The crafted archive is a real attack: torch.jit.load runs it."""
    archive = _payload_archive(tmp_path / "evil.pt", tmp_path / "canary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(archive))
    assert (tmp_path / "canary").exists()


def test_scripted_setstate_never_runs(tmp_path) -> None:
    canary = tmp_path / "canary"
    archive = _payload_archive(tmp_path / "evil.pt", canary)
    with pytest.raises(ArchiveError, match=r"evil.pt as a TorchScript archive: .*__setstate__"):
        clip.load(str(archive))
    with pytest.raises(ArchiveError, match="__setstate__"):
        clip.load(str(archive), arch="tiny")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "open_clip_config.json").write_bytes(hub_config(TINY_CONFIG, TINY_PREPROCESS))
    (folder / "pytorch_model.bin").write_bytes(archive.read_bytes())
    with pytest.raises(ArchiveError, match="__setstate__"):
        clip.load(str(folder))
    assert not canary.exists()


def _rewrite_pickle(source: Path, target: Path, data_pkl: bytes) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            payload = data_pkl if info.filename.endswith("/data.pkl") else old.read(info)
            new.writestr(info.filename, payload)
    return target


class _System:
    def __reduce__(self) -> tuple:
        import os

        return (os.system, ("touch canary",))


def test_other_globals_and_builds_are_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    archive = _payload_archive(tmp_path / "evil.pt", tmp_path / "canary")
    crafted = _rewrite_pickle(archive, tmp_path / "system.pt", pickle.dumps(_System(), 2))
    with pytest.raises(ArchiveError, match=r"system.pt .*global 'posix.system'"):
        read_archive(crafted)
    # OrderedDict() then BUILD {"items": 1}: state set on an object that is not a module
    built = b"\x80\x02ccollections\nOrderedDict\n)R}X\x05\x00\x00\x00itemsK\x01sb."
    crafted = _rewrite_pickle(archive, tmp_path / "build.pt", built)
    with pytest.raises(ArchiveError, match=r"build.pt .*state of a OrderedDict"):
        read_archive(crafted)
    assert not (tmp_path / "canary").exists()


def test_state_dict_and_module_classes_equal_torch_jit_load(tmp_path, tokens, images) -> None:
    """On an archive this test made itself, the reader gives what torch.jit.load gives."""
    model = clip.tiny_clip(seed=3, activation="gelu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_Archived(model), (images, tokens), check_trace=False)
        traced.save(str(tmp_path / "archive.pt"))
        reference = torch.jit.load(str(tmp_path / "archive.pt"))
    read = read_archive(tmp_path / "archive.pt")
    expected = reference.state_dict()
    assert list(read.state_dict) == list(expected)
    assert all(torch.equal(read.state_dict[k], v) for k, v in expected.items())
    assert read.modules == {name: m.original_name for name, m in reference.named_modules()}
    loaded = clip.load(str(tmp_path / "archive.pt"))[0]
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), model.encode_image(images))
