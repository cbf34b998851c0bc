"""Multi-GPU and multi-node training with PyTorch's own DistributedDataParallel and ``torchrun``.

One machine, 4 GPUs::

    torchrun --nproc_per_node 4 -m maskdepth.train --data DIR --model u2netp-md \\
        --size 224 --epochs 10 --batch 16 --out runs/u2netp-224

Two machines (run on each, ``--node_rank`` 0 and 1; HOST is node 0's address)::

    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 4 --master_addr HOST \\
        --master_port 29500 -m maskdepth.train ...

``--batch`` is per process, so the global batch is ``batch x WORLD_SIZE`` and an epoch has
WORLD_SIZE times fewer steps; the learning rate is not scaled. torchrun sets RANK, WORLD_SIZE and
LOCAL_RANK; the backend is NCCL on CUDA and gloo on CPU, joined once per command (progressive
stages included). Rank 0 alone writes files and shows the progress bar; validation metrics are
summed over all ranks. BatchNorm statistics are per
rank (``--sync-bn`` makes them global on CUDA; SyncBatchNorm does not run on CPU).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_environment() -> Dist:
    """RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them (defaults: one process)."""
    env = os.environ
    return Dist(
        int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    )


_JOINS = [0]  # process groups this process has joined (one per command; see joined)


def setup(job: Dist, device: torch.device) -> bool:
    """Join the process group (NCCL on CUDA, gloo on CPU); True when this call joined it,
    False with one process or when it is joined already."""
    if not job.active or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    device_id = device if device.type == "cuda" else None  # None: init_process_group's default
    dist.init_process_group(backend, rank=job.rank, world_size=job.world, device_id=device_id)
    _JOINS[0] += 1
    return True


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def joined(job: Dist, device: torch.device) -> Iterator[None]:
    """The process group for the block: joined on entry unless it is already, and left on
    exit only by the block that joined it. ``train`` runs in one; progressive stages run in
    one around all their ``train`` calls, since destroying and re-creating a NCCL group in one
    process is known to hang."""
    mine = setup(job, device)
    try:
        yield
    finally:
        if mine:
            shutdown()


def joins() -> int:
    """How many process groups this process has joined (the stage test expects one)."""
    return _JOINS[0]


def all_sum(tensor: torch.Tensor, job: Dist) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (a no-op for one process); returns it."""
    if job.active:
        dist.all_reduce(tensor)
    return tensor


def all_min(tensor: torch.Tensor, job: Dist) -> torch.Tensor:
    """The element-wise minimum of ``tensor`` over ranks, in place; returns it."""
    if job.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def barrier(job: Dist) -> None:
    if job.active:
        dist.barrier()


@torch.no_grad()
def average_buffers(module: nn.Module, job: Dist) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks.

    DDP keeps parameters identical on every rank but each rank's BatchNorm statistics follow its
    own batches; averaging them before validation and saving makes every rank hold one model.
    """
    if not job.active:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1).double() for b in buffers])
    dist.all_reduce(flat)
    flat /= job.world
    offset = 0
    for b in buffers:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()


class EpochSampler(Sampler[int]):
    """The epoch's sample order as a pure function of (seed, epoch), sharded over ranks.

    Like DistributedSampler (also with one process): a permutation drawn from ``seed + epoch``,
    cut to whole optimizer steps of ``batch x accumulate x world`` samples (the incomplete tail
    is dropped, so every step sees full batches and BatchNorm never gets a batch of one). A step
    is ``V = accumulate x world`` "virtual ranks": virtual rank v takes the step's positions
    v, v + V, v + 2V, ...; rank r's micro-batch j is virtual rank ``j x world + r``. So one
    process with ``--accumulate 2`` sees, batch for batch, what two processes see, and all ranks
    together cover the same samples per step as one process with the global batch.
    ``set_epoch(epoch, start_step)`` skips the steps a resumed run had done.
    """

    def __init__(
        self,
        length: int,
        batch: int,
        seed: int,
        job: Dist,
        accumulate: int = 1,
        shuffle: bool = True,
    ) -> None:
        self.length, self.batch, self.seed, self.job = length, batch, seed, job
        self.accumulate, self.shuffle = accumulate, shuffle
        self.epoch, self.start_step = 0, 0
        self.batches = length // (batch * accumulate * job.world)  # optimizer steps per epoch

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = int(epoch), int(start_step)

    def order(self) -> torch.Tensor:
        """This rank's indices for the whole epoch (before skipping), micro-batch by micro-batch."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator)
        else:
            order = torch.arange(self.length)
        world, accumulate = self.job.world, self.accumulate
        used = order[: self.batches * self.batch * accumulate * world]
        steps = used.view(self.batches, self.batch, accumulate, world)[..., self.job.rank]
        return steps.permute(0, 2, 1).reshape(-1)  # (step, micro-batch, item)

    def __iter__(self) -> Iterator[int]:
        skip = self.start_step * self.accumulate * self.batch
        return iter(self.order()[skip:].tolist())

    def __len__(self) -> int:
        return max(0, self.batches - self.start_step) * self.accumulate * self.batch


class ShardSampler(Sampler[int]):
    """Every ``world``-th index from ``rank``, in order, no padding: each validation image is
    scored exactly once over all ranks (sums are then all-reduced)."""

    def __init__(self, length: int, job: Dist) -> None:
        self.indices = list(range(job.rank, length, job.world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
