"""Load every QuickDraw class with `load_dataset`: wall time, peak memory, and batch padding.

python benchmarks/load_all.py [--data ../shared/data] [--max-seq-len 250] [--batch-size 100]
    [--no-trace]

The load runs twice: once plain (wall time and the process's maximum resident set size), then
under tracemalloc (peak of Python-managed allocations, NumPy arrays included; several times slower,
so its time is reported apart; `--no-trace` skips it).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from aisketcher.data.batching import length_grouped_batches
from aisketcher.data.dataset import SketchDataset, load_dataset

MIB = 1 << 20


def max_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / MIB if sys.platform == "darwin" else rss / 1024


def timed_load(names: list[str], data: Path, max_seq_len: int) -> tuple[SketchDataset, float]:
    start = time.perf_counter()
    dataset = load_dataset(names, data, max_seq_len=max_seq_len)
    return dataset, time.perf_counter() - start


def padding_rows(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Mean padding rows per sketch when each batch is padded to its own longest sketch."""
    rows = sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in batches)
    return rows / sum(len(b) for b in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--max-seq-len", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc run")
    args = parser.parse_args()

    names = sorted(p.stem for p in (args.data / "quickdraw").glob("*.npz"))
    if not names:
        parser.error(f"no .npz files in {args.data / 'quickdraw'}")
    rss_before = max_rss_mib()
    dataset, seconds = timed_load(names, args.data, args.max_seq_len)
    rss_after = max_rss_mib()

    counts = {split: len(dataset[split]) for split in dataset.splits}
    points = sum(int(dataset[s].lengths().sum()) for s in dataset.splits)
    array_bytes = sum(s.nbytes for split in dataset.splits.values() for s in split.sketches)
    print(f"classes            {dataset.num_classes}")
    print(f"sketches           {counts} ({sum(counts.values()):,} in all, {points:,} points)")
    print(f"scale factor       {dataset.scale_factor:.4f}; longest {dataset.longest} points")
    print(f"wall time          {seconds:.2f} s ({sum(counts.values()) / seconds:,.0f} sketches/s)")
    print(f"max RSS            {rss_after:.0f} MiB (before loading {rss_before:.0f} MiB)")
    print(f"stroke arrays      {array_bytes / MIB:.1f} MiB of float32 data")

    if not args.no_trace:
        del dataset
        gc.collect()
        tracemalloc.start()
        dataset, traced_seconds = timed_load(names, args.data, args.max_seq_len)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"tracemalloc peak   {peak / MIB:.1f} MiB (load took {traced_seconds:.2f} s traced)")

    lengths = dataset["train"].lengths()
    rng = np.random.default_rng(0)
    grouped = padding_rows(lengths, length_grouped_batches(lengths, args.batch_size, rng))
    order = rng.permutation(len(lengths))
    shuffled = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    random_pad = padding_rows(lengths, shuffled)
    to_longest = float((lengths.max() - lengths).mean())
    print(
        f"padding per sketch (train, batch {args.batch_size}): length-grouped {grouped:.1f} rows, "
        f"random batches {random_pad:.1f}, to the longest {to_longest:.1f} "
        f"(grouped / longest = {grouped / to_longest:.3f})"
    )


if __name__ == "__main__":
    main()
