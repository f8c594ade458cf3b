"""The sweep runner on real commands: GPU placement, skip, resume after a kill, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts import layout, results, sweep
from tests.protocols.logs import write_train_log

REPO = Path(__file__).resolve().parents[2]

# Records which GPU it saw and when it ran, then writes a finished log in its run folder.
RECORDER = r'''
import os, sys, time
from pathlib import Path
run_dir, seconds = Path(sys.argv[1]), float(sys.argv[2])
run_dir.mkdir(parents=True, exist_ok=True)
start = time.time()
time.sleep(seconds)
(run_dir / "seen.txt").write_text(
    f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')} {start} {time.time()}")
(run_dir / "log.txt").write_text("Finished training\n=> result\n* accuracy: 50.00%\n")
'''

# A training that checkpoints every epoch and resumes from its last checkpoint.
TRAINER = r'''
import sys, time
from pathlib import Path
run_dir, epochs = Path(sys.argv[1]), int(sys.argv[2])
run_dir.mkdir(parents=True, exist_ok=True)
done = [int(p.name.split("-")[1]) for p in run_dir.glob("ckpt-*")]
first = max(done, default=0) + 1
with open(run_dir / "starts.txt", "a") as f:
    f.write(f"{first}\n")
for epoch in range(first, epochs + 1):
    time.sleep(0.12)
    (run_dir / f"ckpt-{epoch}").write_text("weights")
(run_dir / "log.txt").write_text("Finish training\n=> result\n* accuracy: 60.00%\n")
'''


def script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def recorder_jobs(tmp_path: Path, count: int, seconds: float) -> list[sweep.Job]:
    rec = script(tmp_path, "recorder.py", RECORDER)
    return [sweep.Job(f"job{i}", [sys.executable, rec, str(tmp_path / f"run{i}"), str(seconds)],
                      tmp_path / f"run{i}", sweep.TRAIN_END) for i in range(count)]


def intervals(tmp_path: Path, count: int) -> list[tuple[str, float, float]]:
    out = []
    for i in range(count):
        gpu, start, end = (tmp_path / f"run{i}" / "seen.txt").read_text().split()
        out.append((gpu, float(start), float(end)))
    return out


def test_one_job_per_gpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    failures = sweep.Sweep(recorder_jobs(tmp_path, 4, 0.4), ["3", "7"], tmp_path / "logs",
                           poll=0.02).run()
    assert failures == []
    runs = intervals(tmp_path, 4)
    assert {gpu for gpu, _s, _e in runs} == {"3", "7"}
    overlaps = 0
    for i, (gpu_a, start_a, end_a) in enumerate(runs):
        for gpu_b, start_b, end_b in runs[i + 1:]:
            if start_a < end_b and start_b < end_a:  # ran at the same time: different GPUs
                overlaps += 1
                assert gpu_a != gpu_b
    assert overlaps >= 2  # two GPUs were busy at once
    assert "[4/4 | ok 4" in capsys.readouterr().out


def test_a_repeated_gpu_id_runs_two_jobs_on_it(tmp_path: Path) -> None:
    assert sweep.Sweep(recorder_jobs(tmp_path, 2, 0.4), ["5", "5"], tmp_path / "logs",
                       poll=0.02).run() == []
    (gpu_a, start_a, end_a), (gpu_b, start_b, end_b) = intervals(tmp_path, 2)
    assert gpu_a == gpu_b == "5" and start_a < end_b and start_b < end_a


def test_sequential_without_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert sweep.parse_gpus(None) == [] and sweep.parse_gpus("0, 2") == ["0", "2"]
    assert sweep.parse_gpus("-1") == []
    failures = sweep.Sweep(recorder_jobs(tmp_path, 3, 0.2), [], tmp_path / "logs", 0.02).run()
    assert failures == []
    runs = sorted(intervals(tmp_path, 3), key=lambda r: r[1])
    assert all(gpu == "<unset>" for gpu, _s, _e in runs)
    assert all(prev[2] <= nxt[1] for prev, nxt in zip(runs, runs[1:], strict=False))


def test_finished_runs_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    jobs = recorder_jobs(tmp_path, 2, 0.0)
    write_train_log(tmp_path / "run0", 70.0)
    assert sweep.Sweep(jobs, [], tmp_path / "logs", 0.02).run() == []
    assert not (tmp_path / "run0" / "seen.txt").exists()  # never started
    assert (tmp_path / "run1" / "seen.txt").exists()
    assert "1 finished already (skipped), 1 to run" in capsys.readouterr().out


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(job) for job in jobs) + "\n")
    return path


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "sweep.py"), *args],
                          capture_output=True, text=True, timeout=1800, **kwargs)


def test_failures_are_listed_and_exit_non_zero(tmp_path: Path) -> None:
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", [
        {"name": "crash", "command": "echo boom >&2; exit 3",
         "run_dir": str(tmp_path / "crash"), "end_signal": "train"},
        {"name": "after-crash", "command": "touch should-not-exist", "after": ["crash"]},
        {"name": "no-result", "command": "mkdir -p nores && echo 'epoch 1' > nores/log.txt",
         "run_dir": str(tmp_path / "nores"), "end_signal": "train"},
        {"name": "fine", "command": "true"},
    ])
    result = run_cli("--jobs", str(jobs_file), "--gpus", "", "--log-dir", str(tmp_path / "logs"),
                     cwd=tmp_path)
    assert result.returncode == 1
    out = result.stdout
    assert "3 job(s) failed:" in out
    assert "crash: exit status 3" in out
    assert f"output:  {tmp_path / 'logs' / 'crash.log'}" in out
    assert "boom" in (tmp_path / "logs" / "crash.log").read_text()
    assert "after-crash: not run: crash failed" in out
    assert "no-result: exited 0 but its log holds no final accuracy" in out
    assert f"run log: {tmp_path / 'nores' / 'log.txt'}" in out
    assert not (tmp_path / "should-not-exist").exists()
    assert "done fine" in out


def test_resume_after_the_sweep_is_killed(tmp_path: Path) -> None:
    trainer = script(tmp_path, "trainer.py", TRAINER)
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", [
        {"name": "short", "command": f"{sys.executable} {trainer} {tmp_path / 'short'} 1",
         "run_dir": str(tmp_path / "short"), "end_signal": "train"},
        {"name": "long", "command": f"{sys.executable} {trainer} {tmp_path / 'long'} 6",
         "run_dir": str(tmp_path / "long"), "end_signal": "train"},
    ])
    args = ["--jobs", str(jobs_file), "--gpus", "", "--log-dir", str(tmp_path / "logs")]
    first = subprocess.Popen([sys.executable, str(REPO / "scripts" / "sweep.py"), *args],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 1800
    while not (tmp_path / "long" / "ckpt-2").exists():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.02)
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=1800)
    assert first.returncode == 128 + signal.SIGTERM, out
    assert "interrupted" in out
    stopped_at = len(list((tmp_path / "long").glob("ckpt-*")))
    time.sleep(0.4)  # the job was stopped with the sweep: no checkpoint appears any more
    assert len(list((tmp_path / "long").glob("ckpt-*"))) == stopped_at < 6
    assert not (tmp_path / "long" / "log.txt").exists()

    second = run_cli(*args)
    assert second.returncode == 0, second.stdout
    assert "1 finished already (skipped), 1 to run" in second.stdout
    assert "(resuming)" in second.stdout
    starts = (tmp_path / "long" / "starts.txt").read_text().split()
    assert starts[0] == "1" and int(starts[1]) == stopped_at + 1  # went on from its checkpoint
    assert (tmp_path / "short" / "starts.txt").read_text().split() == ["1"]  # not run again
    assert (tmp_path / "long" / "ckpt-6").exists()


def test_protocol_jobs_cover_methods_datasets_and_seeds(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXTRA_OPTS", raising=False)
    methods = [sweep.resolve_method("maple"), sweep.resolve_method("NewTrainer/my_cfg"),
               sweep.resolve_method("zsclip")]
    jobs = sweep.protocol_jobs(["base2new"], methods, ["dtd", "eurosat"], [1, 2], [16],
                               tmp_path, ["OPTIM.MAX_EPOCH", "1"])
    names = {job.name: job for job in jobs}
    # trained methods: train + test per dataset and seed; zero-shot: base + new tests, 1 seed
    assert len(jobs) == 2 * 2 * 2 * 2 + 2 * 2
    test = names["base2new/test_new/NewTrainer/my_cfg/eurosat/seed2"]
    assert test.after == ("base2new/train_base/NewTrainer/my_cfg/eurosat/seed2",)
    assert test.command[-5:] == ["NewTrainer", "my_cfg", "eurosat", "2", "new"]
    assert test.run_dir == tmp_path / "base2new/test_new/eurosat/shots_16/NewTrainer/my_cfg/seed2"
    assert test.env["EXTRA_OPTS"] == "OPTIM.MAX_EPOCH 1"
    zs = names["base2new/test_base/ZeroshotCLIP/vit_b16/dtd/seed1"]
    assert zs.env["MODEL_DIR"] == "none" and zs.env["CFG_TRAINER"] == "CoOp"

    xd_dg = sweep.protocol_jobs(["xd", "dg"], methods[:1], None, [1], [16], tmp_path, [])
    trains = [job for job in xd_dg if job.name.startswith("xd/train/")]
    assert len(trains) == 1 and len(xd_dg) == 1 + 10 + 4  # one ImageNet model for both
    few = sweep.protocol_jobs(["few_shot"], methods[:2], ["dtd"], [1, 2, 3], [1, 2, 4, 8, 16],
                              tmp_path, [])
    assert len(few) == 2 * 5 * 3


def test_cli_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATA"}
    result = run_cli("base2new", "--methods", "maple", env=env)
    assert result.returncode != 0 and "DATA is not set" in result.stderr
    result = run_cli("base2nu", "--methods", "maple", env=env)
    assert "unknown protocol" in result.stderr
    result = run_cli("base2new", "--methods", "mapel", "--dry-run", env=env)
    assert "unknown method 'mapel'" in result.stderr
    result = run_cli("base2new", "--methods", "maple", "--datasets", "dtd", "--seeds", "1",
                     "--output", str(tmp_path), "--dry-run", "--", "OPTIM.MAX_EPOCH", "1")
    assert result.returncode == 0
    assert "todo  base2new/train_base/MaPLe/vit_b16_c2_ep5_batch4_2ctx/dtd/seed1" in result.stdout
    # the jobs share a feature cache under the output root unless --no-feature-cache
    assert (f"EXTRA_OPTS='OPTIM.MAX_EPOCH 1 FEATURE_CACHE.DIR {tmp_path.resolve()}/feature_cache'"
            in result.stdout)
    result = run_cli("base2new", "--methods", "maple", "--datasets", "dtd", "--seeds", "1",
                     "--output", str(tmp_path), "--dry-run", "--no-feature-cache", "--",
                     "OPTIM.MAX_EPOCH", "1")
    assert "EXTRA_OPTS='OPTIM.MAX_EPOCH 1'" in result.stdout


def test_protocol_sweep_through_the_scripts(repo: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    """The sweep runs the protocol scripts (with a stand-in train.py) and finds their results
    where the scripts wrote them; the tables read them back."""
    monkeypatch.setattr(sweep, "SCRIPTS", repo / "scripts")
    monkeypatch.setenv("DATA", str(tmp_path / "data"))
    monkeypatch.delenv("EXTRA_OPTS", raising=False)
    out = tmp_path / "out"
    methods = [sweep.resolve_method("maple"), sweep.resolve_method("zsclip")]
    jobs = (sweep.protocol_jobs(["base2new"], methods, ["dtd", "eurosat"], [1], [16], out, [])
            + sweep.protocol_jobs(["dg"], methods, ["imagenet_a"], [1], [16], out, []))
    assert len(jobs) == 4 + 4 + 2 + 2
    assert sweep.Sweep(jobs, ["0", "1"], tmp_path / "logs", poll=0.02).run() == []

    tables = results.build_tables(results.scan(out))
    summary = tables["base2new"][0]
    assert [row[:5] for row in summary.rows] == [
        ["MaPLe/vit_b16_c2_ep5_batch4_2ctx", "2", "70.00", "70.00", "70.00"],
        ["ZeroshotCLIP/vit_b16", "2", "70.00", "70.00", "70.00"]]
    (dg,) = tables["dg"]
    assert dg.columns == ["Method", "Source: ImageNet", "ImageNet-A", "Average"]
    assert [row[0] for row in dg.rows] == ["MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
                                           "ZeroshotCLIP/vit_b16"]
    assert all(row[1:] == ["70.00", "70.00", "70.00"] for row in dg.rows)

    capsys.readouterr()
    assert sweep.Sweep(jobs, ["0", "1"], tmp_path / "logs", poll=0.02).run() == []
    assert "12 finished already (skipped), 0 to run" in capsys.readouterr().out


def test_every_method_alias_names_configs_that_exist():
    """Every alias of the sweep's METHODS table runs configs that are in configs/trainers/."""
    root = Path(__file__).resolve().parents[2] / "configs" / "trainers"
    for alias, method in sweep.METHODS.items():
        folder = root / (method.config_dir or method.trainer)
        for protocol in ("base2new", "xd", "few_shot"):
            cfg = getattr(method, protocol)
            if cfg is not None:
                assert (folder / f"{cfg}.yaml").is_file(), (alias, protocol, cfg)
        if method.mvlpt:
            assert (folder / f"{method.mvlpt[1]}.yaml").is_file(), alias


