"""Result tables and parse_test_res.py on logs with known accuracies."""

from __future__ import annotations

import csv
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest

from engine.utils import setup_logger
from scripts import layout, results
from scripts.logparse import TEST_END, TRAIN_END, parse_log, run_accuracy
from tests.protocols.logs import write_test_log, write_train_log, write_unfinished_log

REPO = Path(__file__).resolve().parents[2]
METHOD, CFG = "MaPLe", "vit_b16_c2_ep5_batch4_2ctx"
# dataset -> (base accuracies of seeds 1..3, novel accuracies of seeds 1..3)
B2N = {
    "imagenet": ([76.0, 77.0, 78.5], [70.0, 71.5, 69.0]),
    "dtd": ([80.0, 82.0, 84.0], [55.0, 60.0, 59.0]),
    "eurosat": ([95.0, 94.0, 96.0], [70.0, 75.0, 80.0]),
}


def pstd(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def hm(a: float, b: float) -> float:
    return 2 * a * b / (a + b)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """An output tree of the base-to-novel protocol with the accuracies of B2N."""
    root = tmp_path / "output"
    for dataset, (base, novel) in B2N.items():
        for seed, (b, n) in enumerate(zip(base, novel, strict=True), 1):
            where = (dataset, 16, METHOD, CFG, seed)
            write_train_log(layout.base2new_dir(root, "train_base", *where), b, val=99.0)
            write_test_log(layout.base2new_dir(root, "test_new", *where), n)
    return root


def test_logs_are_read_as_the_official_parser_does(tmp_path: Path) -> None:
    run = tmp_path / "seed1"
    write_train_log(run, 61.5, val=99.0)  # a validation result before "Finished training"
    assert run_accuracy(run, TRAIN_END) == 61.5
    assert run_accuracy(run, TEST_END) == 61.5  # the last result after the first "=> result"
    write_unfinished_log(tmp_path / "seed2")
    assert run_accuracy(tmp_path / "seed2", TRAIN_END) is None
    # logs of older Dassl versions end training with "Finished training"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "log.txt").write_text(
        "* accuracy: 99.00%\nFinished training\n=> result\n* accuracy: 55.50%\n")
    assert run_accuracy(tmp_path / "old", TRAIN_END) == 55.5
    # a resumed run goes on in log.txt-<time>: its result counts
    write_train_log(tmp_path / "seed2", 64.25, name="log.txt-2026-01-01-00-00-00")
    assert run_accuracy(tmp_path / "seed2", TRAIN_END) == 64.25


def test_a_run_resumed_into_the_same_log_reads_its_final_result(tmp_path: Path) -> None:
    run = tmp_path / "seed1"
    write_unfinished_log(run)  # interrupted: no result yet
    before = (run / "log.txt").read_text()
    setup_logger(str(run))  # the resumed run appends, after a separator
    try:
        log = logging.getLogger("resumed")
        log.info("Finish training")
        log.info("=> result")
        log.info("* accuracy: 70.25%")
    finally:
        setup_logger(None)  # detach log.txt
    text = (run / "log.txt").read_text()
    assert text.startswith(before) and "===== new run" in text
    assert run_accuracy(run, TRAIN_END) == 70.25
    assert parse_log(run / "log.txt", TRAIN_END)["accuracy"] == 70.25


def test_harmonic_mean_convention_matches_the_papers() -> None:
    for paper in results.PUBLISHED_BASE2NEW.values():
        base, novel, paper_hm = paper
        assert round(results.harmonic_mean(base, novel), 2) == pytest.approx(paper_hm, abs=0.011)


