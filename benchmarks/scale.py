"""Training at the official data size: the sketch store against the data size.

Full-size class files are made in a temporary folder from the shared subset (each class's train /
valid / test resampled with replacement to 70,000 / 2,500 / 2,500 sketches, written as the official
sketch-rnn `.npz`), then for 1, 5, 10 and 20 classes, and for all 345 classes at 2,000 training
sketches each: the store's build time (`aisketcher data pack`), and for each model the command
`aisketcher train` itself, run in a child process: time from the command to its first training
step, steady seconds per step, peak resident memory, checkpoint and metadata size. Where the data
fits, the steady step is also timed with the loader of earlier versions (every sketch a NumPy array
in memory, rasters from a bit-packed array of all of them) in one process, alternating.

python benchmarks/scale.py [--data ../shared/data] [--counts 1,5,10,20] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BUILTIN = [
    "cat",
    "airplane",
    "bicycle",
    "eye",
    "guitar",
    "camera",
    "headphones",
    "television",
    "crayon",
    "paintbrush",
    "calculator",
    "computer",
    "dragon",
    "map",
    "paint_can",
    "face",
    "pig",
    "apple",
    "fish",
    "umbrella",
]
OFFICIAL = {"train": 70_000, "valid": 2_500, "test": 2_500}


def make_files(source: Path, classes: list[str], sizes: dict[str, int], out: Path) -> None:
    """Each class's splits resampled with replacement to `sizes`, in the official format."""
    from aisketcher.formats.npz import read_npz, write_npz

    out.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(classes):
        target = out / f"{name}.npz"
        if target.exists():
            continue
        data = read_npz(source / f"{name}.npz")
        rng = np.random.default_rng(k)
        write_npz(
            target,
            {
                split: [
                    data[split][i].astype(np.int16) for i in rng.integers(0, len(data[split]), n)
                ]
                for split, n in sizes.items()
            },
        )


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, not getrusage's ru_maxrss, which Linux carries
    over from the parent through fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_train(argv: list[str]) -> None:
    """Run `aisketcher train` in this process, timing each step from the command's start."""
    started = float(os.environ["SCALE_STARTED"])
    import torch

    from aisketcher.cli import main
    from aisketcher.train import trainer

    stamps: list[float] = []
    step = trainer.Trainer.train_step

    def timed(self: trainer.Trainer) -> object:
        out = step(self)
        stamps.append(time.time())
        return out

    trainer.Trainer.train_step = timed  # type: ignore[method-assign]
    code = main(argv)
    steady = np.diff(stamps[1:]) if len(stamps) > 2 else np.array([np.nan])
    print(
        "RESULT "
        + json.dumps(
            {
                "code": code,
                "first_step_s": stamps[0] - started,
                "steady_s": float(np.median(steady)),
                "peak_rss_mb": peak_rss_mb(),
                "threads": torch.get_num_threads(),
            }
        )
    )


def run_child(args: list[str], env: dict[str, str]) -> dict:
    env = {**os.environ, **env, "SCALE_STARTED": repr(time.time())}
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(
            f"child failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1].removeprefix("RESULT "))


def pack(classes: list[str], data: Path, store: Path) -> float:
    shutil.rmtree(store, ignore_errors=True)  # timed from nothing
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aisketcher",
            "data",
            "pack",
            *classes,
            "--data",
            str(data),
            "--store",
            str(store),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(done.stderr)
    return time.perf_counter() - started


def train_row(
    config: str,
    classes: list[str],
    data: Path,
    store: Path,
    work: Path,
    steps: int,
    max_seq_len: int | None = None,
) -> dict:
    out = work / f"run-{config}-{len(classes)}"
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        "train",
        "--config",
        config,
        "--classes",
        ",".join(classes),
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--eval-every",
        str(steps),
        "--checkpoint-every",
        str(steps),
        "--threads",
        "1",
        *(["--max-seq-len", str(max_seq_len)] if max_seq_len else []),
    ]
    row = run_child(argv, {"AISKETCHER_STORE": str(store)})
    row["checkpoint_mb"] = (out / "last.safetensors").stat().st_size / 2**20
    row["metadata_kb"] = (out / "last.json").stat().st_size / 1024
    return row


