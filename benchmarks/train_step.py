"""Training step speed: every configuration against a plain Sketch-RNN built on torch.nn.LSTM.

python benchmarks/train_step.py [--sizes small,magenta] [--configs all] [--steps 6]
    [--threads 1] [--device cpu] [--data ../shared/data] [--json PATH] [--quick] [--profile]

One process times a full training step (`Trainer.train_step`: zero_grad, loss, backward, the
Trainer's gradient clipping, Adam) of each configuration and of a plain Sketch-RNN of the same size
on torch.nn.LSTM, on the same real QuickDraw batches of 100 (drawn once, with a fixed seed, at
evenly spaced length quantiles of a length-grouped epoch, so a few steps stand for an epoch).
Models take turns step by step, so background load falls on all alike. Printed per size: median
and mean seconds per step; the median over batches of the step time divided by nn.LSTM's on the
same batch, and of the CPU time (steadier on a busy machine); user and system CPU seconds and minor
page faults per step (getrusage); and peak memory, measured apart in a fresh process per model
(growth of the resident set's high-water mark from just before the model is built, over two steps
on the longest batch).

Then: an epoch of ai-sketcher and of the nn.LSTM model with length-grouped batches (the default)
against random batches (what `aisketcher train --no-length-grouping` does) and batches padded to 250; and
the allocator settings of allocator.py against glibc's defaults (AISKETCHER_MALLOC=0), one fresh
process per row since mallopt is process-wide, on aaron_sheep padded to 250. Targets: ai-sketcher
costs at most 1.5x the nn.LSTM model per step; length grouping makes an epoch at least 2x faster
than padding to 250. Speed is printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from aisketcher.allocator import ENV_SWITCH, tune_allocator
from aisketcher.data.batching import Batch, BatchLoader, length_grouped_batches
from aisketcher.data.dataset import SketchDataset, load_dataset
from aisketcher.data.paths import default_data_dir
from aisketcher.model.config import PRESETS, SIZES, ModelConfig, make_config
from aisketcher.model.encoder import reverse_padded
from aisketcher.model.mixture import Mixture
from aisketcher.model.sketcher import Latent, ModelOutput
from aisketcher.raster import RASTER_SIZE
from aisketcher.train.loss import LossTerms, compute_loss, kl_weight_at
from aisketcher.train.trainer import TrainConfig, Trainer

BASELINE = "nn.LSTM"  # the plain torch.nn.LSTM Sketch-RNN
DEFAULT_CLASSES = "cat,airplane,bicycle,eye,guitar"
LONG_SKETCHES = "sketch-rnn-datasets/aaron_sheep/aaron_sheep.npz"
ALLOCATOR_MODELS = (BASELINE, "sketch-rnn", "ai-sketcher")
PAD_LENGTH = 250
BATCH_SIZE = 100
SEED = 0
MIB = 1 << 20


# ----- the reference model -----
class TorchLSTMSketchRNN(nn.Module):
    """Sketch-RNN (Ha & Eck 2017) on torch.nn.LSTM: no layer norm, no recurrent dropout.

    Bidirectional encoder over the real points, VAE head, decoder fed [s_i; z] with the initial
    state tanh(W z + b), output to the same mixture and loss as the project's models.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        # Two one-way LSTMs, the backward one over each sketch reversed within its length: exact
        # for padded batches like packing, without the per-step slicing packed sequences cost.
        self.encoder_fw = nn.LSTM(5, cfg.enc_rnn_size, batch_first=True)
        self.encoder_bw = nn.LSTM(5, cfg.enc_rnn_size, batch_first=True)
        self.to_latent = nn.Linear(cfg.enc_state_size, 2 * cfg.z_size)
        self.to_initial_state = nn.Linear(cfg.z_size, 2 * cfg.dec_rnn_size)
        self.decoder = nn.LSTM(5 + cfg.z_size, cfg.dec_rnn_size, batch_first=True)
        self.output = nn.Linear(cfg.dec_rnn_size, 3 + 6 * cfg.num_mixture)

    def forward(self, strokes: torch.Tensor, lengths: torch.Tensor) -> ModelOutput:
        points = strokes[:, 1:]
        fw, _ = self.encoder_fw(points)
        reversed_points = reverse_padded(points.transpose(0, 1), lengths).transpose(0, 1)
        bw, _ = self.encoder_bw(reversed_points)
        last = torch.arange(len(lengths), device=lengths.device), (lengths - 1).clamp(min=0)
        mu, log_var = self.to_latent(torch.cat([fw[last], bw[last]], -1)).chunk(2, -1)
        z = mu + torch.exp(log_var / 2) * torch.randn_like(mu)
        h0, c0 = torch.tanh(self.to_initial_state(z)).chunk(2, -1)
        inputs = strokes[:, :-1]
        x = torch.cat([inputs, z.unsqueeze(1).expand(-1, inputs.shape[1], -1)], -1)
        hs, _ = self.decoder(x, (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()))
        mixture = Mixture.from_output(self.output(hs), self.config.num_mixture)
        latent = Latent(
            c=None,
            z_s=z,
            mu_s=mu,
            log_var_s=log_var,
            z_r=None,
            raster_recon=None,
            memory=None,
            memory_lengths=None,
        )
        return ModelOutput(mixture, latent, mu_a=None, log_var_a=None)


