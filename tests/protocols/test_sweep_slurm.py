"""The sweep on Slurm without a cluster: submitit's real SlurmExecutor writes the sbatch scripts
and calls ``sbatch``, ``squeue`` and ``sacct`` stand-ins that record the scripts and answer
with the states a test sets. Checked: resources, arrays, dependencies, --status, resubmission."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from scripts import slurm, sweep
from scripts.jobs import Job
from scripts.run_job import RunJob
from tests.protocols.logs import write_train_log

pytest.importorskip("submitit")

FAKE_TOOLS = {
    "sbatch": """n=$(cat "$FAKE_SLURM/next" 2>/dev/null || echo 100)
cp "$1" "$FAKE_SLURM/sbatch_$n.sh"
echo $((n + 1)) > "$FAKE_SLURM/next"
echo "Submitted batch job $n"
""",
    "squeue": 'cat "$FAKE_SLURM/squeue.txt" 2>/dev/null || true\n',
    "sacct": 'cat "$FAKE_SLURM/sacct.txt" 2>/dev/null || true\n',
    "srun": "exit 0\n",
    # as where no controller answers (a machine with Slurm installed would wait ~10 s for one)
    "sinfo": "echo 'sinfo: error: Unable to contact slurm controller' >&2; exit 1\n",
}


@pytest.fixture()
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch, squeue, sacct, srun and sinfo stand-ins first on PATH; returns their folder."""
    folder = tmp_path / "fake_slurm"
    folder.mkdir()
    for name, body in FAKE_TOOLS.items():
        tool = folder / name
        tool.write_text("#!/bin/bash\n" + body)
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{Path('/usr/bin')}:{Path('/bin')}")
    monkeypatch.setenv("FAKE_SLURM", str(folder))
    monkeypatch.setenv("DATA", str(tmp_path / "data"))
    monkeypatch.delenv("EXTRA_OPTS", raising=False)
    return folder


