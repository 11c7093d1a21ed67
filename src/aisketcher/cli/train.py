"""`aisketcher train`: train any named configuration on QuickDraw classes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisketcher.cli import arguments
from aisketcher.cli.arguments import positive_float, positive_int, seed
from aisketcher.cli.train_start import (
    RUN_MODEL,
    RUN_SETTINGS,
    check_resume,
    nothing_to_train,
    warm_start_run,
)
from aisketcher.errors import SketchDataError

if TYPE_CHECKING:  # torch is imported by the command, not by `--help`
    from aisketcher.train.config import TrainConfig

# `--quick`: a model that visibly learns in minutes on a laptop CPU.
QUICK = dict(classes="cat,eye", steps=600, eval_every=100, checkpoint_every=100)
DEFAULT_CLASSES = (
    "cat,airplane,bicycle,eye,guitar,camera,headphones,television,crayon,paintbrush,"
    "calculator,computer,dragon,map,paint_can,face,pig,apple,fish,umbrella"
)


# Model fields the training data decides, which --set cannot change.
DATA_FIELDS = {
    "num_classes": "the number of --classes decides it",
    "max_seq_len": "the longest training sketch decides it (--max-seq-len drops longer ones)",
}


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--set cell=lstm --set kl_weight=0.5` -> typed ModelConfig and loss weight overrides."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SketchDataError(f"--set expects FIELD=VALUE, got '{item}'")
        if key.strip() in DATA_FIELDS:
            raise SketchDataError(f"--set {key.strip()}: {DATA_FIELDS[key.strip()]}")
        try:
            out[key.strip()] = json.loads(value)
        except (ValueError, RecursionError):  # not JSON: the text itself (then type-checked)
            out[key.strip()] = value
    return out


def _split_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--set`'s model fields and loss weights. A resumed run's model is the one it continues
    (see train_start.check_resume); a warm start's may differ from its source's where the weights still fit
    (train/warm_start.py: e.g. class_dropout)."""
    from aisketcher.loss_weights import LOSS_FIELDS
    from aisketcher.model.config import ModelConfig

    overrides = _parse_overrides(args.set)
    loss = {k: v for k, v in overrides.items() if k in LOSS_FIELDS}
    model = {k: v for k, v in overrides.items() if k not in LOSS_FIELDS}
    ModelConfig.check_fields(model)
    return model, loss


def _new_train_config(args: argparse.Namespace) -> TrainConfig:
    from aisketcher.train.config import TrainConfig

    defaults = TrainConfig()
    return TrainConfig(
        steps=args.steps or (QUICK["steps"] if args.quick else defaults.steps),
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        max_minutes=args.max_minutes,
        device=args.device or defaults.device,
        eval_every=args.eval_every or (QUICK["eval_every"] if args.quick else 500),
        checkpoint_every=args.checkpoint_every
        or (QUICK["checkpoint_every"] if args.quick else 250),
        group_by_length=not args.no_length_grouping,
        balance_classes=args.balance_classes,
        damage=args.damage,
        damage_share=args.damage_share,
        augment_scale=args.augment_scale,
        augment_drop=args.augment_drop,
        precision=args.precision,
        compile=args.compile,
    )


def _set_threads(asked: int | None) -> str:
    """Set torch's CPU threads, and say how many and why: --threads, else OMP_NUM_THREADS (which
    torch read at import; torchrun sets 1 per process), else one.

    One by default: on a 2-core machine a second thread saved about a quarter while the machine was
    idle and cost two to four times as much as soon as other work shared the CPU
    (docs/performance.md, Threads)."""
    import torch

    if asked:
        torch.set_num_threads(asked)
        why = "--threads"
    elif os.environ.get("OMP_NUM_THREADS"):
        why = "OMP_NUM_THREADS"
    else:
        torch.set_num_threads(1)
        why = "the default, fastest when other work shares the CPU; --threads N to change"
    n = torch.get_num_threads()
    return f"{n} CPU thread{'s' if n > 1 else ''} ({why})"


