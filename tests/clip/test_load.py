"""clip.load: names, local files (TorchScript and state dicts), download, cache, checksums."""

from __future__ import annotations

import hashlib
import http.server
import importlib
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import clip

weights = importlib.import_module("clip.load")  # the module (``clip.load`` is the function)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """A tiny CLIP's state dict as saved by torch.save: (bytes, sha256)."""
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(clip.tiny_state_dict(seed=5), path)
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


class _Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    truncated: set[str]
    requests: int = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802
        self.server.requests += 1
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # a dropped connection: the advertised length, half of the bytes
        self.wfile.write(data[:len(data) // 2] if self.path in self.server.truncated else data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.truncated = {}, set()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _publish(monkeypatch, server: _Server, data: bytes, sha: str, truncated: bool = False) -> str:
    path = f"/{sha}/tiny-remote.pt"
    server.files[path] = data
    if truncated:
        server.truncated.add(path)
    url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    _name_remote(monkeypatch, url)
    return url


def _name_remote(monkeypatch, url: str) -> None:
    """Serve the tiny CLIP as if it were one of OpenAI's models, "tiny-remote"."""
    monkeypatch.setitem(weights._MODELS, "tiny-remote", url)
    monkeypatch.setitem(clip.backbones.OPENAI, "tiny-remote", clip.tiny_backbone().arch)


def _same_model(model: clip.CLIP, seed: int = 5) -> bool:
    return all(torch.equal(a, b) for a, b in zip(
        model.state_dict().values(), clip.tiny_clip(seed=seed).state_dict().values(),
        strict=True))


def test_download_verifies_and_caches(monkeypatch, server, tiny_file, tmp_path) -> None:
    data, sha = tiny_file
    _publish(monkeypatch, server, data, sha)
    model, _ = clip.load("tiny-remote", download_root=tmp_path)
    assert _same_model(model)
    assert (tmp_path / "tiny-remote.pt").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-remote.pt"]
    clip.load("tiny-remote", download_root=tmp_path)
    assert server.requests == 1  # the second load used the cache


def test_downloads_that_run_at_once_both_succeed(monkeypatch, server, tiny_file, tmp_path):
    """Two runs that find no cached file download it together: neither may take the other's
    file from under it (each waits here until both have fetched)."""
    data, sha = tiny_file
    url = _publish(monkeypatch, server, data, sha)
    both_fetched = threading.Barrier(2, timeout=1800)
    fetch = weights._fetch

    def fetch_then_wait(*args) -> None:
        fetch(*args)
        both_fetched.wait()

    monkeypatch.setattr(weights, "_fetch", fetch_then_wait)
    results: list[object] = []

    def run() -> None:
        try:
            results.append(weights.download(url, tmp_path))
        except Exception as err:  # noqa: BLE001 (reported by the assertion below)
            results.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=1800)
    assert results == [tmp_path / "tiny-remote.pt"] * 2
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-remote.pt"]
    assert (tmp_path / "tiny-remote.pt").read_bytes() == data


def test_cache_dir_from_environment(monkeypatch, server, tiny_file, tmp_path) -> None:
    data, sha = tiny_file
    _publish(monkeypatch, server, data, sha)
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "env"))
    clip.load("tiny-remote")
    assert (tmp_path / "env" / "tiny-remote.pt").is_file()


def test_cached_file_with_wrong_checksum_is_downloaded_again(
        monkeypatch, server, tiny_file, tmp_path) -> None:
    data, sha = tiny_file
    _publish(monkeypatch, server, data, sha)
    (tmp_path / "tiny-remote.pt").write_bytes(b"not the weights")
    with pytest.warns(UserWarning, match="checksum does not match"):
        model, _ = clip.load("tiny-remote", download_root=tmp_path)
    assert _same_model(model)
    assert server.requests == 1