class Feed:
    """Stands in for a trainer's loader: hands over the batch the benchmark chose."""

    def __init__(self, rasters: bool) -> None:
        self.rasters = rasters
        self.batch: Batch | None = None

    def next_batch(self) -> Batch:
        assert self.batch is not None
        b = self.batch
        return b if self.rasters else Batch(b.strokes, b.lengths, b.labels, None)


class Steppable(Protocol):
    train_loader: Any

    def train_step(self) -> tuple[LossTerms | None, float]: ...


class TorchLSTMTrainer:
    """`Trainer.train_step` for the reference model: same loss, clipping and optimizer."""

    def __init__(self, cfg: ModelConfig, tcfg: TrainConfig) -> None:
        torch.manual_seed(tcfg.seed)
        self.cfg, self.tcfg = cfg, tcfg
        self.device = torch.device(tcfg.device)
        self.model = TorchLSTMSketchRNN(cfg).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tcfg.learning_rate)
        self.train_loader = Feed(rasters=False)

    def train_step(self) -> tuple[LossTerms | None, float]:
        self.model.train()
        batch = self.train_loader.next_batch().to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(batch.strokes, batch.lengths)
        terms = compute_loss(out, batch, self.cfg, kl_weight_at(0, self.tcfg), weights=self.tcfg)
        if not torch.isfinite(terms.objective):
            return None, math.nan
        terms.objective.backward()
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.tcfg.grad_clip)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return None, math.nan
        self.optimizer.step()
        return terms, float(norm)


def model_config(name: str, size: str, num_classes: int) -> ModelConfig:
    # The reference takes its sizes and loss settings from the project's own sketch-rnn preset.
    preset = "sketch-rnn" if name == BASELINE else name
    return make_config(preset, size, num_classes=num_classes)


def build(name: str, size: str, dataset: SketchDataset, device: str, run_dir: Path) -> Steppable:
    """A trainer for one model, its loader replaced by a `Feed` of the benchmark's batches."""
    cfg = model_config(name, size, dataset.num_classes)
    tcfg = TrainConfig(batch_size=BATCH_SIZE, device=device, seed=SEED)
    if name == BASELINE:
        return TorchLSTMTrainer(cfg, tcfg)
    trainer = Trainer(cfg, tcfg, dataset, run_dir / f"{name}-{size}", progress=False)
    trainer.train_loader = Feed(rasters=cfg.use_autoencoder or cfg.encoder == "cnn")
    return trainer


# ----- measuring -----
@dataclass
class Sample:
    """One training step: wall and CPU seconds, minor page faults, padded length."""

    wall: float
    user: float
    sys: float
    faults: int
    length: int


def timed_step(runner: Steppable, batch: Batch, device: torch.device) -> Sample:
    runner.train_loader.batch = batch
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    terms, _ = runner.train_step()
    sync()
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    if terms is None:
        raise SystemExit("a benchmark step was not finite")
    return Sample(
        wall,
        after.ru_utime - before.ru_utime,
        after.ru_stime - before.ru_stime,
        after.ru_minflt - before.ru_minflt,
        batch.strokes.shape[1] - 1,
    )


