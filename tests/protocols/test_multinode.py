"""One training over two "nodes" on this machine, the way a Slurm job with ``--nodes 2`` runs
it: on each node, the sweep's :class:`RunJob` (in the environment Slurm gives each task) runs
the protocol script, which starts train.py through ``scripts/torchrun.sh`` (``torchrun
--nnodes 2 --rdzv_backend c10d``, Gloo on the CPU). The weights equal those of one process
trained on the same global batches."""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from engine.checkpoint import load_checkpoint
from engine.trainer import build_trainer
from engine.utils import set_random_seed
from scripts.run_job import RunJob, torchrun_args

pytest.importorskip("submitit")

REPO = Path(__file__).resolve().parents[2]
SCRIPT_ARGS = ["CoOp", "demo_tiny", "demo", "4", "1"]  # few_shot.sh TRAINER CFG DATASET K SEED
# no random flips: augmentation draws differ between one process and two
OPTS = ["OPTIM.MAX_EPOCH", "2", "USE_CUDA", "False", "INPUT.TRANSFORMS", "['normalize']"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_task_environment(node: int, port: int) -> dict[str, str]:
    """What Slurm and submitit set for the task of one node of a 2-node job (one task each)."""
    return {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "2",
            "SLURM_JOB_NODELIST": "127.0.0.1,127.0.0.1", "SLURM_NODEID": str(node),
            "SLURM_PROCID": str(node), "SLURM_LOCALID": "0", "SLURM_NTASKS": "2",
            "SWEEP_RENDEZVOUS_PORT": str(port)}


def test_torchrun_options() -> None:
    assert torchrun_args(2, 4, "gpu17", 29400, "77_3") == [
        "--nnodes", "2", "--nproc_per_node", "4", "--rdzv_backend", "c10d",
        "--rdzv_endpoint", "gpu17:29400", "--rdzv_id", "77_3"]
    assert torchrun_args(1, 4, "gpu17", 29400, "78")[:1] == ["--standalone"]


@pytest.mark.slow
def test_two_nodes_equal_one_process_on_the_same_global_batches(tmp_path: Path) -> None:
    data, out, record = tmp_path / "data", tmp_path / "out", tmp_path / "record"
    data.mkdir()
    record.mkdir()
    env = {"DATA": str(data), "OUTPUT": str(out), "EXTRA_OPTS": shlex.join(OPTS),
           "ENGINE_IMPORTS": "tests.protocols.train_hooks", "SWEEP_TEST_RECORD": str(record)}
    run = RunJob("few_shot/demo", ["bash", str(REPO / "scripts/protocols/few_shot.sh"),
                                   *SCRIPT_ARGS], env, str(tmp_path),
                 str(tmp_path / "job.log"), str(tmp_path / "logs"), nodes=2, gpus_per_node=1)
    (tmp_path / "job.pkl").write_bytes(pickle.dumps(run))
    port = free_port()
    nodes = [subprocess.Popen(
        [sys.executable, "-c", "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))()",
         str(tmp_path / "job.pkl")], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **slurm_task_environment(node, port), "PYTHONPATH": str(REPO)})
        for node in range(2)]
    outputs = [node.communicate(timeout=1800)[0] for node in nodes]
    logs = [Path(tmp_path / name).read_text() for name in ("job.log", "job.log.node1")]
    assert [node.returncode for node in nodes] == [0, 0], outputs + logs
    assert all("/scripts/torchrun.sh train.py" in log for log in logs)
    # the rendezvous gave the two nodes their ranks (one process each: rank = node)
    pattern = r"Process (\d) of 2 \(node (\d), local rank 0"
    ranks = {m for log in logs for m in re.findall(pattern, log)}
    assert ranks == {("0", "0"), ("1", "1")}

    run_dir = out / "demo/CoOp/demo_tiny_4shots/seed1"
    log = (run_dir / "log.txt").read_text()
    assert log.count("Finish training") == 1 and "* total: 96" in log  # the whole test split
    # the dataset was generated once, by the first process, before the other looked for it
    prepared = [json.loads((record / f"prepare{r}.json").read_text()) for r in range(2)]
    assert [p["found"] for p in prepared] == [False, True]
    assert prepared[1]["start"] >= prepared[0]["end"]

    # each step: 8 images per process, 16 in all (the global batch of demo_tiny.yaml)
    steps = [[json.loads(line) for line in (record / f"rank{r}.jsonl").read_text().splitlines()]
             for r in range(2)]
    assert [len(s) for s in steps] == [4, 4] and all(len(x["images"]) == 8 for x in steps[0])
    global_batches = [(a["epoch"], a["images"] + b["images"]) for a, b in zip(*steps,
                                                                                strict=True)]
    multi = load_checkpoint(str(run_dir / "prompt_learner/model.pth.tar-2"))["state_dict"]
    single = train_one_process(tmp_path / "single", data, global_batches)
    for key, value in multi.items():  # fp32 rounding of the order inside a batch only
        torch.testing.assert_close(single[key], value, atol=1e-4, rtol=0)


def train_one_process(output: Path, data: Path, batches: list[tuple[int, list[str]]]) -> dict:
    """The same training in this process, fed the global batches of the two-node run."""
    import train

    train.import_plugins()
    args = train.build_parser().parse_args([
        "--root", str(data), "--seed", "1", "--trainer", "CoOp",
        "--dataset-config-file", str(REPO / "configs/datasets/demo.yaml"),
        "--config-file", str(REPO / "configs/trainers/CoOp/demo_tiny.yaml"),
        "--output-dir", str(output), "DATASET.NUM_SHOTS", "4", *OPTS, "TEST.NO_TEST", "True"])
    cfg = train.setup_cfg(args)
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    dataset = trainer.train_loader_x.dataset
    index = {item.impath: i for i, item in enumerate(dataset.data_source)}

    class GlobalBatches:
        def __iter__(self):
            return iter([[index[img] for img in images] for epoch, images in batches
                         if epoch == trainer.epoch])

        def __len__(self):
            return sum(epoch == trainer.epoch for epoch, _images in batches)

    trainer.train_loader_x = DataLoader(dataset, batch_sampler=GlobalBatches())
    trainer.train()
    return trainer.model.prompt_learner.state_dict()
