"""The sweep's base-to-novel test job loads the epoch a trainer's own per-dataset settings
train (CoPrompt: 5 on Food101, whatever the config's OPTIM.MAX_EPOCH)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import sweep


def _test_jobs(tmp_path: Path, method: str, opts: list[str]) -> dict[str, dict[str, str]]:
    jobs = sweep.protocol_jobs(["base2new"], [sweep.resolve_method(method)],
                               ["food101", "dtd"], [1], [16], tmp_path, opts)
    return {job.command[-3]: job.env for job in jobs if "/test_new/" in job.name}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXTRA_OPTS", raising=False)
    monkeypatch.delenv("LOADEP", raising=False)


def test_coprompt_food101_test_loads_epoch_5(tmp_path: Path) -> None:
    env = _test_jobs(tmp_path, "coprompt", ["OPTIM.MAX_EPOCH", "1"])
    assert env["food101"]["LOADEP"] == "5"
    assert "LOADEP" not in env["dtd"]  # the config's epoch (load_epoch in scripts/common.sh)


def test_settings_off_or_loadep_given_keep_the_usual_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _test_jobs(tmp_path, "coprompt", ["TRAINER.CoPrompt.DATASET_SETTINGS", "False"])
    assert "LOADEP" not in env["food101"]
    monkeypatch.setenv("EXTRA_OPTS", "TRAINER.CoPrompt.DATASET_SETTINGS False")
    assert "LOADEP" not in _test_jobs(tmp_path, "coprompt", [])["food101"]
    monkeypatch.delenv("EXTRA_OPTS")
    monkeypatch.setenv("LOADEP", "3")
    assert "LOADEP" not in _test_jobs(tmp_path, "coprompt", [])["food101"]


def test_other_trainers_are_untouched(tmp_path: Path) -> None:
    assert all("LOADEP" not in env for env in _test_jobs(tmp_path, "maple", []).values())