def round_robin(
    runners: dict[str, Steppable],
    batches: Sequence[Batch],
    warmup: Sequence[Batch],
    device: torch.device,
) -> dict[str, list[Sample]]:
    """Untimed steps on the `warmup` batches, then every batch in turn to every model."""
    # Two warm-up steps: the second is the first with Adam's state, so the heap reaches its size.
    for batch in warmup:
        for runner in runners.values():
            timed_step(runner, batch, device)
    samples: dict[str, list[Sample]] = {name: [] for name in runners}
    names = list(runners)
    for i, batch in enumerate(batches):
        # Rotate who goes first, so no model always runs right after the same other one.
        for name in names[i % len(names) :] + names[: i % len(names)]:
            samples[name].append(timed_step(runners[name], batch, device))
    return samples


def summary(samples: list[Sample], reference: list[Sample] | None) -> dict[str, float]:
    out = {
        "median_s": statistics.median(s.wall for s in samples),
        "mean_s": statistics.fmean(s.wall for s in samples),
        "user_s": statistics.fmean(s.user for s in samples),
        "sys_s": statistics.fmean(s.sys for s in samples),
        "faults": statistics.fmean(s.faults for s in samples),
    }
    if reference is not None:
        pairs = list(zip(samples, reference, strict=True))
        out["ratio"] = statistics.median(s.wall / r.wall for s, r in pairs)
        out["cpu_ratio"] = statistics.median((s.user + s.sys) / (r.user + r.sys) for s, r in pairs)
    return out


def quantile_picks(lengths: Sequence[int], n: int) -> list[int]:
    """Indices of `n` items at evenly spaced quantiles of `lengths` (midpoints of n strata)."""
    order = np.argsort(lengths, kind="stable")
    return [int(order[int((k + 0.5) * len(order) / n)]) for k in range(min(n, len(order)))]


def sample_batches(
    loader: BatchLoader, epoch: list[np.ndarray], n: int
) -> tuple[list[Batch], list[int]]:
    """`n` batches of an epoch at evenly spaced quantiles of padded length; every padded length."""
    lengths = loader.split.lengths()
    padded = [loader.pad_to or int(lengths[b].max()) for b in epoch]
    return [loader.make_batch(epoch[i]) for i in quantile_picks(padded, n)], padded


