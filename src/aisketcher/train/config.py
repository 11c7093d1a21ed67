"""TrainConfig: the settings of one training run, the loss weights (eq. 12-14) among them (saved
in its config.json, checked on resume; a resumed run may change them)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from aisketcher.errors import SketchDataError
from aisketcher.fields import mistyped
from aisketcher.loss_weights import LossWeights

# TrainConfig keys that older runs saved and this version ignores.
RETIRED_SETTINGS = frozenset({"raster_cache"})


# Validation sketches by default, over all classes: a validation then costs about what 50 training
# steps do, at any number of classes (345 classes x 500 took 1,725 batches).
VALID_SKETCHES = 10_000
VALID_PER_CLASS = (20, 500)


def validation_per_class(classes: int) -> int:
    return int(np.clip(VALID_SKETCHES // max(classes, 1), *VALID_PER_CLASS))


@dataclass
class TrainConfig(LossWeights):
    """The loss weights (`LossWeights`, first), then how the run trains."""

    steps: int = 100_000  # optimizer steps in all (a resumed run counts those already done)
    batch_size: int = 100  # paper 100
    learning_rate: float = 1e-3  # Adam, paper 0.001
    min_learning_rate: float = 1e-5  # floor of magenta's decay
    lr_decay: float = 0.9999  # magenta: lr = (lr - min) * decay^step + min
    grad_clip: float = 1.0  # gradient norm clipping, paper 1.0
    augment_scale: float = 0.15  # magenta random_scale_factor
    augment_drop: float = 0.1  # magenta augment_stroke_prob
    damage: float = 0.0  # healing: the most of a sketch's strokes the encoder and autoencoder lose
    # (the decoder's target stays whole); 0: off. Not in the paper
    damage_share: float = 0.5  # share of training sketches damaged when damage > 0
    group_by_length: bool = True  # batches of similar length, padded to their own longest
    balance_classes: bool = False  # every class equally often per epoch (magenta: every sketch)
    eval_every: int = 500  # steps between validations (and best-checkpoint updates)
    checkpoint_every: int = 250  # steps between saves of last.safetensors
    log_every: int = 10  # steps between metric rows
    seed: int = 0  # seeds torch and the batch order
    max_minutes: float | None = None  # end cleanly, with a checkpoint, after this long
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto"
    max_bad_steps: int = 5  # consecutive non-finite steps before restoring the last checkpoint
    max_restores: int = 4  # restores with no good step between them before training gives up
    valid_per_class: int | None = None  # validation sample per class, fixed (None: VALID_SKETCHES
    # over the classes, 20-500 a class; the official files hold 2,500)
    precision: str = "fp32"  # "fp32", or "bf16": autocast's mixed precision (CPU and recent GPUs)
    compile: bool = False  # torch.compile the recurrent cells' step (minutes to compile, see docs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object, source: str) -> TrainConfig:
        """A run's saved training settings, checked: known keys, and counts that are counts."""
        if not isinstance(data, dict):
            raise SketchDataError("no 'train' object in the run's config", source)
        # Settings of earlier versions that no longer change anything: rasters are rendered with
        # each batch now, not cached.
        data = {k: v for k, v in data.items() if k not in RETIRED_SETTINGS}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SketchDataError(f"unknown training setting(s): {', '.join(unknown)}", source)
        config = cls(**data)
        bad = mistyped(config)
        numbers = [f.name for f in dataclasses.fields(cls) if f.type.startswith(("int", "float"))]
        for name in numbers:
            value = getattr(config, name)
            if name not in bad and value is not None and not (math.isfinite(value) and value >= 0):
                bad.append(name)
        counts = ("steps", "batch_size", "eval_every", "checkpoint_every", "log_every")
        bad += [k for k in counts if k not in bad and getattr(config, k) < 1]
        if "valid_per_class" not in bad and config.valid_per_class == 0:
            bad.append("valid_per_class")
        shares = ("damage", "damage_share", "augment_drop")
        bad += [k for k in shares if k not in bad and getattr(config, k) > 1]
        if "augment_scale" not in bad and config.augment_scale >= 1:  # a factor 1 - s must stay > 0
            bad.append("augment_scale")
        if "learning_rate" not in bad and not 0 < config.learning_rate < 1e3:
            bad.append("learning_rate")
        if bad:
            raise SketchDataError(f"bad training setting(s): {', '.join(bad)}", source)
        try:
            config.check_weights()
        except SketchDataError as exc:
            raise SketchDataError(str(exc), source) from None
        return config