def cmd_train(args: argparse.Namespace) -> int:
    from aisketcher.data.dataset import load_dataset
    from aisketcher.devices import resolve_device
    from aisketcher.loss_weights import legacy_loss_weights, trained_weights
    from aisketcher.model.config import make_config
    from aisketcher.model_info import read_model_config
    from aisketcher.train import distributed
    from aisketcher.train.config import TrainConfig
    from aisketcher.train.trainer import Trainer

    threads = _set_threads(args.threads)
    run_dir = Path(args.out)
    model_set, loss_set = _split_overrides(args)
    if args.reset and not args.init_from:
        raise SketchDataError("--reset starts a part afresh in a warm start: it needs --init-from")
    if run_dir.exists() and not run_dir.is_dir():
        raise SketchDataError("--out must be a folder for the run; this is a file", str(run_dir))
    if args.resume:
        info_path = run_dir / "config.json"
        if not info_path.is_file():
            raise SketchDataError("nothing to resume: no config.json", str(run_dir))
        model_cfg, _, scale = read_model_config(info_path)
        info = json.loads(info_path.read_text())
        overrides = {k: getattr(args, k) for k in ("steps", "max_minutes", "device")}
        overrides = {k: v for k, v in overrides.items() if v is not None} | loss_set
        train_fields = info.get("train")
        if isinstance(train_fields, dict):  # an older run kept the loss weights with the model
            train_fields = legacy_loss_weights(info["model"]) | train_fields | overrides
        train_cfg = TrainConfig.from_dict(train_fields, str(info_path))
        check_resume(args, train_cfg, model_cfg, model_set, _new_train_config(args), info_path)
        data = info["data"]
        sources, max_len = data.get("sources"), data.get("max_seq_len")
        if not isinstance(sources, list) or type(max_len) is not int:
            raise SketchDataError(
                "the run's data sources or max_seq_len are missing", str(info_path)
            )
        dataset = load_dataset(sources, max_seq_len=max_len, scale_factor=scale)
    else:
        if (run_dir / "last.safetensors").exists():
            raise SketchDataError(
                "already holds a run; use --resume or another --out", str(run_dir)
            )
        train_cfg = _new_train_config(args)
        if args.init_from:
            source = Path(args.init_from)
            if not (source / "config.json").is_file():
                raise SketchDataError(
                    "--init-from takes a run or exported model folder (with config.json)",
                    str(source),
                )
            # Its N_max and scale factor (the units of its outputs); --classes and --set may
            # differ (c's slots are matched by class name, see train_start.warm_start_run).
            source_cfg, classes, scale = read_model_config(source / "config.json")
            weights = trained_weights(json.loads((source / "config.json").read_text()))
            train_cfg = dataclasses.replace(train_cfg, **dataclasses.asdict(weights) | loss_set)
            dataset = load_dataset(
                args.classes or classes,
                args.data,
                max_seq_len=source_cfg.max_seq_len,
                scale_factor=scale,
            )
            model_cfg = dataclasses.replace(
                source_cfg, num_classes=dataset.num_classes, **model_set
            ).validate()
        else:
            classes = args.classes or (QUICK["classes"] if args.quick else DEFAULT_CLASSES)
            dataset = load_dataset(classes, args.data, max_seq_len=args.max_seq_len)
            model_cfg = make_config(
                args.config,
                args.size,
                num_classes=dataset.num_classes,
                max_seq_len=dataset.longest,
                **model_set,
            )
            train_cfg = dataclasses.replace(train_cfg, **loss_set)
    train_cfg.check_weights()
    if train_cfg.batch_size > len(dataset["train"]):
        raise SketchDataError(
            f"--batch-size {train_cfg.batch_size} is larger than the training split "
            f"({len(dataset['train'])} sketches)"
        )
    sizes = ", ".join(f"{k} {len(v)}" for k, v in dataset.splits.items())
    # Under torchrun (WORLD_SIZE > 1) this process is one rank of a data-parallel run.
    with distributed.process_group(resolve_device(train_cfg.device).type):
        main, world = distributed.is_main(), distributed.world_size()
        if main:
            ranks = f" ({world} processes)" if world > 1 else ""
            print(
                f"{model_cfg.name} on {dataset.num_classes} classes ({sizes}), scale factor "
                f"{dataset.scale_factor:.3f}, N_max {model_cfg.max_seq_len} -> {run_dir}{ranks}"
            )
        trainer = Trainer(model_cfg, train_cfg, dataset, run_dir, resume=args.resume)
        if args.init_from and not args.resume:
            warm_start_run(trainer, Path(args.init_from), args.reset)
        if trainer.step >= train_cfg.steps:
            nothing_to_train(args, trainer.step, train_cfg.steps)
            return 0
        if main:
            until = f", or for {train_cfg.max_minutes:g} minutes" if train_cfg.max_minutes else ""
            print(
                f"training from step {trainer.step} to step {train_cfg.steps}{until} (the "
                f"progress bar's ETA counts every step left); validation every "
                f"{train_cfg.eval_every} steps, checkpoints every {train_cfg.checkpoint_every}; "
                f"{trainer.kernels} recurrent kernels, {threads}"
            )
        summary = trainer.fit()
    if main:
        print(json.dumps(summary, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from aisketcher.model.config import PRESETS, SIZES
    from aisketcher.train.config import TrainConfig  # NumPy only: --help stays quick

    p = sub.add_parser(
        "train",
        help="train a model (AI-Sketcher or a baseline) on sketch classes",
        description="Train a model on QuickDraw classes. Checkpoints (safetensors), config.json, "
        "metrics.csv and TensorBoard logs go to --out; --resume continues exactly where a run "
        "stopped. Ctrl-C or SIGTERM saves a checkpoint and exits.",
        epilog="examples:\n"
        "  aisketcher train --quick --out runs/quick      # a model learning in minutes\n"
        "  aisketcher train --config ai-sketcher --classes cat,bicycle --out runs/demo\n"
        "  aisketcher train --out runs/demo --resume --steps 20000\n"
        "  aisketcher train --init-from src/aisketcher/pretrained/default --out runs/more\n"
        "  aisketcher train --config sketch-rnn-cond --size magenta --set cell=lstm --out runs/b\n"
        "\n"
        "several processes (DistributedDataParallel; gloo on the CPU, nccl with one GPU per\n"
        "process): launch with torchrun. --batch-size stays the global batch and must divide by\n"
        "the number of processes; the result equals one process training on that batch. Only\n"
        "rank 0 writes the run folder; --resume works the same way.\n"
        "  torchrun --nproc_per_node 2 -m aisketcher train --batch-size 100 --out runs/ddp\n"
        "  torchrun --nproc_per_node 4 -m aisketcher train --device cuda --out runs/ddp",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        default="ai-sketcher",
        choices=list(PRESETS),
        help="model preset (default ai-sketcher, whose influence layer attends to the points "
        "drawn before each target); ai-sketcher-paper-memory attends to the paper-literal "
        "bidirectional encoder states, which have read the points being predicted: it copies "
        "its input instead of drawing, and exists only to reproduce the paper's numbers",
    )
    p.add_argument(
        "--size", default="small", choices=list(SIZES), help="layer sizes (default small)"
    )
    p.add_argument(
        "--classes",
        default=None,
        help="comma-separated class names or .npz files (default: the built-in model's 20)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"see a model learn in minutes: classes {QUICK['classes']}, {QUICK['steps']} steps, "
        f"validation and checkpoints every {QUICK['eval_every']} (any option given wins)",
    )
    p.add_argument(
        "--data", default=None, help="data folder (default $AISKETCHER_DATA or ../shared/data)"
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="start from a run's or exported model's weights, config and scale factor; --classes "
        "(default: its classes) and --set may differ, e.g. --set class_dropout=0.1",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="total optimizer steps (default 100000, days on a CPU: the progress bar's ETA counts "
        "them all; --max-minutes ends a run sooner)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=100, help="sketches per batch (paper 100)"
    )
    p.add_argument(
        "--lr", type=positive_float, default=1e-3, help="Adam learning rate (paper 0.001)"
    )
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seeds the weights, the batch order and the augmentation: the same seed and "
        "settings train the same model (default 0)",
    )
    p.add_argument("--device", default=None, type=arguments.device, help=arguments.DEVICE_HELP)
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads (default 1, or OMP_NUM_THREADS). On 2 cores, 2 threads trained a "
        "quarter faster while the machine was idle, and 2-4 times slower once other work shared it",
    )
    p.add_argument(
        "--max-minutes", type=positive_float, default=None, help="stop cleanly after this long"
    )
    p.add_argument(
        "--eval-every",
        type=positive_int,
        default=None,
        help="steps between validations (default 500); the last step always validates",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        help="steps between checkpoints (default 250)",
    )
    p.add_argument(
        "--max-seq-len", type=positive_int, default=250, help="drop longer sketches (magenta 250)"
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="bf16: mixed precision by autocast (fastest on GPUs with bfloat16; default fp32)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the recurrent cells' step (compiling takes a minute or more)",
    )
    p.add_argument(
        "--no-length-grouping",
        action="store_true",
        help="random batches, each padded to its own longest sketch (default: batches of similar length)",
    )
    p.add_argument(
        "--reset",
        action="append",
        default=[],
        choices=["autoencoder"],
        help="with --init-from: start this part from a fresh initialisation instead of the "
        "source's weights (e.g. a model trained before the autoencoder's fix)",
    )
    p.add_argument(
        "--balance-classes",
        action="store_true",
        help="draw every class equally often in each epoch, repeating the sketches of small "
        "classes (default: every sketch once per epoch, as magenta; the official data holds "
        "70,000 per class, our shared subsets do not)",
    )
    p.add_argument(
        "--damage",
        type=arguments.unit_interval,
        default=0.0,
        metavar="SHARE",
        help="train to heal: in --damage-share of the sketches, the encoder and the autoencoder "
        "see up to SHARE of the strokes removed while the decoder learns the whole sketch "
        "(e.g. 0.5; default 0, off); for every preset with an encoder",
    )
    p.add_argument(
        "--damage-share",
        type=arguments.unit_interval,
        default=0.5,
        metavar="SHARE",
        help="share of training sketches damaged when --damage is on (default 0.5)",
    )
    p.add_argument(
        "--augment-scale",
        type=arguments.stretch,
        default=TrainConfig.augment_scale,
        metavar="S",
        help="augmentation: each training sketch's x and y scaled by random factors in "
        f"[1 - S, 1 + S] (magenta's random_scale_factor; default {TrainConfig.augment_scale})",
    )
    p.add_argument(
        "--augment-drop",
        type=arguments.unit_interval,
        default=TrainConfig.augment_drop,
        metavar="P",
        help="augmentation: each interior pen-down point dropped with probability P, its offset "
        f"kept by its neighbour (magenta's augment_stroke_prob; default {TrainConfig.augment_drop})",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a model config field (e.g. cell=lstm) or a loss weight (kl_weight, "
        "kl_weight_start, kl_decay_rate, kl_tolerance, influence_beta, autoencoder_weight); with "
        "--resume, loss weights only; with --init-from, fields its weights still fit (e.g. "
        "class_dropout=0.1)",
    )
    # What --resume compares its options with (see train_start.check_resume).
    p.set_defaults(
        func=cmd_train, defaults={d: p.get_default(d) for d in (*RUN_SETTINGS, *RUN_MODEL)}
    )