def test_base2new_table_numbers(tree: Path) -> None:
    records = results.scan(tree)
    assert len(records) == 3 * 3 * 2
    per_method = results.base2new_rows(records)
    rows = per_method[(f"{METHOD}/{CFG}", 16)]
    assert [r.dataset for r in rows] == ["imagenet", "dtd", "eurosat"]  # the papers' order
    for row in rows:
        base, novel = B2N[row.dataset]
        assert row.base.mean == pytest.approx(sum(base) / 3)
        assert row.base.std == pytest.approx(pstd(base))
        assert row.novel.mean == pytest.approx(sum(novel) / 3)
        assert row.novel.std == pytest.approx(pstd(novel))
        assert row.hm == pytest.approx(hm(sum(base) / 3, sum(novel) / 3))
        assert row.hm_seeds.std == pytest.approx(pstd([hm(b, n) for b, n in zip(base, novel,
                                                                                 strict=True)]))
    avg_base = sum(sum(b) / 3 for b, _n in B2N.values()) / 3
    avg_novel = sum(sum(n) / 3 for _b, n in B2N.values()) / 3
    base, novel, avg_hm, count = results.base2new_average(rows)
    assert (base, novel, count) == (pytest.approx(avg_base), pytest.approx(avg_novel), 3)
    assert avg_hm == pytest.approx(hm(avg_base, avg_novel))
    mean_of_hms = sum(r.hm for r in rows) / 3
    assert abs(avg_hm - mean_of_hms) > 0.1  # the convention matters for these numbers

    markdown = results.render(results.build_tables(records))
    dtd_base, dtd_novel = B2N["dtd"]
    assert f"| DTD | 82.00 ± {pstd(dtd_base):.2f} | {sum(dtd_novel) / 3:.2f} ± " in markdown
    assert f"| **Average (3)** | {avg_base:.2f} | {avg_novel:.2f} | {hm(avg_base, avg_novel):.2f}" \
        in markdown
    assert "82.28 / 75.14 / 78.55" in markdown  # MaPLe's published average beside ours


def test_base_prefers_the_test_base_run(tree: Path) -> None:
    run = layout.base2new_dir(tree, "test_base", "dtd", 16, METHOD, CFG, 1)
    write_test_log(run, 10.0)
    rows = results.base2new_rows(results.scan(tree))[(f"{METHOD}/{CFG}", 16)]
    dtd = next(r for r in rows if r.dataset == "dtd")
    assert dtd.base.by_seed == {1: 10.0, 2: 82.0, 3: 84.0}


def test_transfer_and_few_shot_tables(tmp_path: Path) -> None:
    root = tmp_path / "output"
    xd = {"caltech101": [93.0, 94.0], "dtd": [45.0, 47.0], "imagenet_a": [50.0, 51.0],
          "imagenet_r": [76.0, 77.0]}
    for seed in (1, 2):
        write_train_log(layout.train_dir(root, "imagenet", METHOD, "xcfg", 16, seed), 70.0 + seed)
        for dataset, accs in xd.items():
            write_test_log(layout.evaluation_dir(root, METHOD, "xcfg", 16, dataset, seed),
                           accs[seed - 1])
    few = {("dtd", 1): [50.0, 52.0], ("dtd", 4): [60.0, 61.0], ("eurosat", 1): [70.0, 74.0],
           ("eurosat", 4): [80.0, 82.0]}
    for (dataset, shots), accs in few.items():
        for seed, acc in enumerate(accs, 1):
            write_train_log(layout.train_dir(root, dataset, "PromptSRC", "fcfg", shots, seed), acc)

    tables = results.build_tables(results.scan(root))
    (xd_table,) = tables["xd"]
    assert xd_table.columns == ["Method", "Source: ImageNet", "Caltech101", "DTD", "Average"]
    assert xd_table.rows == [[f"{METHOD}/xcfg", "71.50 ± 0.50", "93.50 ± 0.50", "46.00 ± 1.00",
                              f"{(93.5 + 46.0) / 2:.2f}"]]
    (dg_table,) = tables["dg"]
    assert dg_table.rows[0][-1] == f"{(50.5 + 76.5) / 2:.2f}"  # the average leaves out the source
    assert "2 of 4 targets" in dg_table.note

    # the ImageNet model of the transfer tables is not a few-shot result
    (few_table,) = tables["few_shot"]
    assert few_table.title == "Few-shot: PromptSRC/fcfg"
    assert few_table.columns == ["Dataset", "1 shots", "4 shots"]
    assert few_table.rows == [["DTD", "51.00 ± 1.00", "60.50 ± 0.50"],
                              ["EuroSAT", "72.00 ± 2.00", "81.00 ± 1.00"],
                              ["**Average**", f"{(51 + 72) / 2:.2f}", f"{(60.5 + 81) / 2:.2f}"]]
    assert few_table.note == "Seeds: 1 2 (every cell)." and not few_table.warnings


