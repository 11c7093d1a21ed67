"""How `aisketcher train` continues: what a --resume accepts of its command line, a warm start
from another run's or model's weights (--init-from), and a run with nothing left to train."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisketcher.errors import SketchDataError

if TYPE_CHECKING:  # torch is imported by the command, not by `--help`
    from aisketcher.model.config import ModelConfig
    from aisketcher.train.config import TrainConfig
    from aisketcher.train.trainer import Trainer


# The training settings a run keeps (TrainConfig's fields, by the option that sets each) and the
# options that make its model and data: --resume continues a run as it was saved, so an option
# asking for another setting is refused, and one that would make another model is not used.
RUN_SETTINGS = {
    "batch_size": "batch_size",
    "lr": "learning_rate",
    "seed": "seed",
    "eval_every": "eval_every",
    "checkpoint_every": "checkpoint_every",
    "no_length_grouping": "group_by_length",
    "balance_classes": "balance_classes",
    "damage": "damage",
    "damage_share": "damage_share",
    "augment_scale": "augment_scale",
    "augment_drop": "augment_drop",
    "precision": "precision",
    "compile": "compile",
}
RUN_MODEL = (
    "config",
    "size",
    "classes",
    "quick",
    "data",
    "init_from",
    "max_seq_len",
    "set",
    "reset",
)


def check_resume(
    args: argparse.Namespace,
    saved: TrainConfig,
    model: ModelConfig,
    model_set: dict[str, Any],
    asked: TrainConfig,
    info_path: Path,
) -> None:
    """Options given with --resume (other than --steps, --max-minutes, --device, --threads and
    the loss weights): a setting or model field other than the run's is refused, model and data
    options are said to be unused."""
    from aisketcher.loss_weights import LOSS_FIELDS

    for name, value in model_set.items():
        if getattr(model, name) != value:
            raise SketchDataError(
                f"--set {name}={value}: the run's model has {name} {getattr(model, name)!r}; "
                "--resume continues the run's model (--set changes only its loss weights, "
                f"{', '.join(LOSS_FIELDS)}); --init-from starts a new run from its weights",
                str(info_path),
            )
    given = [d for d in (*RUN_SETTINGS, *RUN_MODEL) if getattr(args, d) != args.defaults[d]]
    if not model_set:  # loss weights alone: used
        given = [d for d in given if d != "set"]
    for dest in given:
        field = RUN_SETTINGS.get(dest)
        if field is not None and getattr(asked, field) != getattr(saved, field):
            raise SketchDataError(
                f"--{dest.replace('_', '-')} asks for {field} {getattr(asked, field)}, the run "
                f"has {getattr(saved, field)}: --resume continues a run as it was (it takes "
                "--steps, --max-minutes, --device and --threads); --init-from starts a new one "
                "from its weights",
                str(info_path),
            )
    unused = [f"--{d.replace('_', '-')}" for d in given if d in RUN_MODEL]
    if unused:
        warnings.warn(
            f"{', '.join(unused)} not used: a resumed run keeps the model and data of its "
            f"{info_path}",
            stacklevel=2,
        )


def warm_start_run(trainer: Trainer, source: Path, reset: list[str]) -> None:
    """Weights from another run or exported model (c's slots by class name, see
    train/warm_start.py), but the parts in `reset` start afresh; schedules continue from its step
    count."""
    from aisketcher.api import Sketcher
    from aisketcher.checkpoint import checkpoint_step
    from aisketcher.train import distributed
    from aisketcher.train.warm_start import warm_start

    model = Sketcher.load(source)
    classes = trainer.dataset.class_names
    new = warm_start(trainer.model, model.model, classes, model.class_names, str(source))
    for part in reset:
        module = getattr(trainer.model, part)
        if module is None:
            raise SketchDataError(f"--reset {part}: this model has no {part}", str(source))
        module.reset_parameters()
    # A run's step is its checkpoint's (the one loaded); an exported model's, its record's.
    info = json.loads((source / "config.json").read_text())
    step = checkpoint_step(source)
    trainer.step = step if step is not None else int(info.get("record", {}).get("step") or 0)
    if distributed.is_main():
        print(f"starting from the weights of {source} (step {trainer.step}), with a new optimizer")
        if new:
            print(f"classes it never saw start as its average class: {', '.join(new)}")


def nothing_to_train(args: argparse.Namespace, step: int, steps: int) -> None:
    """A run that has reached its total of steps: say how to train on, and write nothing (the
    checkpoints, metrics and logs stay as they are)."""
    from aisketcher.train import distributed

    past = f", past --steps {steps}" if steps < step else ""
    if not args.resume:  # a warm start from weights that far: the new run would hold no step
        raise SketchDataError(
            f"--init-from {args.init_from}: its weights are already at step {step}{past}; "
            f"give --steps M with M > {step} (the total, counting the steps they have)"
        )
    if distributed.is_main():
        print(
            f"{args.out}: the run is already finished at step {step}{past}; nothing to train. "
            f"To train on, give a larger total: aisketcher train --out {args.out} --resume "
            f"--steps M, with M > {step}"
        )