def compare_loaders(classes: list[str], data: Path, store: Path, steps: int) -> dict:
    """Steady ai-sketcher steps with the store's loader and with the earlier in-memory one,
    alternating in one process (same model, same batches' sizes)."""
    import torch

    from aisketcher.data.batching import BatchLoader, collate
    from aisketcher.data.dataset import Split, load_dataset
    from aisketcher.model.config import make_config
    from aisketcher.raster import rasterize_many
    from aisketcher.train.trainer import TrainConfig, Trainer

    os.environ["AISKETCHER_STORE"] = str(store)
    torch.set_num_threads(1)
    dataset = load_dataset(classes, data, max_seq_len=250)
    train = dataset["train"]
    memory = Split(train.take(np.arange(len(train))), train.labels)
    packed = np.concatenate(
        [
            np.packbits(rasterize_many(memory.sketches[i : i + 10_000]), axis=-1)
            for i in range(0, len(memory), 10_000)
        ]
    )

    class InMemory(BatchLoader):
        """The earlier loader: sketches in a list, rasters unpacked from the packed array."""

        def make_batch(self, indices: np.ndarray):  # type: ignore[no-untyped-def]
            from aisketcher.data.batching import augment

            sketches = [
                augment(memory.sketches[i], self.rng, self.scale, self.drop) for i in indices
            ]
            rasters = np.unpackbits(packed[indices], axis=-1, count=128)
            return collate(sketches, memory.labels[indices], rasters)

    cfg = make_config("ai-sketcher", num_classes=len(classes), max_seq_len=dataset.longest)
    trainer = Trainer(cfg, TrainConfig(steps=10**6), dataset, tempfile.mkdtemp(), progress=False)
    loaders = {"store": trainer.train_loader, "in memory": InMemory(memory, 100, raster_size=128)}
    times: dict[str, list[float]] = {k: [] for k in loaders}
    for i in range(2 * steps + 2):
        name = list(loaders)[i % 2]
        trainer.train_loader = loaders[name]
        started = time.perf_counter()
        trainer.train_step()
        if i >= 2:  # the first of each warms up
            times[name].append(time.perf_counter() - started)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_train(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--counts", default="1,5,10,20")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--configs", default="ai-sketcher,sketch-rnn")
    parser.add_argument(
        "--compare-up-to", type=int, default=5, help="in-memory loader to this many classes"
    )
    parser.add_argument(
        "--all-classes",
        type=int,
        default=2000,
        help="training sketches per class of the 345 (0: skip)",
    )
    parser.add_argument("--all-steps", type=int, default=100)
    parser.add_argument(
        "--max-seq-len",
        type=int,
        default=None,
        help="N_max of every run (default: each data's longest sketch, at most 250): the same "
        "N_max separates the memory that grows with the data from that of longer sketches",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the files here (default: a temporary folder)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    source = args.data / "quickdraw"
    results: dict = {
        "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}",
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        full = work / "full"
        counts = [int(c) for c in args.counts.split(",")]
        started = time.perf_counter()
        make_files(source, BUILTIN[: max(counts)], OFFICIAL, full)
        print(
            f"full-size files of {max(counts)} classes made in {time.perf_counter() - started:.0f} s"
        )
        for n in counts:
            classes = BUILTIN[:n]
            store = work / f"store-{n}"
            row: dict = {"classes": n, "train_sketches": n * OFFICIAL["train"]}
            row["store_build_s"] = pack(classes, full, store)
            row["store_mb"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20
            for config in args.configs.split(","):
                row[config] = train_row(
                    config, classes, full, store, work, args.steps, args.max_seq_len
                )
            if n <= args.compare_up_to:
                row["loaders_s_per_step"] = compare_loaders(classes, full, store, args.steps)
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
        if args.all_classes:
            names = sorted(p.stem for p in source.glob("*.npz"))
            every = work / "every"
            sizes = {"train": args.all_classes, "valid": 100, "test": 100}
            started = time.perf_counter()
            make_files(source, names, sizes, every)
            print(
                f"{len(names)} classes at {args.all_classes} made in {time.perf_counter() - started:.0f} s"
            )
            store = work / "store-all"
            row = {"classes": len(names), "train_sketches": len(names) * args.all_classes}
            row["store_build_s"] = pack(names, every, store)
            row["ai-sketcher"] = train_row(
                "ai-sketcher", names, every, store, work, args.all_steps, args.max_seq_len
            )
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