def evaluation_of(root: Path, model_dir: Path, dataset: str, seed: int, accuracy: float,
                  method: str = "CoOp", cfg: str = "c") -> None:
    """An evaluation whose log names the model it loads, as train.py logs it."""
    log = write_test_log(layout.evaluation_dir(root, method, cfg, 16, dataset, seed), accuracy)
    log.write_text(f"model_dir: {model_dir}\nLoad {model_dir}/prompt_learner/model.pth.tar-2 "
                   f"to prompt_learner (epoch=2)\n" + log.read_text())


def test_the_source_is_the_training_the_evaluations_load(tmp_path: Path) -> None:
    root = tmp_path / "output"
    for seed in (1, 2):
        model = layout.train_dir(root, "caltech101", "CoOp", "c", 16, seed)
        write_train_log(model, 90.0 + seed)
        evaluation_of(root, model, "dtd", seed, 40.0 + seed)
        evaluation_of(root, model, "imagenet_r", seed, 60.0)
    # another CoOp model on ImageNet, a few-shot run that no evaluation loads
    write_train_log(layout.train_dir(root, "imagenet", "CoOp", "c", 16, 1), 70.0)

    tables = results.build_tables(results.scan(root))
    (xd,) = tables["xd"]
    assert xd.title == "Cross-dataset transfer"
    assert xd.columns == ["Method", "Source: Caltech101", "DTD", "Average"]
    assert xd.rows == [["CoOp/c", "91.50 ± 0.50", "41.50 ± 0.50", "41.50"]]
    assert tables["dg"][0].columns[1] == "Source: Caltech101"
    # CoOp/c has a training that is no source: its trainings are few-shot results, the
    # source included (the official CoOp protocol shares the ImageNet run this way)
    (few,) = tables["few_shot"]
    assert [row[0] for row in few.rows] == ["ImageNet", "Caltech101", "**Average**"]

    # evaluations of models trained on two sources: one table per source
    other = layout.train_dir(root, "imagenet", "CoOp", "c", 16, 2)
    write_train_log(other, 71.0)
    evaluation_of(root, other, "eurosat", 2, 55.0)
    evaluation_of(root, layout.train_dir(root, "imagenet", "CoOp", "c", 16, 1), "eurosat", 1,
                  53.0)
    titles = [t.title for t in results.build_tables(results.scan(root))["xd"]]
    assert titles == ["Cross-dataset transfer (source: ImageNet)",
                      "Cross-dataset transfer (source: Caltech101)"]


def test_an_evaluation_naming_no_training_uses_the_source_option(tmp_path: Path) -> None:
    root = tmp_path / "output"
    write_test_log(layout.evaluation_dir(root, "ZeroshotCLIP", "vit_b16", 16, "dtd", 1), 44.0)
    write_test_log(layout.evaluation_dir(root, "ZeroshotCLIP", "vit_b16", 16, "sun397", 1), 62.0)
    records = results.scan(root)
    assert results.build_tables(records)["xd"][0].columns[1] == "Source: ImageNet"
    (xd,) = results.build_tables(records, source="sun397")["xd"]
    assert xd.columns == ["Method", "Source: SUN397", "DTD", "Average"]
    assert xd.rows[0][:2] == ["ZeroshotCLIP/vit_b16", "62.00"]


