"""`aisketcher export`: a trained run packaged as a self-contained model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from aisketcher.errors import SketchDataError

# What an exported model keeps of its run's checkpoint state.
RECORD_KEYS = (
    "step",
    "best_valid",
    "skipped_steps",
    "restores",
    "recurrent_kernels",
    "train",
    "data",
)


def training_record(run: Path, checkpoint: str = "best") -> dict:
    """How the run trained: steps, time, validation losses over time, and the machine."""
    import csv
    import json
    import platform

    import torch

    record: dict = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    }
    state = run / f"{checkpoint}.json"
    if state.is_file():
        info = json.loads(state.read_text())
        record.update({k: info.get(k) for k in RECORD_KEYS})
    metrics = run / "metrics.csv"
    if metrics.is_file():
        with open(metrics) as fh:
            rows = [r for r in csv.DictReader(fh) if r["split"] == "valid"]
        keys = ("step", "total", "l_r", "l_c", "l_s", "l_kl", "l_ae")
        record["validation"] = [{k: float(r[k]) for k in keys} for r in rows]
    return record


def cmd_export(args: argparse.Namespace) -> int:
    from aisketcher.api import Sketcher
    from aisketcher.checkpoint import checkpoint_file

    run = Path(args.run)
    found = checkpoint_file(run, args.checkpoint)
    if found is None:
        raise SketchDataError("not a run: no best.safetensors or last.safetensors", str(run))
    checkpoint = found.stem
    if checkpoint != args.checkpoint:
        print(
            f"{run}: no {args.checkpoint} checkpoint (the run has not validated yet); taking last"
        )
    sketcher = Sketcher.load(run, checkpoint=checkpoint)
    record = training_record(run, checkpoint)
    out = sketcher.export(args.out, record=record, half=args.half)
    print(f"exported {run} ({checkpoint} checkpoint, step {record.get('step')}) to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "export",
        help="package a trained run as a self-contained model folder",
        description="Writes model.safetensors (the weights, with the fitted z_r prior for "
        "class-only drawing) and config.json (the config and the training record).",
        epilog="example:\n  aisketcher train --quick --out runs/quick && aisketcher export runs/quick "
        "--out my_model && aisketcher draw cat --model my_model",
        formatter_class=fmt,
    )
    p.add_argument("run", help="run directory")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--checkpoint",
        default="best",
        choices=["best", "last"],
        help="best: the lowest validation loss so far (default; last when the run has not "
        "validated yet); last: the latest step",
    )
    p.add_argument(
        "--half", action="store_true", help="store the weights as float16 (half the size)"
    )
    p.set_defaults(func=cmd_export)
