"""The ELEVATER table from run folders with ELEVATER result blocks: single-task and joint runs,
means over seeds, the Average column, the published rows, the CSV and the plot."""

from __future__ import annotations

import csv
from pathlib import Path

from scripts import results
from scripts.elevater_results import TASKS, elevater_tables, parse_blocks

METRIC = {"caltech-101": "mean-per-class", "voc-2007-classification": "11point_mAP"}


def block(task: str, value: float) -> str:
    return f"=> result\n* task: {task}\n* total: 10\n* {METRIC.get(task, 'accuracy')}: " \
           f"{value:.2f}%\n"


def write_log(run_dir: Path, final: dict[str, float], during: float = 1.0) -> None:
    """A log with a validation block during training (to be ignored) and the final blocks."""
    run_dir.mkdir(parents=True)
    text = "epoch [1/2]\n" + "".join(block(task, during) for task in final)
    text += "Finish training\n" + "".join(block(task, v) for task, v in final.items())
    if len(final) > 1:
        text += f"=> result\n* tasks: {len(final)}\n* average: 0.00%\n"
    (run_dir / "log.txt").write_text(text)


def make_tree(root: Path) -> None:
    tag = Path("UPT", "vit_b16_5shots", "nctx4_csc_ctp")
    for seed, shift in ((1, 0.0), (2, 2.0)):
        write_log(root / "elevater" / "mnist" / tag / f"seed{seed}", {"mnist": 80.0 + shift})
        write_log(root / "elevater" / "caltech-101" / tag / f"seed{seed}",
                  {"caltech-101": 90.0 - shift})
    write_log(root / "elevater" / "voc-2007-classification" / tag / "seed1",
              {"voc-2007-classification": 70.0})
    joint = {task: float(i) for i, task in enumerate(TASKS)}
    write_log(root / "elevater_mt" / tag / "seed1", joint)


def test_blocks_after_training_only(tmp_path):
    write_log(tmp_path / "run", {"mnist": 55.5, "caltech-101": 66.25})
    assert parse_blocks(tmp_path / "run" / "log.txt") == {
        "mnist": ("accuracy", 55.5), "caltech-101": ("mean-per-class", 66.25)}


def test_tables_single_and_joint(tmp_path):
    make_tree(tmp_path)
    published = tmp_path / "published.csv"
    published.write_text("# comment line\nsetting,method,shots,task,value,source\n"
                         "single,MUPT,5,mnist,85.5,test\nsingle,MUPT,5,dtd,40.0,test\n")
    single, joint = elevater_tables(tmp_path, published)
    columns = single.columns
    assert columns[:2] == ["Method", "Shots"] and columns[-1] == "Average" and len(columns) == 23
    ours, paper = single.rows
    assert ours[:2] == ["UPT/vit_b16/nctx4_csc_ctp", "5"]
    assert ours[columns.index("mnist")] == "81.00 ± 1.00"
    assert ours[columns.index("caltech-101")] == "89.00 ± 1.00"
    assert ours[columns.index("voc-2007")] == "70.00"
    assert ours[columns.index("dtd")] == "–"
    assert ours[-1] == f"{(81 + 89 + 70) / 3:.2f} (3)"
    assert paper[:2] == ["MUPT (paper)", "5"] and paper[columns.index("mnist")] == "85.50"
    assert paper[-1] == "62.75 (2)"
    [row] = joint.rows
    assert row[-1] == f"{sum(range(20)) / 20:.2f}"  # all 20 tasks: no count marker
    assert row[columns.index("caltech-101")] == "0.00"
    metrics = {(r["dataset"], r["metric"]) for r in single.csv_rows}
    assert ("caltech-101", "mean-per-class") in metrics and ("average", "average") in metrics


def test_results_command_writes_the_elevater_table(tmp_path):
    make_tree(tmp_path / "output")
    out = tmp_path / "tables"
    assert results.main([str(tmp_path / "output"), "--out", str(out)]) == 0
    text = (out / "results.md").read_text()
    assert "## ELEVATER (MVLPT's protocol)" in text and "81.00 ± 1.00" in text
    assert "Few-shot" not in text  # ELEVATER runs stay out of the CoOp-datasets tables
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"elevater_single", "elevater_joint"} == {row["table"] for row in rows}
    assert (out / "elevater.png").stat().st_size > 0