def test_mvlpt_and_elevater_protocols_chain_source_average_targets(tmp_path):
    """MVLPT's chain: one source run per seed on CoOp's 11 datasets, their average once all of
    them ended, then every target (CoOp datasets; ELEVATER tasks) after the average. The source
    and the average are shared by both protocols; ELEVATER runs are finished by their blocks."""
    jobs = sweep.protocol_jobs(["mvlpt", "elevater"], [sweep.resolve_method("mupt")], None,
                               [1, 2], [5], tmp_path, [])
    by_name = {job.name: job for job in jobs}
    sources = [n for n in by_name if n.startswith("mvlpt/source/")]
    assert sources == ["mvlpt/source/UPT/vit_b16/nctx4/5shots/seed1",
                       "mvlpt/source/UPT/vit_b16/nctx4/5shots/seed2"]
    average = by_name["mvlpt/average/UPT/vit_b16/nctx4/5shots"]
    assert average.after == tuple(sources) and average.env["SEEDS"] == "1 2"
    assert average.command[-4:] == ["UPT", "vit_b16", "4", "5"]
    source_dir = tmp_path / ",".join(layout.MVLPT_SOURCE_TASKS) / "UPT/vit_b16_5shots/nctx4_csc_ctp"
    assert by_name[sources[0]].run_dir == source_dir / "seed1"
    targets = [j for j in jobs if "/target/" in j.name]
    assert len(targets) == 2 * (len(layout.MVLPT_TARGETS) + len(layout.ELEVATER_TASKS))
    assert all(j.after == (average.name,) for j in targets)
    cifar = by_name["elevater/target/UPT/vit_b16/nctx4/5shots/cifar-10/seed2"]
    assert cifar.command[1].endswith("scripts/mvlpt/main_single_elevater_cut.sh")
    assert cifar.command[2:] == ["UPT", "vit_b16", "4", "5", "2", "cifar-10"]
    assert cifar.env["MODEL_DIR"] == str(source_dir)
    assert cifar.run_dir == tmp_path / "cifar-10/UPT/vit_b16_5shots/nctx4_csc_ctp/seed2"
    assert not cifar.finished()
    cifar.run_dir.mkdir(parents=True)
    (cifar.run_dir / "log.txt").write_text("epoch [1/5] batch [1/1]\n=> result\n* task: cifar-10"
                                           "\n* total: 10\n* accuracy: 40.0%\n")
    assert not cifar.finished()  # a validation block of a training still running
    with open(cifar.run_dir / "log.txt", "a") as log:
        log.write("Finish training\n=> result\n* task: cifar-10\n* total: 10\n"
                  "* accuracy: 50.0%\n")
    assert cifar.finished()
    assert sweep.protocol_jobs(["few_shot"], [sweep.resolve_method("mupt")], None, [1], None,
                               tmp_path, []) == []  # MVLPT has no few-shot config
