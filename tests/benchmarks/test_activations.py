"""The activation-memory count: exact, linear in the classes with the optimisations off, and
lower with them on."""

from __future__ import annotations

import json

import torch

from benchmarks import activations
from benchmarks.workload import TINY


def test_extrapolation_with_the_optimisations_off_is_exact():
    clip_model = TINY.build_clip()
    for name in ("MaPLe", "CoCoOp"):
        direct = activations.measure(name, TINY, clip_model, 20, off=True)
        (row,) = activations.rows([name], TINY, [20], direct_limit=10)
        assert row["off_extrapolated"] and row["off_bytes"] == direct
        assert row["on_bytes"] < row["off_bytes"]


def test_parameters_are_not_counted_and_activations_are():
    clip_model = TINY.build_clip()
    # a linear layer of the frozen model saves its input, never its (parameter) weight
    layer = clip_model.visual.proj
    x = torch.randn(3, layer.shape[0], requires_grad=True)
    saved: list[int] = []

    def pack(t):
        saved.append(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        (x @ layer).sum()
    assert layer.untyped_storage().data_ptr() in saved  # autograd does save the weight...
    cfg, trainer = activations._trainer("CoOp", TINY, clip_model, 4)
    image, label = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    params = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}
    counted = activations.saved_activation_bytes(trainer, image, label, params)
    everything = activations.saved_activation_bytes(trainer, image, label, set())
    weights = sum(p.untyped_storage().nbytes() for p in trainer.model.parameters())
    assert 0 < counted < everything <= counted + weights  # ...and the count leaves it out


def test_command_line_writes_json(tmp_path, capsys):
    out = tmp_path / "a.json"
    activations.main(["--scale", "tiny", "--trainers", "VPT,CoOp", "--classes", "4,8",
                      "--direct-limit", "4", "--out", str(out)])
    data = json.loads(out.read_text())
    assert [(r["trainer"], r["classes"], r["off_extrapolated"]) for r in data["rows"]] == [
        ("VPT", 4, False), ("VPT", 8, True), ("CoOp", 4, False), ("CoOp", 8, True)]
    assert "extrapolated" in capsys.readouterr().out
