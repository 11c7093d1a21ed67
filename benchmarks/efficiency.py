"""Training efficiency: how much of the machine's arithmetic rate a training step achieves.

python benchmarks/efficiency.py [--sizes small] [--configs sketch-rnn,ai-sketcher] [--steps 4]
    [--threads 1] [--device cpu] [--data ../shared/data] [--json PATH] [--profile]

For each preset and size, on the same real QuickDraw batches of 100 as benchmarks/train_step.py
(5 classes, batches at evenly spaced length quantiles of a length-grouped epoch):

- GFLOP per step: counted by `torch.utils.flop_counter.FlopCounterMode` around one full
  `Trainer.train_step` (forward, backward, clipping, Adam) on the reference path (the counter sees
  matrix products and convolutions; the fused kernels' element-wise work is not counted either way);
- seconds per step with the fused recurrent kernels (`aisketcher.model.fused`) and with the plain
  PyTorch cells (AISKETCHER_FUSED=0), the two paths taking turns step by step;
- achieved GFLOP/s = counted FLOPs / step time, and that as a share of the rate of one matrix product
  of the decoder's gate shape (batch x H @ H x 4H, plus its bias), timed in the same process just
  before and after the steps;
- sketches per second over an epoch, estimated as the training split's size over (mean step time x
  batches per epoch).

`--profile` prints, for one fused step of each model, where its time goes by kind of operation
(matrix products, convolutions, the fused kernels, random draws, everything else, from
torch.profiler's self times) and the top operators. Speed is printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from aisketcher.allocator import tune_allocator
from aisketcher.data.batching import BatchLoader, length_grouped_batches
from aisketcher.data.dataset import load_dataset
from aisketcher.data.paths import default_data_dir
from aisketcher.model import fused
from aisketcher.model.config import PRESETS, SIZES
from aisketcher.raster import RASTER_SIZE
from train_step import (
    BATCH_SIZE,
    DEFAULT_CLASSES,
    SEED,
    build,
    machine_line,
    sample_batches,
    timed_step,
)

PATHS = {"fused": "1", "reference": "0"}
# Kinds of operation in the profile, by operator name (first match wins).
KINDS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"),
    "convolutions": ("aten::convolution", "aten::_convolution", "aten::mkldnn_convolution",
                     "aten::convolution_backward", "_Conv2x2"),  # _Conv2x2: fused/conv.cpp
    "fused kernels": ("_LayerNorm", "_LSTM", "_Influence"),  # also _LayerNormInfluenceSequence
    # dropout masks (uniform numbers compared with p, `noise.dropout_mask`) and lambda_a, z_s noise
    "random draws": ("aten::uniform_", "aten::ge_", "aten::normal_", "aten::bernoulli"),
}  # fmt: skip


def breakdown(prof: Any) -> dict[str, float]:
    """Seconds of self CPU time per kind of operation, and the rest."""
    seconds = dict.fromkeys([*KINDS, "everything else"], 0.0)
    for event in prof.key_averages():
        kind = next(
            (k for k, names in KINDS.items() if event.key.startswith(names)), "everything else"
        )
        seconds[kind] += event.self_cpu_time_total / 1e6
    return seconds


def matmul_rate(batch: int, hidden: int, device: torch.device, seconds: float = 1.0) -> float:
    """GFLOP/s of torch.addmm(bias, (batch, hidden) @ (hidden, 4 hidden)), best of 5 rounds."""
    x = torch.randn(batch, hidden, device=device)
    w = torch.randn(hidden, 4 * hidden, device=device)
    b = torch.randn(4 * hidden, device=device)
    for _ in range(20):
        torch.addmm(b, x, w)
    best = float("inf")
    for _ in range(5):
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            torch.addmm(b, x, w)
            reps += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / reps)
    return 2 * batch * hidden * 4 * hidden / best / 1e9


def counted_flops(runner: Any, batch: Any, device: torch.device) -> int:
    os.environ["AISKETCHER_FUSED"] = "0"
    with FlopCounterMode(display=False) as counter:
        timed_step(runner, batch, device)
    return int(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--classes", default=DEFAULT_CLASSES)
    parser.add_argument("--sizes", default="small", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--configs", default="sketch-rnn,ai-sketcher", help="presets, or 'all'")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per model and path")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=14, help="operators listed by --profile")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configs = list(PRESETS) if args.configs == "all" else args.configs.split(",")
    torch.set_num_threads(args.threads)
    tune_allocator()
    device = torch.device(args.device)
    print(machine_line(args.threads, args.device))
    if device.type == "cpu" and fused.extension() is None:
        raise SystemExit("the fused kernels could not be built; nothing to compare")

    classes = args.classes.split(",")
    dataset = load_dataset(classes, args.data, max_seq_len=250)
    split = dataset["train"]
    loader = BatchLoader(split, BATCH_SIZE, raster_size=RASTER_SIZE, seed=SEED)
    epoch = length_grouped_batches(split.lengths(), BATCH_SIZE, np.random.default_rng(SEED))
    batches, _ = sample_batches(loader, epoch, args.steps)
    lengths = [b.strokes.shape[1] - 1 for b in batches]
    print(
        f"data: {', '.join(classes)}: {len(split):,} training sketches, {len(epoch)} batches of "
        f"{BATCH_SIZE} per epoch; timed batches of padded lengths {lengths}"
    )
    results: dict[str, Any] = {"machine": machine_line(args.threads, args.device), "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            hidden = SIZES[size]["dec_rnn_size"]
            rate_before = matmul_rate(BATCH_SIZE, hidden, device)
            rows: dict[str, dict[str, float]] = {}
            profiles: dict[str, Any] = {}
            for name in configs:
                runner = build(name, size, dataset, args.device, Path(tmp))
                flops = statistics.fmean(counted_flops(runner, b, device) for b in batches)
                times: dict[str, list[float]] = {p: [] for p in PATHS}
                for _ in range(args.warmup):
                    for value in PATHS.values():
                        os.environ["AISKETCHER_FUSED"] = value
                        timed_step(runner, batches[-1], device)
                for batch in batches:
                    for path, value in PATHS.items():
                        os.environ["AISKETCHER_FUSED"] = value
                        times[path].append(timed_step(runner, batch, device).wall)
                row = {"gflop_per_step": flops / 1e9}
                for path in PATHS:
                    mean = statistics.fmean(times[path])
                    row[f"{path}_s"] = mean
                    row[f"{path}_gflops"] = flops / mean / 1e9
                    row[f"{path}_sketches_per_s"] = len(split) / (mean * len(epoch))
                row["speedup"] = statistics.median(
                    r / f for r, f in zip(times["reference"], times["fused"], strict=True)
                )
                rows[name] = row
                if args.profile:
                    os.environ["AISKETCHER_FUSED"] = "1"
                    with torch.profiler.profile() as prof:
                        timed_step(runner, batches[len(batches) // 2], device)
                    row["breakdown_s"] = breakdown(prof)
                    profiles[name] = prof.key_averages().table(
                        sort_by="self_cpu_time_total", row_limit=args.top
                    )
                del runner
            rate = max(rate_before, matmul_rate(BATCH_SIZE, hidden, device))
            print(
                f"\nsize {size}: matrix product {BATCH_SIZE}x{hidden} @ {hidden}x{4 * hidden} "
                f"(+ bias) runs at {rate:.1f} GFLOP/s here (best before/after the steps)"
            )
            print(
                "| config | GFLOP/step | fused s/step | fused GFLOP/s | share of matmul | "
                "reference s/step | reference GFLOP/s | share | speed-up | fused sketches/s |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|")
            for name, r in rows.items():
                r["fused_share"] = r["fused_gflops"] / rate
                r["reference_share"] = r["reference_gflops"] / rate
                print(
                    f"| {name} | {r['gflop_per_step']:.2f} | {r['fused_s']:.3f} | "
                    f"{r['fused_gflops']:.1f} | {r['fused_share']:.0%} | {r['reference_s']:.3f} | "
                    f"{r['reference_gflops']:.1f} | {r['reference_share']:.0%} | "
                    f"{r['speedup']:.2f}x | {r['fused_sketches_per_s']:.0f} |"
                )
            for name, table in profiles.items():
                parts = rows[name]["breakdown_s"]
                total = sum(parts.values())
                print(
                    f"\nprofile: {name}, size {size}, one fused step ({total:.3f} s of self time)"
                )
                for kind, sec in parts.items():
                    print(f"  {kind:20s} {sec:7.3f} s  {sec / total:5.1%}")
                print(table)
            results["sizes"][size] = {"matmul_gflops": rate, "rows": rows}
    print(f"at the end: {machine_line(args.threads, args.device).split('; ')[-1]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
