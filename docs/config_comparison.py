"""Compare training runs of the named configurations: a markdown table of their losses.

python docs/config_comparison.py --runs runs/compare > docs/config-comparison.md

Reads every run folder's `config.json` and `metrics.csv` (and, for timings, the TensorBoard event
wall times under `tb/`); prints the report on stdout.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

from aisketcher.loss_weights import trained_weights
from aisketcher.model.config import PRESETS, SIZES, ModelConfig
from aisketcher.train.loss import kl_weight_at
from aisketcher.train.trainer import TrainConfig

TRAIN_TAIL = 5  # logged training batches averaged for the "train at the end" column


def read_run(run: Path) -> dict[str, Any]:
    info = json.loads((run / "config.json").read_text())
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "name": run.name,
        "info": info,
        "model": ModelConfig.from_dict(info["model"]),
        "weights": trained_weights(info),
        "train": [r for r in rows if r["split"] == "train"],
        "valid": [r for r in rows if r["split"] == "valid"],
        "timing": read_timing(run / "tb", info["train"]["log_every"]),
    }


def read_timing(tb_dir: Path, log_every: int) -> dict[str, float]:
    """Seconds per training step and per validation, from the event files' wall times, and the
    mean gradient norm (before clipping) of the last logged steps.

    Training rows are written every `log_every` steps, so the median gap between them / log_every
    is the time of one step (the median skips the gaps that hold a validation). A validation row is
    written right after the training row of the same step, so their gap is the validation's time.
    """
    if not tb_dir.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir))
    events.Reload()
    tags = events.Tags().get("scalars", [])
    if "train/total" not in tags:
        return {}
    train = {e.step: e.wall_time for e in events.Scalars("train/total")}
    times = [train[s] for s in sorted(train)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    out: dict[str, float] = {}
    if gaps:
        out["step_s"] = statistics.median(gaps) / log_every
    if "valid/total" in tags:
        valid = [
            e.wall_time - train[e.step] for e in events.Scalars("valid/total") if e.step in train
        ]
        if valid:
            out["valid_s"] = statistics.mean(valid)
    if "train/grad_norm" in tags:
        norms = [e.value for e in events.Scalars("train/grad_norm")][-TRAIN_TAIL:]
        out["grad_norm"] = statistics.mean(norms)
    return out


def size_name(model: dict[str, Any]) -> str:
    for name, fields in SIZES.items():
        if all(model[k] == v for k, v in fields.items()):
            return name
    return "custom"


def command_line(run: dict[str, Any]) -> str:
    """The `aisketcher train` command that the run's config.json records, preset as PRESET."""
    t, d = run["info"]["train"], run["info"]["data"]
    return (
        f"OMP_NUM_THREADS=1 nice -n 5 aisketcher train --config PRESET --size {size_name(run['info']['model'])} "
        f"--classes {','.join(d['classes'])} --steps {t['steps']} --batch-size {t['batch_size']} "
        f"--seed {t['seed']} --eval-every {t['eval_every']} "
        f"--checkpoint-every {t['checkpoint_every']} --out runs/compare/PRESET"
    )


def shared_settings(run: dict[str, Any]) -> tuple[Any, ...]:
    t, d = run["info"]["train"], run["info"]["data"]
    return (
        size_name(run["info"]["model"]),
        tuple(d["classes"]),
        t["steps"],
        t["batch_size"],
        t["seed"],
        t["eval_every"],
    )


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def value(row: dict[str, str] | None, key: str, *, present: bool = True, digits: int = 3) -> str:
    """A metrics.csv cell, or a dash where the run has no such row or the model no such part."""
    return fmt(float(row[key]) if row and present else None, digits)


