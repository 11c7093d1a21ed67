"""Every random draw of the model, in one place, so that data-parallel training stays exact.

Under DistributedDataParallel each rank runs the model on its own rows of one global batch. Inside
`batch_shard(global_size, offset)` the functions here draw for the whole global batch, exactly as
one process training on that batch would, and return this rank's rows: together the ranks use the
very numbers a single process uses. Outside a shard they are the plain torch calls, so results of
single-process training and sampling do not change. The first dimension of every tensor they see
is the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_shard: tuple[int, int] | None = None  # (global batch size, this rank's first row)


@contextmanager
def batch_shard(global_size: int, offset: int) -> Iterator[None]:
    """Draw for `global_size` rows and keep those from `offset` on, until the block ends."""
    global _shard
    if not 0 <= offset < global_size:
        raise ValueError(f"row offset {offset} outside a batch of {global_size}")
    previous, _shard = _shard, (global_size, offset)
    try:
        yield
    finally:
        _shard = previous


def current_shard() -> tuple[int, int] | None:
    """(global batch size, row offset) inside `batch_shard`, else None."""
    return _shard


def _global(
    shard: tuple[int, int], shape: torch.Size | tuple[int, ...]
) -> tuple[tuple[int, ...], slice]:
    """The shape to draw for a local `shape`, and the rows of the draw that are this rank's."""
    size, offset = shard
    if offset + shape[0] > size:
        raise ValueError(f"rows {offset}..{offset + shape[0]} outside a batch of {size}")
    return (size, *shape[1:]), slice(offset, offset + shape[0])


def standard_normal_like(x: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like x (torch.randn_like)."""
    if _shard is None:
        return torch.randn_like(x)
    shape, rows = _global(_shard, x.shape)
    return torch.randn(shape, dtype=x.dtype, device=x.device)[rows]


def standard_normal(*shape: int) -> torch.Tensor:
    """Standard normal noise of `shape` on the CPU (torch.randn)."""
    if _shard is None:
        return torch.randn(*shape)
    full, rows = _global(_shard, shape)
    return torch.randn(full)[rows]


def uniform(count: int, device: torch.device) -> torch.Tensor:
    """`count` numbers uniform in [0, 1), one per batch row (torch.rand)."""
    if _shard is None:
        return torch.rand(count, device=device)
    full, rows = _global(_shard, (count,))
    return torch.rand(full, device=device)[rows]


def dropout_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """The mask training-mode dropout applies to x: each entry kept with probability 1 - p, kept
    entries 1 / (1 - p); under a shard the mask is drawn for the global batch.

    Drawn as uniform numbers compared with p, which on the CPU costs half of torch's bernoulli
    (the F.dropout draw; docs/measurements.md).
    """
    shape, rows = (x.shape, slice(None)) if _shard is None else _global(_shard, x.shape)
    uniform = torch.rand(shape, dtype=x.dtype, device=x.device)
    return uniform.ge_(p).mul_(1.0 / (1.0 - p))[rows]


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of x with drop probability p, with `dropout_mask`'s draws."""
    return x * dropout_mask(x, p)
