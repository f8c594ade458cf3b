"""Ratios, targets and the printed table of a benchmark run."""

from __future__ import annotations

# trainers whose class text features train (VPT's are fixed, computed once in every mode)
TEXT_TRAINERS = ("CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC")
NO_SLOWDOWN = 0.95  # "no slowdown" allows 5% of timing noise
LOGIT_TOLERANCE = 1e-4  # relative to the largest logit: fp32 rounding through two towers


def row_line(row: dict) -> str:
    if row["kind"] == "train":
        figure = f"{row['step_s'] * 1000:9.1f} ms/step"
    else:
        figure = f"{row['images_per_s']:9.1f} images/s"
    return (f"{row['trainer']:9s} {row['precision']:4s} {row['kind']:5s} "
            f"{row['classes']:5d} classes  batch {row['batch']:3d}  {row['mode']:3s} "
            f"{figure}  peak {row['peak_mib']:8.1f} MiB")


def _index(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["trainer"], r["precision"], r["kind"], r["classes"], r["mode"]): r for r in rows}


def ratios(rows: list[dict]) -> list[dict]:
    """For every measured pair: speedup (off time / on time) and memory (on peak / off peak);
    ``cut`` rows give the speedup of cutting sequences alone, without grouping."""
    index = _index(rows)
    out = []
    for (trainer, precision, kind, classes, mode), row in index.items():
        if mode != "on" or (trainer, precision, kind, classes, "off") not in index:
            continue
        off = index[(trainer, precision, kind, classes, "off")]
        key = "step_s" if kind == "train" else "batch_s"
        entry = {"trainer": trainer, "precision": precision, "kind": kind, "classes": classes,
                 "speedup": round(off[key] / row[key], 2),
                 "memory_on_over_off": round(row["peak_mib"] / off["peak_mib"], 3)}
        cut = index.get((trainer, precision, kind, classes, "cut"))
        if cut is not None:
            entry["speedup_cut_only"] = round(off[key] / cut[key], 2)
        out.append(entry)
    return out


def _find(ratio_rows: list[dict], trainer: str, kind: str, classes: int,
          precision: str) -> dict | None:
    for r in ratio_rows:
        if (r["trainer"], r["kind"], r["classes"], r["precision"]) == (
                trainer, kind, classes, precision):
            return r
    return None


def targets(result: dict) -> list[dict]:
    """The issue's targets, checked on the first precision of the run (the official fp16 on
    CUDA, fp32 on a CPU)."""
    ratio_rows, precision = result["ratios"], result["precisions"][0]
    largest = max(result["scale"]["train_classes"])
    smallest = min(result["scale"]["train_classes"])
    eval_classes = result["scale"]["eval_classes"]
    checks = []

    def speed(name: str, trainer: str, kind: str, classes: int, goal: float) -> None:
        found = _find(ratio_rows, trainer, kind, classes, precision)
        if found is not None:
            checks.append({"target": name, "goal": f">= {goal}x", "measured": found["speedup"],
                           "met": found["speedup"] >= goal})

    speed(f"MaPLe training step, {largest} classes", "MaPLe", "train", largest, 4.0)
    speed(f"MaPLe evaluation, {eval_classes} classes", "MaPLe", "eval", eval_classes, 2.5)
    speed(f"CoCoOp training step, {largest} classes", "CoCoOp", "train", largest, 3.0)
    small = [r for r in ratio_rows if r["kind"] == "train" and r["classes"] == smallest
             and r["precision"] == precision]
    if small:
        worst = min(small, key=lambda r: r["speedup"])
        checks.append({"target": f"no slowdown at {smallest} classes (every trainer)",
                       "goal": f">= {NO_SLOWDOWN}x", "measured": worst["speedup"],
                       "worst": worst["trainer"], "met": worst["speedup"] >= NO_SLOWDOWN})
    memory = [r for r in ratio_rows if r["trainer"] in TEXT_TRAINERS and r["precision"] ==
              precision and r["classes"] in (largest, eval_classes)]
    if memory:
        worst = max(memory, key=lambda r: r["memory_on_over_off"])
        checks.append({"target": f"peak memory lower at {largest} classes (training and "
                       "evaluation, trainers with learned text prompts)", "goal": "< 1.0 on/off",
                       "measured": worst["memory_on_over_off"],
                       "worst": f"{worst['trainer']} {worst['kind']}",
                       "met": worst["memory_on_over_off"] < 1.0})
    if result["logits"]:
        worst = max(result["logits"], key=lambda r: r["max_abs_diff"] / max(r["max_abs_logit"],
                                                                            1.0))
        bound = LOGIT_TOLERANCE * max(worst["max_abs_logit"], 1.0)
        checks.append({"target": "logits equal on and off (fp32)", "goal": f"<= {bound:.2g}",
                       "measured": worst["max_abs_diff"], "worst": worst["trainer"],
                       "met": worst["max_abs_diff"] <= bound})
    return checks


def render(result: dict) -> str:
    """The table printed at the end of a run."""
    lines = [f"Benchmark on {result['machine'].get('gpu') or result['machine'].get('cpu', '?')}"
             f" ({result['machine']['device']}, torch {result['machine']['torch']}), scale "
             f"{result['scale']['name']}, {result['seconds']} s"]
    lines += [f"  scaled: {note}" for note in result["scaled"]]
    index = _index(result["results"])
    lines.append("")
    lines.append(f"{'trainer':9s} {'prec':4s} {'what':5s} {'classes':>7s} {'batch':>5s} "
                 f"{'on':>12s} {'off':>12s} {'speedup':>8s} {'cut only':>8s} "
                 f"{'MiB on':>9s} {'MiB off':>9s}")
    for r in result["ratios"]:
        on = index[(r["trainer"], r["precision"], r["kind"], r["classes"], "on")]
        off = index[(r["trainer"], r["precision"], r["kind"], r["classes"], "off")]
        if r["kind"] == "train":
            on_text, off_text = f"{on['step_s'] * 1000:.1f} ms", f"{off['step_s'] * 1000:.1f} ms"
        else:
            on_text, off_text = (f"{on['images_per_s']:.1f} im/s",
                                 f"{off['images_per_s']:.1f} im/s")
        cut = f"{r['speedup_cut_only']:.2f}x" if "speedup_cut_only" in r else ""
        lines.append(f"{r['trainer']:9s} {r['precision']:4s} {r['kind']:5s} {r['classes']:7d} "
                     f"{on['batch']:5d} {on_text:>12s} {off_text:>12s} "
                     f"{r['speedup']:7.2f}x {cut:>8s} {on['peak_mib']:9.1f} "
                     f"{off['peak_mib']:9.1f}")
    lines.append("")
    for r in result["logits"]:
        lines.append(f"logits on vs off, {r['trainer']}, {r['classes']} classes: max abs diff "
                     f"{r['max_abs_diff']:.2e} (largest logit {r['max_abs_logit']:.2f})")
    lines.append("")
    for t in result["targets"]:
        lines.append(f"[{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['measured']} "
                     f"(goal {t['goal']})")
    return "\n".join(lines)
