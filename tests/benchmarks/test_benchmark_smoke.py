"""The benchmark runs end to end in its tiny mode and writes the figures it promises."""

from __future__ import annotations

import json

import pytest

from benchmarks import report, run
from benchmarks.workload import CPU, FULL, class_names


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    returned = run.main(["--tiny", "--trainers", "CoCoOp,MaPLe", "--classes", "3,12",
                         "--eval-classes", "12", "--out", str(out)])
    return returned, json.loads(out.read_text())


def test_json_holds_every_figure(result):
    returned, written = result
    assert written["ratios"] == returned["ratios"]
    assert written["trainers"] == ["CoCoOp", "MaPLe"] and written["precisions"] == ["fp32"]
    assert written["scale"]["name"] == "tiny" and written["scaled"]
    assert {"platform", "torch", "device"} <= set(written["machine"])
    rows = {(r["trainer"], r["kind"], r["classes"], r["mode"]): r for r in written["results"]}
    for trainer in ("CoCoOp", "MaPLe"):
        for classes in (3, 12):
            for mode in ("on", "off"):
                row = rows[(trainer, "train", classes, mode)]
                assert row["step_s"] > 0 and row["peak_mib"] > 0
        assert (trainer, "train", 12, "cut") in rows  # cut-only at the largest class count
        for mode in ("on", "off"):
            row = rows[(trainer, "eval", 12, mode)]
            assert row["images_per_s"] > 0 and row["batch"] == (2 if trainer == "CoCoOp" else 4)
    batches = {r["trainer"]: r["batch"] for r in written["results"] if r["kind"] == "train"}
    assert batches == {"CoCoOp": 1, "MaPLe": 4}  # official batch sizes (MaPLe's under the cap)


def test_logits_equal_and_targets_reported(result):
    _, written = result
    assert [r["trainer"] for r in written["logits"]] == ["CoCoOp", "MaPLe"]
    for r in written["logits"]:
        assert r["max_abs_diff"] < 1e-4 * max(r["max_abs_logit"], 1.0)
    names = " ".join(t["target"] for t in written["targets"])
    for words in ("MaPLe training step", "MaPLe evaluation", "CoCoOp training step",
                  "no slowdown", "peak memory", "logits equal"):
        assert words in names
    assert all(isinstance(t["met"], bool) for t in written["targets"])
    logits_check = [t for t in written["targets"] if t["target"].startswith("logits")]
    assert logits_check[0]["met"]


def test_ratios_are_off_over_on():
    rows = [{"trainer": "MaPLe", "precision": "fp32", "kind": "train", "classes": 10,
             "batch": 4, "mode": mode, "step_s": s, "peak_mib": m}
            for mode, s, m in (("on", 0.5, 100.0), ("off", 2.0, 200.0), ("cut", 1.0, 150.0))]
    (ratio,) = report.ratios(rows)
    assert ratio["speedup"] == 4.0 and ratio["speedup_cut_only"] == 2.0
    assert ratio["memory_on_over_off"] == 0.5


def test_workload_is_vit_b16_with_imagenet_names():
    model_sizes = (FULL.text_width, FULL.vision_width, FULL.text_layers, FULL.vision_layers,
                   FULL.image_resolution, FULL.patch_size)
    assert model_sizes == (512, 768, 12, 12, 224, 16)
    assert FULL.train_classes == CPU.train_classes == (10, 100, 1000)
    names = class_names(1000)
    assert len(names) == 1000 and len(set(names)) > 990 and "goldfish" in names
    assert class_names(10)[0] == "tench" and len(class_names(1500)) == 1500


def test_modes_warmup_and_min_seconds_choose_what_runs(tmp_path):
    """``--modes on`` times the optimised path alone (no ratios then), and ``--warmup`` /
    ``--min-seconds`` reach the scale; an unknown mode is refused."""
    out = run.main(["--tiny", "--trainers", "CoOp", "--classes", "3", "--eval-classes", "3",
                    "--modes", "on", "--warmup", "0", "--repeat", "1", "--min-seconds", "0",
                    "--no-eval"])
    assert {(r["kind"], r["mode"]) for r in out["results"]} == {("train", "on")}
    assert out["results"][0]["steps"] == 1 and out["ratios"] == []
    assert out["scale"]["warmup"] == 0 and out["scale"]["min_seconds"] == 0
    with pytest.raises(SystemExit, match="on, off, cut"):
        run.main(["--tiny", "--trainers", "CoOp", "--modes", "fast"])
