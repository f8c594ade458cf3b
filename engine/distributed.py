"""Training on several GPUs (or CPU processes): one process per device, launched by torchrun.

``torchrun --nproc_per_node N train.py ...`` (one machine) or ``torchrun --nnodes M
--nproc_per_node N --rdzv_backend c10d --rdzv_endpoint HOST:PORT train.py ...`` (started on
each of M machines) sets ``WORLD_SIZE`` (all processes), ``RANK`` (0 .. WORLD_SIZE-1 over all
machines), ``LOCAL_RANK`` (0 .. N-1 on this machine) and ``GROUP_RANK`` (the machine); the
engine then

- joins the process group (NCCL on CUDA, each process on the GPU of its ``LOCAL_RANK`` among
  the machine's visible GPUs; Gloo on CPU);
- builds the trainer in turn (:func:`in_turn`): what the first process downloads or writes
  (CLIP weights, a generated dataset, few-shot selections) the others find done;
- splits every training batch over the processes: ``DATALOADER.TRAIN_X.BATCH_SIZE`` stays the
  global batch (as with the official code's DataParallel), each process loads
  ``BATCH_SIZE / N`` images of its own shard of the epoch's permutation;
- averages the gradients of what the optimizers update before every step
  (:meth:`engine.trainer.TrainerBase.model_update`), so every process holds the same weights
  and the step is the one of the global batch. Prompt learners train a few thousand numbers,
  so one all-reduce of them per step costs nothing next to the towers. This works whatever
  method a trainer calls on its model (DistributedDataParallel only syncs through
  ``forward``, and prompt trainers call several entry points);
- lets only the first process write checkpoints, ``log.txt`` and tensorboard files.

Evaluation is sharded too when the evaluator can gather its shards (``gather_from_processes``,
as :class:`engine.evaluator.Classification` does): each process evaluates every N-th image and
all report the whole split's numbers (the first one logs them). An evaluator without it
evaluates the whole split in every process.
Without torchrun (``WORLD_SIZE`` unset or 1) nothing here does anything.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def launched() -> bool:
    """True in a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if initialized() else 1


def rank() -> int:
    return dist.get_rank() if initialized() else 0


def is_main() -> bool:
    """The process that logs to files and writes checkpoints."""
    return rank() == 0


def local_rank() -> int:
    """The process's index on its machine (its GPU there)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if initialized() else 0


def node_rank() -> int:
    """The machine's index among the machines of the run."""
    return int(os.environ.get("GROUP_RANK", "0")) if initialized() else 0


def init_distributed(use_cuda: bool) -> None:
    """Join torchrun's process group (once; nothing without torchrun)."""
    if not launched() or initialized():
        return
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; "
                           "run a single process or install a build with distributed support")
    if use_cuda:
        device = int(os.environ.get("LOCAL_RANK", "0"))  # on this machine, not over all
        if device >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {device} but only {torch.cuda.device_count()} GPUs "
                               "are visible on this machine: start at most that many processes "
                               "per node (torchrun --nproc_per_node)")
        torch.cuda.set_device(device)
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(backend)
    logger.info("Process %d of %d (node %d, local rank %d, %s)", rank(), world_size(),
                node_rank(), local_rank(), backend)


def shutdown() -> None:
    if initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if initialized():
        dist.barrier()


@contextmanager
def in_turn() -> Iterator[None]:
    """Run the body in three turns: the first process; then the first process of every other
    machine; then all others. Files the body writes once (a download, a generated dataset, a
    cache) are complete before anyone else looks for them, whether the machines share the
    folder or each has its own. Every process must enter (it holds barriers)."""
    turn = 0 if rank() == 0 else 1 if local_rank() == 0 else 2
    for current in range(3):
        if current == turn:
            yield
        barrier()


def per_process_batch(batch_size: int, what: str = "DATALOADER.TRAIN_X.BATCH_SIZE") -> int:
    """The share of a global batch that each process loads."""
    n = world_size()
    if batch_size % n:
        raise ValueError(f"{what} = {batch_size} is the global batch and must divide evenly "
                         f"over the {n} processes; set it to a multiple of {n}")
    return batch_size // n


@torch.no_grad()
def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the processes (one all-reduce per dtype). A
    parameter without a gradient here counts as a zero gradient, so every process takes part
    in the same collective calls."""
    n = world_size()
    if n == 1:
        return
    by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
    for param in params:
        if param.requires_grad:
            by_dtype.setdefault(param.dtype, []).append(param)
    for dtype in sorted(by_dtype, key=str):  # the same order in every process
        group = by_dtype[dtype]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in group])
        dist.all_reduce(flat)
        flat /= n
        for param, grad in zip(group, flat.split([p.numel() for p in group]), strict=True):
            param.grad = grad.view_as(param).clone()


def all_gather_objects(obj: object) -> list:
    """``obj`` of every process, in rank order (picklable objects of this engine only)."""
    if world_size() == 1:
        return [obj]
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