def random_batches(count: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled full batches, as BatchLoader makes them without length grouping."""
    order = rng.permutation(count)
    return [order[i : i + batch_size] for i in range(0, count - batch_size + 1, batch_size)]


# ----- resident memory of this process (Linux /proc; getrusage elsewhere) -----
def _proc_status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def reset_rss_peak() -> None:
    """Restart the high-water mark from the current resident size (Linux: clear_refs 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (high-water) in MiB; ru_maxrss where /proc is missing."""
    kib = _proc_status_kib(field)
    if kib is None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / MIB if sys.platform == "darwin" else rss / 1024
    return kib / 1024


# ----- batches shared with the worker processes -----
def save_batches(batches: Sequence[Batch], path: Path) -> None:
    torch.save(
        [
            {
                "strokes": b.strokes,
                "lengths": b.lengths,
                "labels": b.labels,
                # Binary images: stored as bytes, restored exactly.
                "rasters": None if b.rasters is None else b.rasters.to(torch.uint8),
            }
            for b in batches
        ],
        path,
    )


def load_batches(path: Path) -> list[Batch]:
    items = torch.load(path, weights_only=True)
    return [
        Batch(
            d["strokes"],
            d["lengths"],
            d["labels"],
            None if d["rasters"] is None else d["rasters"].float(),
        )
        for d in items
    ]


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: one model stepped over the given batches; its samples and peak memory.

    The first `warmup` batches are untimed. Peak memory is the growth of the resident set's
    high-water mark from just before the model is built.
    """
    torch.set_num_threads(spec["threads"])
    tune_allocator()  # as in the parent and every Trainer; a no-op under AISKETCHER_MALLOC=0
    dataset = load_dataset(spec["classes"], spec["data"], max_seq_len=PAD_LENGTH)
    batches = load_batches(Path(spec["batches"]))
    device = torch.device(spec["device"])
    gc.collect()
    reset_rss_peak()
    rss_before = rss_mib("VmRSS")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as run_dir:
        runner = build(spec["model"], spec["size"], dataset, spec["device"], Path(run_dir))
        for batch in batches[: spec["warmup"]]:
            timed_step(runner, batch, device)
        samples = [timed_step(runner, b, device) for b in batches[spec["warmup"] :]]
    cuda_peak = torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None
    return {
        "samples": [asdict(s) for s in samples],
        "peak_mib": rss_mib("VmHWM") - rss_before,
        "cuda_peak_mib": cuda_peak,
    }


def run_worker(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"worker {spec['model']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----- report helpers -----
def machine_line(threads: int, device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {cpu}, {cores} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, {threads} torch "
        f"thread(s), device {device}; load average {load}"
    )


def cpu_share(samples: dict[str, list[Sample]]) -> float:
    """CPU seconds this process got per wall second while timing (1.0 = a whole core)."""
    flat = [s for ss in samples.values() for s in ss]
    return sum(s.user + s.sys for s in flat) / sum(s.wall for s in flat)


def size_line(size: str) -> str:
    s = SIZES[size]
    return f"enc 2x{s['enc_rnn_size']}, dec {s['dec_rnn_size']}, z {s['z_size']}"


def print_size_table(rows: dict[str, dict[str, Any]]) -> None:
    print(
        f"{'config':<28}{'med s/step':>11}{'mean s/step':>12}{'x nn.LSTM':>10}{'x CPU':>7}"
        f"{'user s':>8}{'sys s':>7}{'faults/step':>12}{'peak MiB':>9}"
    )
    for name, r in rows.items():
        label = f"{BASELINE} Sketch-RNN" if name == BASELINE else name
        peak = "-" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
        if r.get("cuda_peak_mib") is not None:
            peak = f"{r['cuda_peak_mib']:.0f} GPU"
        print(
            f"{label:<28}{r['median_s']:>11.3f}{r['mean_s']:>12.3f}{r['ratio']:>9.2f}x"
            f"{r['cpu_ratio']:>6.2f}x"
            f"{r['user_s']:>8.3f}{r['sys_s']:>7.3f}{r['faults']:>12,.0f}{peak:>9}"
        )


# ----- the benchmark's sections -----
def time_sizes(
    args: argparse.Namespace,
    dataset: SketchDataset,
    loader: BatchLoader,
    epoch: list[np.ndarray],
    tmp_dir: Path,
) -> dict[str, Any]:
    """Per size: every model on the same batches, interleaved; peak memory from worker processes."""
    device = torch.device(args.device)
    dataset_spec = {"classes": args.classes, "data": str(args.data)}
    samples_by_count: dict[int, list[Batch]] = {}
    results: dict[str, Any] = {}
    for size in args.sizes:
        steps = args.paper_steps if size == "paper" else args.steps
        if steps not in samples_by_count:
            samples_by_count[steps] = sample_batches(loader, epoch, steps)[0]
        batches = samples_by_count[steps]
        longest = max(batches, key=lambda b: b.strokes.shape[1])
        names = [BASELINE, *args.configs]
        runners = {n: build(n, size, dataset, args.device, tmp_dir) for n in names}
        samples = round_robin(runners, batches, [longest] * args.warmup, device)
        rows = {n: summary(samples[n], samples[BASELINE]) for n in names}
        if not args.no_memory:
            batch_file = tmp_dir / f"longest-{size}.pt"
            save_batches([longest, longest], batch_file)  # Adam's state is made in the first
            spec = {
                **dataset_spec,
                "size": size,
                "threads": args.threads,
                "device": args.device,
                "warmup": 0,
            }
            for n in names:
                mem = run_worker({**spec, "model": n, "batches": str(batch_file)})
                rows[n]["peak_mib"] = mem["peak_mib"]
                rows[n]["cuda_peak_mib"] = mem["cuda_peak_mib"]
        lengths = [s.length for s in samples[BASELINE]]
        print(
            f"\nsize {size} ({size_line(size)}): {len(batches)} timed steps per model (padded "
            f"lengths {min(lengths)}..{max(lengths)}) after {args.warmup} warm-up steps on the "
            f"longest; models take turns step by step; CPU share {cpu_share(samples):.2f} of a core"
        )
        print_size_table(rows)
        if not args.no_memory:
            print(
                f"peak MiB: resident-set growth in a fresh process, two steps on the longest batch "
                f"({longest.strokes.shape[1] - 1}); a Trainer whose model reads rasters also holds "
                f"its loader's bit-packed rasters ({loader.rasters.nbytes / MIB:.0f} MiB for the "
                "training split)"
            )
        if args.profile:
            profile(runners, batches[len(batches) // 2], device, size)
        del runners
        gc.collect()
        results[size] = {
            "rows": rows,
            "samples": {n: [asdict(s) for s in ss] for n, ss in samples.items()},
        }
    return results


def profile(runners: dict[str, Steppable], batch: Batch, device: torch.device, size: str) -> None:
    """torch.profiler's top operators by self CPU time: one step of nn.LSTM and of ai-sketcher."""
    from torch.profiler import profile as torch_profile

    for name in (BASELINE, "ai-sketcher"):
        if name not in runners:
            continue
        with torch_profile() as prof:
            timed_step(runners[name], batch, device)
        print(
            f"\nprofile: {name}, size {size}, one step, padded length {batch.strokes.shape[1] - 1}"
        )
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


def time_grouping(
    args: argparse.Namespace, dataset: SketchDataset, run_dir: Path
) -> dict[str, Any]:
    """Epoch time estimates: length-grouped vs random batches vs padding to 250."""
    device = torch.device(args.device)
    split = dataset["train"]
    lengths = split.lengths()
    modes = {
        "length-grouped (default)": (None, True),
        "random (train --no-length-grouping)": (None, False),
        f"padded to {PAD_LENGTH}": (PAD_LENGTH, False),
    }
    names = [n for n in (BASELINE, "ai-sketcher") if n == BASELINE or n in args.configs]
    runners = {n: build(n, args.grouping_size, dataset, args.device, run_dir) for n in names}
    sampled: dict[str, list[Batch]] = {}
    per_epoch: dict[str, int] = {}
    rows_per_batch: dict[str, float] = {}
    for mode, (pad_to, grouped) in modes.items():
        loader = BatchLoader(split, BATCH_SIZE, raster_size=RASTER_SIZE, seed=SEED, pad_to=pad_to)
        rng = np.random.default_rng(SEED)
        if grouped:
            epoch = length_grouped_batches(lengths, BATCH_SIZE, rng)
        else:
            epoch = random_batches(len(split), BATCH_SIZE, rng)
        sampled[mode], padded = sample_batches(loader, epoch, args.epoch_sample)
        per_epoch[mode] = len(epoch)
        rows_per_batch[mode] = float(np.mean(padded))
    for _ in range(args.warmup):
        for runner in runners.values():
            timed_step(runner, sampled[f"padded to {PAD_LENGTH}"][0], device)
    samples: dict[str, dict[str, list[Sample]]] = {m: {n: [] for n in names} for m in modes}
    for i in range(args.epoch_sample):
        for mode in modes:
            for name in names:
                samples[mode][name].append(timed_step(runners[name], sampled[mode][i], device))
    results: dict[str, Any] = {}
    print(
        f"\nlength grouping vs padding (size {args.grouping_size}): an epoch is estimated as the "
        f"mean step time over {args.epoch_sample} batches at evenly spaced quantiles of the "
        f"epoch's padded lengths, times the batches per epoch ({max(per_epoch.values())})"
    )
    header = "".join(f"{n + ' s/epoch':>22}" for n in names)
    print(f"{'batching':<30}{'rows/batch':>11}{header}")
    for mode in modes:
        steps = samples[mode]
        epoch_s = {n: statistics.fmean(s.wall for s in steps[n]) * per_epoch[mode] for n in names}
        epoch_cpu_s = {
            n: statistics.fmean(s.user + s.sys for s in steps[n]) * per_epoch[mode] for n in names
        }
        results[mode] = {
            "batches_per_epoch": per_epoch[mode],
            "mean_padded_length": rows_per_batch[mode],
            "epoch_s": epoch_s,
            "epoch_cpu_s": epoch_cpu_s,
            "samples": {n: [asdict(s) for s in ss] for n, ss in samples[mode].items()},
        }
        cells = "".join(f"{epoch_s[n]:>22.1f}" for n in names)
        print(f"{mode:<30}{rows_per_batch[mode]:>11.1f}{cells}")
    grouped, padded = results["length-grouped (default)"], results[f"padded to {PAD_LENGTH}"]
    speedup = {n: padded["epoch_s"][n] / grouped["epoch_s"][n] for n in names}
    cpu_speedup = {n: padded["epoch_cpu_s"][n] / grouped["epoch_cpu_s"][n] for n in names}
    results["speedup"], results["cpu_speedup"] = speedup, cpu_speedup
    print(
        f"padded to {PAD_LENGTH} / length-grouped epoch time: "
        + ", ".join(f"{n} {v:.2f}x (CPU time {cpu_speedup[n]:.2f}x)" for n, v in speedup.items())
    )
    return results


def time_allocator(args: argparse.Namespace, tmp_dir: Path) -> dict[str, Any]:
    """Models on long sketches in fresh processes: the project's mallopt settings vs glibc's."""
    source = args.data / LONG_SKETCHES
    split = load_dataset([str(source)], args.data, max_seq_len=PAD_LENGTH)["train"]
    loader = BatchLoader(
        split,
        BATCH_SIZE,
        raster_size=make_config(size=args.alloc_size).raster_size,
        seed=SEED,
        group_by_length=False,
        pad_to=PAD_LENGTH,
    )
    batch_file = tmp_dir / "long.pt"
    save_batches([loader.next_batch() for _ in range(args.warmup + args.alloc_steps)], batch_file)
    settings = {"tuned (allocator.py)": "1", f"glibc default ({ENV_SWITCH}=0)": "0"}
    spec = {
        "size": args.alloc_size,
        "classes": [str(source)],
        "data": str(args.data),
        "threads": args.threads,
        "device": args.device,
        "batches": str(batch_file),
        "warmup": args.warmup,
    }
    models = [m for m in ALLOCATOR_MODELS if m == BASELINE or m in args.configs]
    results: dict[str, Any] = {}
    print(
        f"\nallocator (size {args.alloc_size}, {source.name}: {len(split):,} training sketches "
        f"of mean length {split.lengths().mean():.0f}, padded to {PAD_LENGTH}; "
        f"{args.alloc_steps} timed steps after {args.warmup} warm-up steps; one fresh process "
        "per row)"
    )
    print(f"{'model':<14}{'malloc':<38}{'s/step':>8}{'user s':>8}{'sys s':>8}{'faults/step':>13}")
    for model in models:
        results[model] = {}
        for label, value in settings.items():
            out = run_worker({**spec, "model": model}, {ENV_SWITCH: value})
            samples = [Sample(**s) for s in out["samples"]]
            row = summary(samples, None)
            results[model][label] = {**row, "samples": out["samples"]}
            print(
                f"{model:<14}{label:<38}{row['median_s']:>8.3f}{row['user_s']:>8.3f}"
                f"{row['sys_s']:>8.3f}{row['faults']:>13,.0f}"
            )
        tuned, plain = results[model].values()
        results[model]["default_over_tuned"] = plain["median_s"] / tuned["median_s"]
        results[model]["default_over_tuned_cpu"] = (plain["user_s"] + plain["sys_s"]) / (
            tuned["user_s"] + tuned["sys_s"]
        )
    print(
        "glibc default / tuned: "
        + ", ".join(
            f"{m} {r['default_over_tuned']:.2f}x step time, {r['default_over_tuned_cpu']:.2f}x "
            "CPU time"
            for m, r in results.items()
        )
    )
    return results


def print_targets(sizes: dict[str, Any], grouping: dict[str, Any] | None) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    print()
    if all("ai-sketcher" in r["rows"] for r in sizes.values()) and sizes:
        rows = {s: r["rows"]["ai-sketcher"] for s, r in sizes.items()}
        targets["ai_sketcher_step_ratio"] = {s: r["ratio"] for s, r in rows.items()}
        targets["ai_sketcher_cpu_ratio"] = {s: r["cpu_ratio"] for s, r in rows.items()}
        cells = ", ".join(
            f"{s} {r['ratio']:.2f}x ({'met' if r['ratio'] <= 1.5 else 'NOT met'}; "
            f"CPU time {r['cpu_ratio']:.2f}x)"
            for s, r in rows.items()
        )
        print(f"target: ai-sketcher step <= 1.5x the nn.LSTM Sketch-RNN of the same size: {cells}")
    if grouping is not None and "ai-sketcher" in grouping["speedup"]:
        v = grouping["speedup"]["ai-sketcher"]
        targets["grouping_speedup"] = v
        print(
            f"target: length grouping makes an ai-sketcher epoch >= 2x faster than padding to "
            f"{PAD_LENGTH}: {v:.2f}x ({'met' if v >= 2 else 'NOT met'})"
        )
    return targets


def parse_list(text: str, known: Sequence[str], what: str) -> list[str]:
    items = list(known) if text == "all" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(known)})")
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="data directory")
    parser.add_argument(
        "--classes", default=DEFAULT_CLASSES, help="QuickDraw classes, comma-separated"
    )
    parser.add_argument("--sizes", default="small,magenta", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--configs", default="all", help="presets, comma-separated, or 'all'")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model and size")
    parser.add_argument("--paper-steps", type=int, default=2, help="timed steps at the paper size")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--epoch-sample", type=int, default=4, help="batches per batching mode")
    parser.add_argument("--grouping-size", default="small", choices=list(SIZES))
    parser.add_argument("--alloc-size", default="small", choices=list(SIZES))
    parser.add_argument("--alloc-steps", type=int, default=2, help="timed steps per allocator row")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--no-grouping", action="store_true", help="skip the batching section")
    parser.add_argument("--no-allocator", action="store_true", help="skip the allocator section")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables")
    parser.add_argument("--quick", action="store_true", help="smoke run: small, 2 configs, 2 steps")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.quick:
        args.sizes, args.configs, args.steps = "small", "sketch-rnn,ai-sketcher", 2
        args.epoch_sample, args.alloc_steps = 2, 1
    args.sizes = parse_list(args.sizes, list(SIZES), "size")
    args.configs = parse_list(args.configs, list(PRESETS), "config")
    args.classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    torch.set_num_threads(args.threads)
    tune_allocator()  # what every Trainer does, applied first so both kinds of model share it

    print(machine_line(args.threads, args.device))
    dataset = load_dataset(args.classes, args.data, max_seq_len=PAD_LENGTH)
    split = dataset["train"]
    # Rasters for the configurations that read them; the others get the same batches without.
    loader = BatchLoader(split, BATCH_SIZE, raster_size=RASTER_SIZE, seed=SEED)
    epoch = length_grouped_batches(split.lengths(), BATCH_SIZE, np.random.default_rng(SEED))
    padded = [int(split.lengths()[b].max()) for b in epoch]
    start = time.perf_counter()
    for b in epoch[:20]:
        loader.make_batch(b)
    loader_ms = (time.perf_counter() - start) / len(epoch[:20]) * 1e3
    print(
        f"data: {len(args.classes)} QuickDraw classes ({', '.join(args.classes)}), {len(split):,} "
        f"training sketches, batch {BATCH_SIZE}; the timed batches lie at evenly spaced length "
        f"quantiles of a length-grouped epoch ({len(epoch)} batches, padded lengths "
        f"{min(padded)}..{max(padded)}, mean {np.mean(padded):.1f}), the same for every model"
    )
    print(
        f"loader (not in the step times): {loader_ms:.1f} ms per batch for augmentation, "
        "collation and raster unpacking"
    )

    results: dict[str, Any] = {"machine": machine_line(args.threads, args.device)}
    results["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    grouping = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        results["sizes"] = time_sizes(args, dataset, loader, epoch, tmp_dir)
        if not args.no_grouping:
            grouping = results["grouping"] = time_grouping(args, dataset, tmp_dir)
        if not args.no_allocator:
            results["allocator"] = time_allocator(args, tmp_dir)
    results["targets"] = print_targets(results["sizes"], grouping)
    end_line = machine_line(args.threads, args.device)
    print(f"at the end: {end_line.split('; ')[-1]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
