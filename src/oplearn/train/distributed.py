"""Data-parallel training on top of torch.distributed.

``oplearn train`` started by ``torchrun --nproc_per_node=N`` finds the
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` variables torchrun sets and joins the
process group (NCCL on GPUs, gloo on CPU). Batches are cut from one global
permutation per epoch, so N processes with global batch B see exactly the
samples one process with batch B sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from oplearn.devices import resolve_device


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_name: str) -> Context:
    """Join the process group when launched by torchrun; otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context(device=resolve_device(device_name))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    return Context(rank=rank, world_size=world_size, device=device)


def teardown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def epoch_batches(n_samples: int, batch_size: int, seed: int, epoch: int, context: Context,
                  labelled: int | None = None, labelled_per_batch: int | None = None):
    """This rank's index tensors for each global batch of one epoch.

    The permutation depends only on ``(seed, epoch)``; each global batch is
    split round-robin across ranks. A last batch with fewer samples than
    ranks is dropped so no rank is left without work. With
    ``labelled_per_batch = m`` (samples ``0..labelled-1`` labelled), each
    batch is ``m`` labelled samples, cycled in a permuted order, then
    ``batch_size - m`` of the unlabelled ones, which the epoch passes once.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if labelled_per_batch is None:
        order = torch.randperm(n_samples, generator=generator)
        batches = (order[start:start + batch_size] for start in range(0, n_samples, batch_size))
    else:
        unlabelled = labelled + torch.randperm(n_samples - labelled, generator=generator)
        labels = torch.randperm(labelled, generator=generator)
        step = batch_size - labelled_per_batch
        batches = (torch.cat([labels[(torch.arange(labelled_per_batch) + i * labelled_per_batch) % labelled],
                              unlabelled[start:start + step]])
                   for i, start in enumerate(range(0, n_samples - labelled, step)))
    for batch in batches:
        if len(batch) < context.world_size:
            break
        yield batch[context.rank::context.world_size], len(batch)


def all_sum(values: torch.Tensor, context: Context) -> torch.Tensor:
    """Sum a tensor over ranks (identity on one process)."""
    if context.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()