def test_cells_say_which_seeds_they_average(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "output"
    for seed in (1, 2):
        where = ("dtd", 16, METHOD, CFG, seed)
        write_train_log(layout.base2new_dir(root, "train_base", *where), 80.0 + seed)
        write_train_log(layout.base2new_dir(root, "train_base", "eurosat", *where[1:]), 90.0)
        write_test_log(layout.base2new_dir(root, "test_new", "eurosat", *where[1:]), 70.0)
        write_train_log(layout.train_dir(root, "dtd", "CoOp", "c", 4, seed), 60.0 + seed)
    write_test_log(layout.base2new_dir(root, "test_new", "dtd", 16, METHOD, CFG, 1), 55.0)
    write_train_log(layout.train_dir(root, "eurosat", "CoOp", "c", 4, 1), 75.0)

    tables = results.build_tables(results.scan(root))
    # Base over seeds 1 and 2, Novel over seed 1: today's table prints "1 2" for both
    b2n = tables["base2new"][1]
    assert b2n.rows[0] == ["DTD", "81.50 ± 0.50", "55.00", f"{hm(81.5, 55.0):.2f}",
                           "Base 1 2; Novel 1"]
    assert b2n.rows[1][-1] == "1 2"
    assert b2n.warnings == [f"Base-to-novel: {METHOD}/{CFG}: cells average different seeds: "
                            "1 2, except those marked (seeds ...)"]
    assert "**Warning**: cells average different seeds" in b2n.note
    assert tables["base2new"][0].rows[0][0] == f"{METHOD}/{CFG} (mixed seeds)"
    (few,) = tables["few_shot"]
    assert few.rows[:2] == [["DTD", "61.50 ± 0.50"], ["EuroSAT", "75.00 (seeds 1)"]]

    assert results.main([str(root), "--out", str(tmp_path / "tables")]) == 0
    err = capsys.readouterr().err
    assert f"warning: Base-to-novel: {METHOD}/{CFG}: cells average different seeds" in err
    assert "warning: Few-shot: CoOp/c: cells average different seeds" in err


def test_command_line_writes_markdown_csv_and_charts(tree: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    for shots, acc in ((1, 40.0), (2, 45.0)):
        write_train_log(layout.train_dir(tree, "dtd", "CoOp", "c", shots, 1), acc)
    out = tmp_path / "tables"
    assert results.main([str(tree), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## Base-to-novel generalization" in printed and "## Few-shot learning" in printed
    assert (out / "results.md").read_text().strip() in printed
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    dtd_novel = next(r for r in rows if r["dataset"] == "dtd" and r["metric"] == "novel")
    assert float(dtd_novel["mean"]) == pytest.approx(58.0)
    assert float(dtd_novel["std"]) == pytest.approx(pstd(B2N["dtd"][1]), abs=1e-4)
    assert dtd_novel["seeds"] == "1 2 3"
    for png in ("base2new.png", "few_shot.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no finished run"):
        results.main([str(empty)])


def parse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "parse_test_res.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)


def test_parse_test_res(tree: Path) -> None:
    exp = tree / "base2new/train_base/dtd/shots_16" / METHOD / CFG
    result = parse(str(exp))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Parsing files in {exp}"
    assert lines[1] == f"file: {exp / 'seed1' / 'log.txt'}. accuracy: 80.00%. error: 20.00%. "
    assert lines[-5:] == ["===", f"Summary of directory: {exp}",
                          f"* accuracy: 82.00% +- {pstd([80.0, 82.0, 84.0]):.2f}%",
                          f"* error: 18.00% +- {pstd([20.0, 18.0, 16.0]):.2f}%", "==="]
    ci95 = 1.96 * pstd([80.0, 82.0, 84.0]) / math.sqrt(3)
    assert f"* accuracy: 82.00% +- {ci95:.2f}%" in parse(str(exp), "--ci95").stdout

    novel = tree / "base2new/test_new/dtd/shots_16" / METHOD / CFG
    assert "* accuracy: 58.00% +- " in parse(str(novel), "--test-log").stdout
    result = parse(str(novel))  # evaluation logs have no "Finished training"
    assert result.returncode != 0 and "nothing found" in result.stderr
    assert "--test-log" in result.stderr

    multi = parse(str(tree / "base2new/train_base/dtd/shots_16" / METHOD), "--multi-exp")
    assert multi.stdout.splitlines()[-3:] == ["Average performance", "* accuracy: 82.00%",
                                              "* error: 18.00%"]