def sbatch_options(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", path.read_text(), re.M))


def submitted_call(log_dir: Path, job_id: str) -> RunJob:
    from submitit.core.utils import DelayedSubmission

    pickle = log_dir / "submitit" / job_id / f"{job_id}_submitted.pkl"
    return DelayedSubmission.load(pickle).function


def base2new(out: Path, *extra: str) -> list[str]:
    return ["base2new", "--methods", "maple", "--datasets", "dtd", "eurosat", "--seeds", "1",
            "--output", str(out), "--launcher", "slurm", *extra]


def test_sbatch_scripts_carry_resources_arrays_and_dependencies(
        tmp_path: Path, fake_slurm: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "slurm.yaml"
    config.write_text("partition: gpu\naccount: lab\ntime: '2:00:00'\nmem: 32G\n"
                      "sbatch: {constraint: a100}\n"
                      "stages:\n  'base2new/train_base/*': {nodes: 2}\n"
                      "  'base2new/test_new/*': {time: 30, gpus_per_node: 1}\n")
    out = tmp_path / "out"
    assert sweep.main(base2new(out, "--slurm-config", str(config), "--qos", "high",
                               "--cpus-per-task", "8", "--gpus-per-node", "2",
                               "--sbatch", "exclude=node7")) == 0
    printed = capsys.readouterr().out
    assert "array 100 of 2 jobs: base2new/train_base/MaPLe" in printed
    assert "array 101 of 2 jobs: base2new/test_new/MaPLe, aftercorr:100" in printed

    train, test = sbatch_options(fake_slurm / "sbatch_100.sh"), sbatch_options(
        fake_slurm / "sbatch_101.sh")
    assert not (fake_slurm / "sbatch_102.sh").exists()
    common = {"partition": "gpu", "account": "lab", "qos": "high", "mem": "32G",
              "cpus-per-task": "8", "constraint": "a100", "exclude": "node7",
              "ntasks-per-node": "1", "signal": "USR2@90"}
    assert common.items() <= train.items() and common.items() <= test.items()
    assert train["array"] == "0-1%2" and test["array"] == "0-1%2"
    assert (train["nodes"], train["gpus-per-node"], train["time"]) == ("2", "2", "120")
    assert (test["nodes"], test["gpus-per-node"], test["time"]) == ("1", "1", "30")
    assert "dependency" not in train
    assert test["dependency"] == "aftercorr:100" and test["kill-on-invalid-dep"] == "yes"
    assert train["job-name"] == "base2new/train_base/MaPLe"

    # task i of the evaluation array evaluates the model of task i of the training array
    log_dir = out / "sweep_logs"
    for i in range(2):
        training, evaluation = submitted_call(log_dir, f"100_{i}"), submitted_call(
            log_dir, f"101_{i}")
        assert training.command[-4:-1] == evaluation.command[-5:-2]  # trainer, cfg, dataset
        assert (training.nodes, training.gpus_per_node) == (2, 2)
        assert (evaluation.nodes, evaluation.gpus_per_node) == (1, 1)
        assert training.run_dir == str(
            out / f"base2new/train_base/{['dtd', 'eurosat'][i]}/shots_16/MaPLe/"
                  "vit_b16_c2_ep5_batch4_2ctx/seed1")


def test_status_and_resubmission_from_what_slurm_reports(
        tmp_path: Path, fake_slurm: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert sweep.main(base2new(out)) == 0
    train = "base2new/train_base/MaPLe/vit_b16_c2_ep5_batch4_2ctx/{}/seed1"
    test = "base2new/test_new/MaPLe/vit_b16_c2_ep5_batch4_2ctx/{}/seed1"
    # dtd trains; eurosat's training failed, so Slurm cancelled its evaluation; dtd's
    # evaluation was cancelled by hand
    (fake_slurm / "squeue.txt").write_text("100_0|RUNNING\n555|RUNNING\n")
    (fake_slurm / "sacct.txt").write_text(
        "100_1|FAILED\n101_0|CANCELLED by 1000\n101_1|CANCELLED by 0\n")
    capsys.readouterr()
    assert sweep.main(base2new(out, "--status")) == 0
    status = capsys.readouterr().out
    assert re.search(rf"running +100_0 +{re.escape(train.format('dtd'))}  \(RUNNING\)", status)
    assert re.search(rf"failed +100_1 +{re.escape(train.format('eurosat'))}  \(FAILED\)",
                     status)
    assert re.search(rf"failed +101_0 +{re.escape(test.format('dtd'))}  \(CANCELLED by 1000\)",
                     status)
    log = out / "sweep_logs" / (train.format("dtd").replace("/", "_") + ".log")
    assert str(log) in status
    assert "4 jobs: 1 running, 3 failed" in status

    # again: the failed training and both evaluations; the running training is left alone
    assert sweep.main(base2new(out)) == 0
    printed = capsys.readouterr().out
    assert "job 102: base2new/train_base/MaPLe\n" in printed
    assert sorted(p.name for p in fake_slurm.glob("sbatch_*.sh"))[-1] == "sbatch_104.sh"
    eurosat_train = sbatch_options(fake_slurm / "sbatch_102.sh")
    assert "array" not in eurosat_train and "dependency" not in eurosat_train
    dependencies = {sbatch_options(fake_slurm / f"sbatch_{n}.sh")["dependency"]
                    for n in (103, 104)}
    assert dependencies == {"afterok:100_0", "afterok:102"}  # on the running one, the new one

    # all queued now, and dtd's training finished on disk: nothing to submit
    (fake_slurm / "squeue.txt").write_text("102|RUNNING\n103|PENDING\n104|PENDING\n")
    write_train_log(out / "base2new/train_base/dtd/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx"
                          "/seed1", 70.0)
    assert sweep.main(base2new(out)) == 0
    assert "Nothing to submit" in capsys.readouterr().out
    assert not (fake_slurm / "sbatch_105.sh").exists()
    assert sweep.main(base2new(out, "--status")) == 0
    assert "4 jobs: 1 done, 1 running, 2 pending" in capsys.readouterr().out


def test_dry_run_shows_the_arrays_without_submitting(tmp_path: Path, fake_slurm: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert sweep.main(["xd", "--methods", "maple", "coop", "--datasets", "dtd", "eurosat",
                       "--output", str(out), "--launcher", "slurm", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    # per method: one array of the 3 trainings (seeds); the 6 evaluations in 2 arrays whose
    # task i waits for training i (rather than 3 arrays, one per training)
    assert "array <1> of 3 jobs: xd/train/CoOp\n" in printed
    assert "array <2> of 3 jobs: xd/train/MaPLe\n" in printed
    assert printed.count("of 3 jobs: xd/test/MaPLe, aftercorr:<2>\n") == 2
    assert "18 job(s) in 6 submission(s)." in printed
    assert not list(fake_slurm.glob("sbatch_*")) and not (out / "sweep_logs").exists()


def job(name: str, *after: str) -> Job:
    return Job(name, "true", after=after, stage="s")


def test_dependency_shapes() -> None:
    tasks = {"7_0": ("7", 0), "7_1": ("7", 1), "7_2": ("7", 2)}
    # one evaluation per training: one array aligned with the trainings' array
    (sub,) = slurm.split("s", [job("e1", "t1"), job("e0", "t0"), job("e2", "t2")],
                         {"t0": "7_0", "t1": "7_1", "t2": "7_2"}, tasks)
    assert sub.dependency == "aftercorr:7" and [j.name for j in sub.jobs] == ["e0", "e1", "e2"]
    # evaluations of one training out of three: aligned arrays would not start at index 0
    subs = slurm.split("s", [job("a", "t1"), job("b", "t1"), job("free")],
                       {"t1": "7_1"}, tasks)
    assert [(s.dependency, [j.name for j in s.jobs]) for s in subs] == [
        ("", ["free"]), ("afterok:7_1", ["a", "b"])]
    # an average over seeds waits for all of them; a finished dependency is no dependency
    (avg,) = slurm.split("s", [job("avg", "t0", "t1", "done")], {"t0": "7_0", "t1": "7_1"},
                         tasks)
    assert avg.dependency == "afterok:7_0:7_1"


def test_time_limits_and_settings_errors(tmp_path: Path) -> None:
    assert [slurm.parse_minutes(t) for t in ("90", "2:00:00", "1-00:00", "30:30", 45)] == [
        90, 120, 1440, 31, 45]
    with pytest.raises(SystemExit, match="not a Slurm time"):
        slurm.parse_minutes("two hours")
    bad = tmp_path / "bad.yaml"
    bad.write_text("partition: gpu\ngpus: 2\n")
    with pytest.raises(SystemExit, match=r"unknown key\(s\) \['gpus'\]; valid keys: partition"):
        slurm.load_resources(bad, {})
    bad.write_text("stages: {'*': {stages: {}}}\n")
    with pytest.raises(SystemExit, match="stages: \\*: unknown key"):
        slurm.load_resources(bad, {}).for_stage("x")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"name": "x", "command": "true"}\n')
    with pytest.raises(SystemExit, match="--sbatch 'constraint': write KEY=VALUE"):
        sweep.main(["--jobs", str(jobs), "--launcher", "slurm", "--sbatch", "constraint"])


def test_a_refused_submission_says_what_sbatch_said(tmp_path: Path, fake_slurm: Path) -> None:
    message = "sbatch: error: invalid partition specified: nope"
    (fake_slurm / "sbatch").write_text(f"#!/bin/bash\necho '{message}' >&2\nexit 1\n")
    with pytest.raises(SystemExit, match=r"(?s)sbatch refused the jobs of base2new/train_base/"
                                         r"MaPLe: .*invalid partition specified: nope"):
        sweep.main(base2new(tmp_path / "out", "--partition", "nope"))


def test_without_submitit_the_slurm_launcher_says_how_to_install_it(
        tmp_path: Path, fake_slurm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit fails
    with pytest.raises(SystemExit, match=r"needs submitit: pip install submitit==1\.5\.4"):
        sweep.main(base2new(tmp_path / "out"))
    assert sweep.main(base2new(tmp_path / "out", "--dry-run")) == 0  # listing needs nothing


def test_wait_follows_the_queue_until_every_job_ended(tmp_path: Path, fake_slurm: Path) -> None:
    """--wait: the queue is read again until no job is queued; a job Slurm ended without a
    word from the job (here at its time limit, requeues exhausted) is a failure."""
    log_dir = tmp_path / "logs"
    # squeue's answers, one per call: both queued, b still running (a has ended), none
    (fake_slurm / "squeue").write_text(f"""#!/bin/bash
n=$(cat "$FAKE_SLURM/calls" 2>/dev/null || echo 0); echo $((n + 1)) > "$FAKE_SLURM/calls"
case $n in
  0) printf '100_0|RUNNING\\n100_1|PENDING\\n' ;;
  1) printf '100_1|RUNNING\\n'; echo ok > {log_dir}/state/a.ended ;;
esac
""")
    (fake_slurm / "sacct.txt").write_text("100_0|COMPLETED\n100_1|TIMEOUT\n")
    jobs = [Job("a", "true", stage="s"), Job("b", "true", stage="s")]
    launcher = slurm.SubmititLauncher(jobs, log_dir, slurm.SlurmSubmitter(
        log_dir / "submitit", slurm.Resources()), slurm.SlurmQueue(), poll=0.01)
    failures = launcher.run(wait=True)
    assert [(f.name, f.reason) for f in failures] == [("b", "TIMEOUT")]
    assert (fake_slurm / "calls").read_text().strip() == "3"