def table(runs: list[dict[str, Any]]) -> list[str]:
    head = [
        "preset",
        "steps",
        "batch",
        "s/step",
        "valid s",
        "valid total",
        "l_r",
        "l_c",
        "l_s",
        "l_kl",
        "l_ae",
        "earlier valid total",
        f"train total (last {TRAIN_TAIL} logs)",
        f"train l_r (last {TRAIN_TAIL} logs)",
        f"grad norm (last {TRAIN_TAIL} logs)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        model: ModelConfig = run["model"]
        final = run["valid"][-1] if run["valid"] else None
        step = run["train"][-1]["step"] if run["train"] else "0"

        has_kl = (model.variational and model.has_latent) or model.use_influence
        tail = run["train"][-TRAIN_TAIL:]
        earlier = ", ".join(f"{r['step']}: {float(r['total']):.3f}" for r in run["valid"][:-1])
        cells = [
            f"`{model.name}`",
            step,
            str(run["info"]["train"]["batch_size"]),
            fmt(run["timing"].get("step_s"), 2),
            fmt(run["timing"].get("valid_s"), 1),
            value(final, "total"),
            value(final, "l_r"),
            value(final, "l_c"),
            value(final, "l_s"),
            value(final, "l_kl", present=has_kl),
            value(final, "l_ae", present=model.use_autoencoder, digits=0),
            earlier or "—",
            fmt(statistics.mean(float(r["total"]) for r in tail) if tail else None),
            fmt(statistics.mean(float(r["l_r"]) for r in tail) if tail else None),
            fmt(run["timing"].get("grad_norm"), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report(runs: list[dict[str, Any]], runs_arg: str) -> str:
    first = runs[0]
    same = all(shared_settings(r) == shared_settings(first) for r in runs)
    d, t = first["info"]["data"], first["info"]["train"]
    sizes = ", ".join(f"{k} {d['sizes'][k]}" for k in ("train", "valid", "test") if k in d["sizes"])
    model = first["model"]
    examples = t["steps"] * t["batch_size"]
    lines = [
        "# Named configurations compared on an equal, tiny budget",
        "",
        "Every run was trained with this command (`PRESET` = the row's preset), one run at a time "
        "on a 2-core CPU shared with another training run:",
        "",
        f"`{command_line(first)}`",
        "",
        "This file is generated: "
        f"`python docs/config_comparison.py --runs {runs_arg} > docs/config-comparison.md`.",
        "",
    ]
    if not same:
        lines += ["**Warning: the runs below do not share the same settings.**", ""]
    lines += [
        f"Data: {len(d['classes'])} QuickDraw classes ({', '.join(d['classes'])}) from the "
        f"project's real data subset, {sizes} sketches, sketches longer than {d['max_seq_len']} "
        f"points dropped, N_max {model.max_seq_len}, scale factor {d['scale_factor']:.3f}. "
        f"Size `{size_name(first['info']['model'])}` (encoder 2x{model.enc_rnn_size}, decoder "
        f"{model.dec_rnn_size}, n_z {model.z_size}, z_r {model.raster_z_size}, "
        f"{model.cell} cells), seed {t['seed']}, Adam lr {t['learning_rate']}. Budget: "
        f"{t['steps']} steps of batch {t['batch_size']} = {examples} sketches seen, about "
        f"{examples / max(d['sizes'].get('train', 1), 1):.1f} passes over the training split.",
        "",
        "Columns: `s/step` is the median wall-clock time of one training step and `valid s` the "
        "time of one validation (both from the TensorBoard event times; the CPU was shared with "
        "another training run and other jobs, so timings are indicative). Validation losses are "
        "the means over the whole validation split, padded to N_max, without augmentation, "
        "dropout or KL floor, and with the KL weight at its final value 1.0; `valid total` = "
        "`l_r` + `l_kl` for the models that have a KL term, so `l_r` (= `l_c` + `l_s`) is the "
        "term comparable across all rows. `l_ae` is the CNN autoencoder's summed squared error "
        "per 128x128 image. Training losses average the last logged batches; they use the "
        "annealed KL weight and the KL floor and pad only to each batch's longest sketch (so "
        "their `l_s` is much smaller), and are not comparable with the validation columns. `grad norm` is the norm of the whole "
        "gradient before clipping: in the models with the CNN autoencoder it is dominated by "
        "the autoencoder's error, which is why the trainer clips the autoencoder's gradient and "
        f"the sketch model's to {t['grad_clip']} each (those two rows were trained so).",
        "",
        *table(runs),
        "",
        f"Caveat: {t['steps']} steps is a tiny fraction of a real training run (the trainer's "
        f"default is {TrainConfig().steps} steps), the KL weight has barely started its "
        f"annealing (it reaches {kl_weight_at(t['steps'], first['weights']):.3f} at the last step), and there is "
        "one seed per configuration. These numbers show that every configuration trains and what "
        "each costs per step; they say little about which configuration draws best once trained.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/compare", help="folder of run folders")
    args = parser.parse_args()
    folders = [p for p in Path(args.runs).iterdir() if (p / "metrics.csv").is_file()]
    order = list(PRESETS)
    runs = sorted(
        (read_run(p) for p in folders),
        key=lambda r: order.index(r["model"].name) if r["model"].name in order else len(order),
    )
    if not runs:
        parser.error(f"no run folders with metrics.csv under {args.runs}")
    print(report(runs, args.runs))


if __name__ == "__main__":
    main()
