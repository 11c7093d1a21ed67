"""Data-parallel training over several processes, exactly equal to one process.

`torchrun --nproc_per_node N -m aisketcher train ...` starts N processes with WORLD_SIZE,
RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; `process_group` joins them (gloo on the CPU,
nccl on CUDA with each rank on cuda:LOCAL_RANK). Outside a process group every helper here is the
identity or a no-op, so single-process training runs the same code.

Why the result equals one process training on the whole batch: every rank's loader chooses the same
global batch (the loaders share a seed) and reads only its own equal share of the rows (`shard`,
data/batching.py), which it trains on (`rank_rows`);
inside that block the model's noise is drawn for the global batch (model/noise.py) and the loss
takes its counts and its KL floor from the whole batch (`shard_mean`), so each rank's loss is a
share whose mean over the ranks is the whole batch's loss, and DDP's averaged gradient is the
one-process gradient.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from aisketcher.data.batching import Batch
from aisketcher.errors import SketchDataError
from aisketcher.model import noise

# Validation runs on rank 0 while the others wait; a long one must not time the group out.
TIMEOUT = timedelta(hours=2)


@contextmanager
def process_group(device_type: str) -> Iterator[None]:
    """Join the launcher's process group for the block when WORLD_SIZE > 1; nothing otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())
        dist.init_process_group(
            "nccl", timeout=TIMEOUT, device_id=torch.device("cuda", local_rank())
        )
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 writes the run's files and prints; every rank is rank 0 in one process."""
    return rank() == 0


def rank_device(device: torch.device) -> torch.device:
    """Each rank's own GPU (cuda:LOCAL_RANK) under data-parallel training, else `device`."""
    if world_size() > 1 and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def check_batch_size(batch_size: int, train_size: int) -> None:
    """The global batch must split into equal shares, and every batch must be a full one."""
    world = world_size()
    if world == 1:
        return
    if batch_size % world:
        raise SketchDataError(
            f"the batch size {batch_size} does not divide among {world} processes; "
            f"--batch-size is the global batch and must be a multiple of {world}"
        )
    if train_size < batch_size:
        raise SketchDataError(
            f"the training split holds {train_size} sketches, fewer than one batch of "
            f"{batch_size}: data-parallel training needs full batches"
        )


def wrap(module: nn.Module, device: torch.device, *, find_unused: bool) -> nn.Module:
    """`module` under DistributedDataParallel when there are several ranks, else itself.

    `find_unused` for models whose backward leaves parameters without a gradient (an autoencoder
    that pretrains alone, then is frozen).
    """
    if world_size() == 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        module, device_ids=ids, find_unused_parameters=find_unused
    )


def shard() -> tuple[int, int] | None:
    """(rank, world size) for a loader that reads this rank's rows only; None in one process."""
    return (rank(), world_size()) if world_size() > 1 else None


@contextmanager
def rank_rows(batch: Batch) -> Iterator[Batch]:
    """This rank's rows of a global batch (a sharded loader's batch), padded to the global
    batch's length; within the block, model noise and loss counts are taken for the whole batch.
    The batch itself in one process.
    """
    world = world_size()
    if world == 1:
        yield batch
        return
    share = len(batch.lengths)
    # The global batch's padded lengths, of the targets and of what the encoder reads when it is
    # not the targets (healing): l_s and the per-step noise draws span them.
    source_rows = 0 if batch.source is None else batch.source[0].shape[1]
    rows = torch.tensor([batch.strokes.shape[1], source_rows], device=batch.strokes.device)
    dist.all_reduce(rows, op=dist.ReduceOp.MAX)
    with noise.batch_shard(share * world, rank() * share):
        yield batch.padded(int(rows[0]), int(rows[1]))


def shard_mean(value: torch.Tensor) -> torch.Tensor:
    """A per-rank value averaged over the ranks inside `rank_rows`; the value itself outside.

    Detached: it serves as a normaliser or a decision, never as a path for gradients.
    """
    value = value.detach()
    if noise.current_shard() is None:
        return value
    return mean_over_ranks(value)


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all ranks (the tensor itself in one process)."""
    if world_size() == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world_size()


def any_rank(*flags: bool) -> list[bool]:
    """Each flag, true when it is true on any rank: a stop that every rank agrees on."""
    if world_size() == 1:
        return list(flags)
    values = torch.tensor(flags, dtype=torch.int32, device=_collective_device())
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


def from_main(value: Any) -> Any:
    """Rank 0's `value` (any picklable object) on every rank."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block before the others (it fills a cache that they then read)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def share_cuda_rng(device: torch.device) -> None:
    """Give every rank's GPU rank 0's random state (after a checkpoint restored rank 0's).

    A checkpoint holds the RNG states rank 0's process sees; on cuda:r (r > 0) it restored the
    state of a device rank 0 never drew from. The CPU states need nothing: all ranks load the same.
    """
    if world_size() == 1 or device.type != "cuda":
        return
    torch.cuda.set_rng_state(from_main(torch.cuda.get_rng_state(device)), device)


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
