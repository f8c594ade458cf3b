"""Jobs that Slurm would keep pending for ever: a request the partition cannot satisfy is
refused before anything is submitted (sinfo's nodes, job size and time limit), and --wait
stops, job by job, at a pending reason Slurm never resolves by itself (PartitionNodeLimit,
PartitionTimeLimit, ...), while it keeps waiting through the passing ones. sbatch, squeue,
sacct, sinfo and scancel are stand-ins (tests/protocols/test_sweep_slurm.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts import slurm, sweep
from scripts.jobs import FAILED, PENDING, Job, Records
from tests.protocols.test_sweep_slurm import base2new, fake_slurm  # noqa: F401
from tests.protocols.test_sweep_slurm_flows import tool

pytest.importorskip("submitit")

ONE_NODE = 'echo "debug*|1|1-infinite|infinite"\n'  # a one-node default partition
TRAIN = "base2new/train_base/MaPLe/vit_b16_c2_ep5_batch4_2ctx/{}/seed1"
TEST = "base2new/test_new/MaPLe/vit_b16_c2_ep5_batch4_2ctx/{}/seed1"


def refusal(out: Path, *extra: str) -> str:
    with pytest.raises(SystemExit) as stop:
        sweep.main(base2new(out, *extra))
    return str(stop.value)


def test_a_request_the_partition_cannot_satisfy_is_refused_up_front(
        tmp_path: Path, fake_slurm: Path, capsys: pytest.CaptureFixture) -> None:  # noqa: F811
    tool(fake_slurm, "sinfo", ONE_NODE)
    text = refusal(tmp_path / "out", "--nodes", "2")
    assert "\n" not in text
    assert text.startswith("error: the jobs of base2new/train_base/MaPLe ask for 2 nodes, and "
                           "partition debug has 1 node (Slurm would keep them pending for "
                           "ever: PartitionNodeLimit); ask for --nodes 1 or fewer")
    assert text.endswith("Nothing was submitted.")
    assert not list(fake_slurm.glob("sbatch_*.sh"))
    assert not list((tmp_path / "out" / "sweep_logs" / "state").glob("*.json"))
    capsys.readouterr()
    assert sweep.main(base2new(tmp_path / "out", "--nodes", "2", "--dry-run")) == 0
    assert "note: the jobs of base2new/train_base/MaPLe ask for 2 nodes, and partition debug " \
           "has 1 node" in capsys.readouterr().out

    # a partition's job size and time limit (sinfo lists a partition once per node state)
    tool(fake_slurm, "sinfo", 'echo "gpu|3|1-2|4:00:00"; echo "gpu|1|1-2|4:00:00"\n')
    text = refusal(tmp_path / "out", "--partition", "gpu", "--nodes", "3")
    assert "ask for 3 nodes, and partition gpu has 4 nodes, at most 2 per job" in text
    assert "--nodes 2 or fewer" in text
    text = refusal(tmp_path / "out", "--partition", "gpu", "--time", "1-0")
    assert ("ask for 1-00:00:00 each, and partition gpu allows at most 4:00:00 (Slurm would "
            "keep them pending for ever: PartitionTimeLimit); ask for --time 4:00:00 or "
            "less") in text

    # a stage of its own: nothing is submitted, not even the stages that fit
    config = tmp_path / "slurm.yaml"
    config.write_text("stages:\n  'base2new/test_new/*': {nodes: 2}\n")
    tool(fake_slurm, "sinfo", ONE_NODE)
    text = refusal(tmp_path / "out", "--slurm-config", str(config))
    assert "the jobs of base2new/test_new/MaPLe ask for 2 nodes" in text
    assert not list(fake_slurm.glob("sbatch_*.sh"))

    # what fits is submitted
    assert sweep.main(base2new(tmp_path / "out", "--time", "4:00:00")) == 0
    assert len(list(fake_slurm.glob("sbatch_*.sh"))) == 2


def test_without_sinfo_nothing_is_refused(tmp_path: Path, fake_slurm: Path) -> None:  # noqa: F811
    tool(fake_slurm, "sinfo", "echo 'sinfo: error: cannot reach slurmctld' >&2; exit 1\n")
    assert sweep.main(base2new(tmp_path / "out", "--nodes", "2")) == 0
    assert len(list(fake_slurm.glob("sbatch_*.sh"))) == 2


@pytest.mark.parametrize("reason, stuck", [
    ("PartitionNodeLimit", True), ("PartitionTimeLimit", True), ("PartitionConfig", True),
    ("BadConstraints", True), ("InvalidAccount", True), ("QOSMaxWallDurationPerJobLimit", True),
    ("AssocMaxNodePerJobLimit", True), ("QOSMaxGRESPerNode", True), ("QOSMinGRES", True),
    ("Resources", False), ("Priority", False), ("Dependency", False), ("BeginTime", False),
    ("None", False), ("JobHeldUser", False), ("ReqNodeNotAvail", False),
    ("AssocMaxJobsLimit", False), ("QOSMaxJobsPerUserLimit", False),
    ("AssocGrpGRES", False), ("MaxJobsPerAccount", False),
])
def test_which_pending_reasons_never_pass(reason: str, stuck: bool) -> None:
    status = slurm.queued_status("PENDING", reason)
    assert status.state == (FAILED if stuck else PENDING)
    if stuck:
        assert status.detail.startswith(f"pending for ever ({reason}): it asks for ")
        assert "stays queued until the sweep runs again, which replaces it" in status.detail
    assert slurm.queued_status("RUNNING", reason).state != FAILED


def test_wait_stops_at_jobs_pending_for_ever_and_a_rerun_replaces_them(
        tmp_path: Path, fake_slurm: Path, capsys: pytest.CaptureFixture,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """sinfo cannot tell at submission; squeue then says the trainings (100_0, 100_1) need
    more nodes than the partition has: --wait ends at once, each training with Slurm's reason
    and each evaluation (101_0, 101_1) as waiting for it, and exits 1."""
    out = tmp_path / "out"
    # squeue lists the jobs 5 times, then none (a sweep still polling then calls them failed
    # for other reasons); polls take no time here
    tool(fake_slurm, "squeue", 'n=$(cat "$FAKE_SLURM/squeue_calls" 2>/dev/null | wc -l)\n'
                               'echo x >> "$FAKE_SLURM/squeue_calls"\n'
                               '[ "$n" -ge 5 ] || cat "$FAKE_SLURM/squeue.txt"\n')
    monkeypatch.setattr(slurm.time, "sleep", lambda _seconds: None)
    (fake_slurm / "squeue.txt").write_text(
        "100_0|PENDING|PartitionNodeLimit|2|debug\n100_1|PENDING|PartitionNodeLimit|2|debug\n"
        "101_0|PENDING|Dependency|2|debug\n101_1|PENDING|Dependency|2|debug\n999\n\n")
    capsys.readouterr()
    assert sweep.main(base2new(out, "--nodes", "2", "--wait")) == 1
    printed = capsys.readouterr().out
    assert "4 job(s) failed:" in printed
    for dataset in ("dtd", "eurosat"):
        assert re.search(rf"  {re.escape(TRAIN.format(dataset))}: pending for ever "
                         r"\(PartitionNodeLimit\): it asks for more nodes than its partition "
                         r"has: ask for fewer --nodes or another --partition; it stays queued",
                         printed)
        assert f"  {TEST.format(dataset)}: pending for ever: it waits for " \
               f"{TRAIN.format(dataset)}, which never starts" in printed
    assert len((fake_slurm / "squeue_calls").read_text().split()) <= 3  # no round of polling

    # --status says the same of the trainings
    (fake_slurm / "squeue_calls").write_text("")
    assert sweep.main(base2new(out, "--status")) == 0
    assert re.search(r"failed +100_0 .*\(pending for ever \(PartitionNodeLimit\)",
                     capsys.readouterr().out)

    # run again with what the partition has: the stuck jobs are cancelled and submitted anew
    tool(fake_slurm, "scancel", 'echo "$@" >> "$FAKE_SLURM/scancelled"\n')
    assert sweep.main(base2new(out, "--nodes", "1")) == 0
    assert sorted((fake_slurm / "scancelled").read_text().split()) == [
        "100_0", "100_1", "101_0", "101_1"]
    assert sorted(p.name for p in fake_slurm.glob("sbatch_*.sh"))[-2:] == [
        "sbatch_102.sh", "sbatch_103.sh"]
    assert {Records(out / "sweep_logs").get(TRAIN.format(d)).job_id
            for d in ("dtd", "eurosat")} == {"102_0", "102_1"}


def test_wait_goes_on_through_reasons_that_pass(tmp_path: Path, fake_slurm: Path) -> None:  # noqa: F811
    """PartitionNodeLimit where the partition has the nodes (some are down or drained), then
    BeginTime and Priority: the wait goes on until the jobs end."""
    log_dir = tmp_path / "logs"
    tool(fake_slurm, "sinfo", 'echo "debug*|4|1-infinite|infinite"\n')
    tool(fake_slurm, "squeue", f"""n=$(cat "$FAKE_SLURM/calls" 2>/dev/null || echo 0)
echo $((n + 1)) > "$FAKE_SLURM/calls"
case $n in
  0|1) printf '100_0|PENDING|PartitionNodeLimit|2|debug\\n100_1|PENDING|BeginTime|2|debug\\n' ;;
  2) printf '100_0|PENDING|Priority|2|debug\\n100_1|RUNNING|None|2|debug\\n' ;;
  *) echo ok > {log_dir}/state/a.ended; echo ok > {log_dir}/state/b.ended ;;
esac
""")
    jobs = [Job("a", "true", stage="s"), Job("b", "true", stage="s")]
    resources = slurm.Resources(nodes=2)
    launcher = slurm.SubmititLauncher(jobs, log_dir, slurm.SlurmSubmitter(
        log_dir / "submitit", resources), slurm.SlurmQueue(), poll=0.01)
    assert launcher.run(wait=True) == []
    assert int((fake_slurm / "calls").read_text()) >= 4
    queue = slurm.SlurmQueue()  # what --status shows meanwhile
    (fake_slurm / "calls").write_text("0")
    status = queue(slurm.Record("slurm", "100_0", "log"))
    assert status == slurm.Status(PENDING, "PENDING (PartitionNodeLimit: nodes of its "
                                           "partition are down or drained)")