@pytest.mark.parametrize("truncated", [False, True])
def test_bad_download_is_reported_and_removed(
        monkeypatch, server, tiny_file, tmp_path, truncated: bool) -> None:
    data, sha = tiny_file
    if not truncated:  # the server holds another file than the one published
        data = data[:-1] + bytes([data[-1] ^ 1])
    _publish(monkeypatch, server, data, sha, truncated=truncated)
    with pytest.raises(RuntimeError, match="corrupt or truncated") as err:
        clip.load("tiny-remote", download_root=tmp_path)
    assert str(tmp_path / "tiny-remote.pt") in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_no_network_says_where_to_put_the_file(monkeypatch, tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    _name_remote(monkeypatch, f"http://127.0.0.1:{port}/{'0' * 64}/t.pt")
    with pytest.raises(RuntimeError, match="put it at") as err:
        clip.load("tiny-remote", download_root=tmp_path / "cache")
    assert str(tmp_path / "cache" / "t.pt") in str(err.value)
    assert not any((tmp_path / "cache").iterdir())


class _Archived(nn.Module):
    """A CLIP with the integer buffers of OpenAI's TorchScript archives; the same keys."""

    def __init__(self, model: clip.CLIP) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, value in (("input_resolution", 32), ("context_length", 77),
                            ("vocab_size", 49408)):
            self.register_buffer(name, torch.tensor(value))
        self._forward = model.forward  # a bound method: not a submodule

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple:
        return self._forward(image, text)


@pytest.mark.parametrize("activation", ["quick_gelu", "gelu"])
def test_torchscript_archive_round_trip(tmp_path, tokens, images, activation: str) -> None:
    """An archive describes itself: shapes as OpenAI's build_model reads them, and the
    activation from the archive's own module types."""
    model = clip.tiny_clip(seed=5, activation=activation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on the EOT position
        archive = torch.jit.trace(_Archived(model), (images, tokens), check_trace=False)
    assert "input_resolution" in archive.state_dict()
    archive.save(str(tmp_path / "archive.pt"))
    loaded, preprocess = clip.load(str(tmp_path / "archive.pt"))
    assert loaded.backbone.arch == model.backbone.arch
    assert loaded.backbone.arch.activation == activation
    assert _same_model(loaded)
    with torch.no_grad():
        assert torch.equal(loaded.encode_text(tokens), model.encode_text(tokens))
        assert torch.equal(loaded.encode_image(images), model.encode_image(images))


def test_local_state_dict_files_name_their_architecture(tmp_path, tiny_file) -> None:
    data, _ = tiny_file
    (tmp_path / "plain.pt").write_bytes(data)
    with pytest.raises(ValueError, match="bare state dict.*MODEL.BACKBONE.ARCH"):
        clip.load(str(tmp_path / "plain.pt"))
    loaded = clip.load(str(tmp_path / "plain.pt"), arch="tiny")[0]
    assert _same_model(loaded)
    assert loaded.backbone.name == f"{tmp_path / 'plain.pt'} as tiny"
    torch.save({"state_dict": clip.tiny_state_dict(seed=5)}, tmp_path / "nested.pt")
    assert _same_model(clip.load(str(tmp_path / "nested.pt"), arch="tiny")[0])
    with pytest.raises(RuntimeError, match="do not fit the architecture of .* as tiny-resnet"):
        clip.load(str(tmp_path / "nested.pt"), arch="tiny-resnet")
    with pytest.raises(ValueError, match="names no architecture"):
        clip.load(str(tmp_path / "nested.pt"), arch="ViT-B/17")
    with pytest.raises(ValueError, match="leave ARCH empty"):
        clip.load("tiny", arch="tiny")
    (tmp_path / "broken.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError, match="may be truncated"):
        clip.load(str(tmp_path / "broken.pt"), arch="tiny")


def test_tiny_by_name_and_preprocess() -> None:
    model, preprocess = clip.load("tiny")
    assert "tiny" in clip.available_models()
    assert not model.training and model.dtype == torch.float32
    image = Image.new("L", (50, 40), color=128)  # grey, not square, not RGB
    pixels = preprocess(image)
    assert pixels.shape == (3, 32, 32)
    expected = (128 / 255 - torch.tensor(weights.MEAN)) / torch.tensor(weights.STD)
    torch.testing.assert_close(pixels[:, 16, 16], expected)


def test_bad_names_and_jit() -> None:
    with pytest.raises(RuntimeError, match="ViT-B/16"):
        clip.load("ViT-B/17")
    with pytest.raises(NotImplementedError, match="jit=False"):
        clip.load("tiny", jit=True)


def test_model_table_has_openai_names_and_checksums() -> None:
    names = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16",
             "ViT-L/14", "ViT-L/14@336px"]
    assert clip.available_models()[:len(names)] == names
    for name in names:
        url = weights._MODELS[name]
        sha, file = url.split("/")[-2:]
        assert url.startswith("https://openaipublic.azureedge.net/clip/models/")
        assert len(sha) == 64 and int(sha, 16) >= 0
        assert file == name.replace("/", "-").replace("@336px", "-336px") + ".pt"


def test_default_cache_is_openais(monkeypatch) -> None:
    monkeypatch.delenv("CLIP_CACHE_DIR", raising=False)
    assert clip.default_cache_dir() == Path.home() / ".cache" / "clip"
