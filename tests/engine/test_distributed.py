"""Training in several processes (as torchrun starts them), on the CPU with the Gloo backend:
averaged gradients are the global batch's, every process ends with the same weights, the
epoch is sharded, and only the first process writes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from engine import distributed
from engine.checkpoint import load_checkpoint
from engine.data.samplers import build_sampler
from engine.utils import set_random_seed

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_torchrun(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives each process (one node)."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank)})


def run_processes(fn, *args) -> None:
    mp.spawn(fn, args=(WORLD, free_port(), *args), nprocs=WORLD, join=True)


# --------------------------------------------------------------------------- gradients


def gradient_worker(rank: int, world: int, port: int, out: str) -> None:
    as_torchrun(rank, world, port)
    distributed.init_distributed(use_cuda=False)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
        model[2].bias.requires_grad_(False)  # frozen: not synced, not touched
        x = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
        y = torch.arange(8) % 3
        part = slice(rank * 4, (rank + 1) * 4)
        F.cross_entropy(model(x[part]), y[part]).backward()
        if rank == 1:
            model[0].bias.grad = None  # a parameter without gradient in one process
        distributed.average_gradients(model.parameters())
        torch.save({name: p.grad for name, p in model.named_parameters()},
                   os.path.join(out, f"grads{rank}.pt"))
    finally:
        distributed.shutdown()


def test_averaged_gradients_are_the_global_batch_gradient(tmp_path):
    run_processes(gradient_worker, str(tmp_path))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 3
    # the reference: rank 1 contributes no gradient to model[0].bias
    F.cross_entropy(model(x), y).backward()
    bias_of_rank0 = torch.autograd.grad(F.cross_entropy(model(x[:4]), y[:4]), model[0].bias)[0]
    for rank in range(WORLD):
        grads = torch.load(tmp_path / f"grads{rank}.pt", weights_only=True)
        torch.testing.assert_close(grads["0.weight"], model[0].weight.grad, atol=1e-6, rtol=0)
        torch.testing.assert_close(grads["2.weight"], model[2].weight.grad, atol=1e-6, rtol=0)
        torch.testing.assert_close(grads["0.bias"], bias_of_rank0 / 2, atol=1e-6, rtol=0)
        assert grads["2.bias"] is None


def test_a_global_batch_that_does_not_divide_is_explained(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="multiple of 3"):
        distributed.per_process_batch(4)
    assert distributed.per_process_batch(6) == 2


def test_one_process_changes_nothing():
    assert not distributed.launched() and distributed.world_size() == 1
    assert type(build_sampler("RandomSampler", range(5), shard=True)).__name__ == "RandomSampler"
    param = nn.Parameter(torch.ones(2))
    param.grad = torch.full((2,), 3.0)
    distributed.average_gradients([param])
    assert torch.equal(param.grad, torch.full((2,), 3.0))


# --------------------------------------------------------------------------- train.py


def train_args(root: str, output: str) -> list[str]:
    return ["--root", root, "--seed", "1", "--trainer", "CoOp", "--output-dir", output,
            "DATASET.NAME", "ToyFolder", "MODEL.BACKBONE.NAME", "tiny", "INPUT.SIZE", "(32, 32)",
            "INPUT.TRANSFORMS", "['normalize']", "USE_CUDA", "False",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
            "DATALOADER.TEST.BATCH_SIZE", "6", "OPTIM.NAME", "sgd", "OPTIM.LR", "0.05",
            "OPTIM.MAX_EPOCH", "2", "OPTIM.WARMUP_EPOCH", "-1", "TRAINER.COOP.PREC", "fp32",
            "TRAINER.COOP.N_CTX", "4", "TRAIN.PRINT_FREQ", "1"]


def training_worker(rank: int, world: int, port: int, root: str, output: str, out: str) -> None:
    as_torchrun(rank, world, port)
    os.environ["ENGINE_IMPORTS"] = "tests.engine.toy"
    import train
    from engine.trainer import SimpleTrainer
    from trainers.base import PromptTrainer

    seen: list[dict] = []
    evaluated: list[int] = []
    forward_backward, after_train = PromptTrainer.forward_backward, SimpleTrainer.after_train
    model_inference = PromptTrainer.model_inference

    def recording_forward_backward(self, batch):
        seen.append({"epoch": self.epoch, "images": list(batch["impath"])})
        return forward_backward(self, batch)

    def counting_model_inference(self, input):
        evaluated.append(input.shape[0])
        return model_inference(self, input)

    def saving_after_train(self):
        after_train(self)  # ends with the final test, logged by the first process
        torch.save(self.model.prompt_learner.state_dict(), os.path.join(out, f"state{rank}.pt"))
        final_test = {"accuracy": self.test(), "images": sum(evaluated) // 2,
                      "total": self.evaluator._total, "y_true": sorted(self.evaluator._y_true)}
        with open(os.path.join(out, f"seen{rank}.json"), "w") as f:
            json.dump({"steps": seen, "test": final_test}, f)

    PromptTrainer.forward_backward = recording_forward_backward
    PromptTrainer.model_inference = counting_model_inference
    SimpleTrainer.after_train = saving_after_train
    train.import_plugins()
    train.main(train.build_parser().parse_args(train_args(root, output)))


def test_train_py_under_torchrun_equals_one_process_on_the_global_batches(tmp_path):
    from engine.trainer import build_trainer
    from tests.engine.toy import make_image_folder

    root = make_image_folder(str(tmp_path / "data"), per_class=4)  # 12 training images
    output = tmp_path / "ddp"
    run_processes(training_worker, root, str(output), str(tmp_path))

    states = [torch.load(tmp_path / f"state{r}.pt", weights_only=True) for r in range(WORLD)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    records = [json.loads((tmp_path / f"seen{r}.json").read_text()) for r in range(WORLD)]
    seen = [record["steps"] for record in records]
    tests = [record["test"] for record in records]
    # each process loads 2 images a step, 3 steps an epoch, on its own half of the epoch
    for epoch in range(2):
        parts = [[img for step in s if step["epoch"] == epoch for img in step["images"]]
                 for s in seen]
        assert [len(p) for p in parts] == [6, 6]
        assert not set(parts[0]) & set(parts[1])
        assert len(set(parts[0]) | set(parts[1])) == 12
    first_epoch = [[img for step in s if step["epoch"] == 0 for img in step["images"]]
                   for s in seen]
    second_epoch = [[img for step in s if step["epoch"] == 1 for img in step["images"]]
                    for s in seen]
    assert first_epoch != second_epoch  # a new permutation every epoch

    # one writer: the checkpoint holds the common weights; log.txt has one run's lines
    saved = load_checkpoint(str(output / "prompt_learner" / "model.pth.tar-2"))
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in states[0].items())
    log = (output / "log.txt").read_text()
    assert log.count("Finish training") == 1
    # the final test and the one the worker adds, each over the whole split, logged once
    assert log.count("* accuracy:") == 2 and log.count("* total: 12\n") == 2

    # one process trained on the same global batches (both halves of every step) ends the same
    import train

    train.import_plugins()
    cfg = train.setup_cfg(train.build_parser().parse_args(
        train_args(root, str(tmp_path / "single"))))
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    dataset = trainer.train_loader_x.dataset
    index = {item.impath: i for i, item in enumerate(dataset.data_source)}
    steps = range(len(seen[0]))
    batches = {epoch: [[index[img] for s in seen for img in s[step]["images"]]
                       for step in steps if seen[0][step]["epoch"] == epoch] for epoch in (0, 1)}

    class GlobalBatches:
        """The global batches of the trainer's current epoch."""

        def __iter__(self):
            return iter(batches[trainer.epoch])

        def __len__(self):
            return len(batches[trainer.epoch])

    trainer.train_loader_x = DataLoader(dataset, batch_sampler=GlobalBatches())
    trainer.train()
    # fp32 rounding only: merely reordering the images inside each batch of the one-process
    # run moves the context by ~7e-6 here; other batches move it by ~0.7
    for key, value in trainer.model.prompt_learner.state_dict().items():
        torch.testing.assert_close(value, states[0][key], atol=1e-4, rtol=0)
    assert Path(tmp_path / "single" / "prompt_learner" / "model.pth.tar-2").exists()

    # evaluation: each process ran 6 of the 12 test images, and both report all 12, with the
    # accuracy of one process evaluating the same weights on the whole split
    assert [t["images"] for t in tests] == [6, 6]
    assert [t["total"] for t in tests] == [12, 12]
    labels = sorted(item.label for item in trainer.dm.dataset.test)
    assert tests[0]["y_true"] == tests[1]["y_true"] == labels
    trainer.model.prompt_learner.load_state_dict(states[0])
    assert tests[0]["accuracy"] == tests[1]["accuracy"] == trainer.test()
