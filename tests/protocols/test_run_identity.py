"""A run's folder and table row include where its prompts started (scripts/init_source.py):
an MVLPT target trained from scratch never stands in for one initialised from the source."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from scripts import init_source
from scripts.elevater_results import TITLES, elevater_tables
from scripts.jobs import Job
from tests.protocols.test_elevater_results import write_log
from tests.protocols.test_mvlpt_protocol import REPO, TAG, TASKS, mvlpt_repo
from tests.protocols.test_protocol_scripts import calls, run


def _source(repo: Path, out: str) -> Path:
    """The averaged source prompts (what transfer.sh checks for)."""
    folder = repo / out / TASKS / TAG / "prompt_learner"
    folder.mkdir(parents=True)
    (folder / "model-best.pth.tar").write_text("averaged prompts")
    return folder.parent


def test_scratch_then_source_targets_are_two_runs(repo: Path) -> None:
    repo, out = mvlpt_repo(repo), "out"
    env = {"TASKS": TASKS, "PYTHONPATH": str(repo)}
    source = _source(repo, out)
    args = ("UPT", "vit_b16", "4", "5", "1", "EuroSAT", str(repo.parent / "data"), out)
    scratch = run(repo, "mvlpt/main_single_coopdata_cut.sh", *args, MODEL_DIR="none", **env)
    assert scratch.returncode == 0, scratch.stderr
    from_source = run(repo, "mvlpt/main_single_coopdata_cut.sh", *args, **env)
    assert from_source.returncode == 0, from_source.stderr
    assert "Skip this job" not in from_source.stdout  # the scratch run is not this run
    scratch_dir = repo / out / "EuroSAT" / f"{TAG}_scratch" / "seed1"
    source_dir = repo / out / "EuroSAT" / TAG / "seed1"
    assert "--model-dir" not in calls(scratch_dir)[0]
    assert "--model-dir" in calls(source_dir)[0]
    assert (scratch_dir / "init_source.txt").read_text() == "none\n"
    assert (source_dir / "init_source.txt").read_text() == f"{os.path.realpath(source)}\n"
    again = run(repo, "mvlpt/main_single_coopdata_cut.sh", *args, **env)
    assert "Skip this job" in again.stdout and len(calls(source_dir)) == 1


def test_a_folder_from_another_start_is_refused_and_never_done(repo: Path) -> None:
    """A folder written before the source was part of the name: its log says the run had no
    --model-dir. It is neither skipped as finished nor trained into."""
    repo, out = mvlpt_repo(repo), "out"
    source = _source(repo, out)
    old = repo / out / "EuroSAT" / TAG / "seed3"
    old.mkdir(parents=True)
    (old / "log.txt").write_text("model_dir: \nFinish training\n* accuracy: 40.00%\n")
    result = run(repo, "mvlpt/main_single_coopdata_cut.sh", "UPT", "vit_b16", "4", "5", "3",
                 "EuroSAT", str(repo.parent / "data"), out, TASKS=TASKS)
    assert result.returncode == 2
    assert "started from untrained prompts (MODEL_DIR=none)" in result.stderr
    assert not (old / "calls.json").exists()
    job = Job("target", "true", old, ("Finish training",), env={"MODEL_DIR": str(source)})
    assert not job.finished()
    assert Job("target", "true", old, ("Finish training",), env={"MODEL_DIR": "none"}).finished()


def test_elevater_folder_names_the_start(repo: Path) -> None:
    repo, data = mvlpt_repo(repo), str(repo.parent / "data")
    (repo / "datasets").mkdir()
    shutil.copy(REPO / "datasets" / "elevater_classnames.json", repo / "datasets")
    base = "output/dtd/UPT/vit_b16_5shots/nctx4_csc_ctp"
    for model_dir, suffix in (("", ""), ("none", "_scratch"), ("/elsewhere/prompts",
                              init_source.folder_suffix("/elsewhere/prompts", "x"))):
        env = {"MODEL_DIR": model_dir} if model_dir else {}
        result = run(repo, "mvlpt/main_single_elevater_cut.sh", "UPT", "vit_b16", "4", "5",
                     "1", "dtd", DATA=data, DRY_RUN="1", **env)
        assert result.returncode == 0, result.stderr
        assert f" --output-dir {base}{suffix}/seed1 " in result.stdout
    assert suffix.startswith("_from-") and len(suffix) == len("_from-") + 8


def test_claim_records_and_refuses(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    init_source.claim(run_dir, "none")
    init_source.claim(run_dir, "none")  # the same start: fine
    with pytest.raises(ValueError, match="started from untrained prompts .* starts from the "
                                         "prompts of"):
        init_source.claim(run_dir, str(tmp_path / "source"))
    assert init_source.folder_suffix(str(tmp_path / "s"), str(tmp_path / "s/")) == ""


def test_scratch_runs_get_their_own_elevater_table(tmp_path: Path) -> None:
    write_log(tmp_path / "dtd/UPT/vit_b16_5shots/nctx4_csc_ctp_scratch/seed1", {"dtd": 30.0})
    write_log(tmp_path / "dtd/UPT/vit_b16_5shots/nctx4_csc_ctp/seed1", {"dtd": 50.0})
    tables = {t.title: t for t in elevater_tables(tmp_path, tmp_path / "none.csv")}
    assert set(tables) == {TITLES["single"], TITLES["scratch"]}
    assert "30.00" in tables[TITLES["scratch"]].rows[0]
    assert "50.00" in tables[TITLES["single"]].rows[0]
