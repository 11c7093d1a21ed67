"""What one evaluation measures on: its settings, and the real sketches of every evaluated class
(the evaluated split, the other held-out split for the floors, the training sketches for the copy
check and the priors' limit), read from the run's own data files or a data folder."""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aisketcher.api import Sketcher
from aisketcher.data.dataset import Split, class_file_name, load_dataset, resolve_class_file
from aisketcher.data.paths import default_data_dir
from aisketcher.errors import SketchDataError
from aisketcher.evaluate.metrics import copy_features

SPLITS = ("test", "valid")


@dataclass
class EvalSettings:
    classes: list[str] | None = None  # default: every class of the model
    split: str = "test"  # evaluated split; the other of test/valid gives the floors
    samples: int = 100  # real sketches per class (at most), and as many generated
    temperature: float | None = None  # of drawings and reconstructions (None: the model's)
    guidance: float | None = None  # class guidance w of every drawing (None: the model's own)
    prior_spread: float | None = None  # share of the class priors' spread (None: the model's)
    pen_temperature: float | None = None  # temperature of the pen's choices (None: the model's)
    seed: int = 0
    k: int = 3  # neighbours of the precision/recall manifolds
    tsne_per_class: int = 30  # latents per class in the t-SNE (paper: 30)
    grid_per_class: int = 8  # sketches per class in the sample grids
    endings: int = 4  # completions of each of the first `ending_starts` starts per class
    ending_starts: int = 5
    interpolations: int = 5  # pairs per class interpolated into the next class (see report.py)
    # Shares of strokes removed from the real sketches for healing (evaluate/healing.py); the
    # field's usual 10% and 30%.
    heal_shares: list[float] = dataclasses.field(default_factory=lambda: [0.1, 0.3])
    batch_size: int = 100
    figures: bool = True  # write the PNG figures (the numbers do not depend on them)
    data_dir: str | None = None  # default: the run's own data files, else the default data folder

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def matches(self, recorded: dict[str, Any]) -> bool:
        """Whether settings recorded in a report are these (an earlier version's report also
        recorded where it cached rasters, which changed nothing measured, and predates
        guidance, the prior spread and the pen temperature, which were then always the model's
        own, and the interpolation and healing measures, which change no other number: such a
        report lacks only them)."""
        earlier = {
            "guidance": None,
            "prior_spread": None,
            "pen_temperature": None,
            "interpolations": self.interpolations,
            "heal_shares": self.heal_shares,
            **recorded,
        }
        return {k: v for k, v in earlier.items() if k != "raster_cache"} == self.to_dict()


@dataclass
class SketchSets:
    """Normalised stroke-3 sketches of every evaluated class, in class order, with class indices."""

    real: list[np.ndarray]
    real_labels: np.ndarray  # index into the evaluated classes
    floor: list[np.ndarray]
    floor_labels: np.ndarray
    drawn: list[np.ndarray]
    drawn_labels: np.ndarray
    reconstructed: list[np.ndarray] | None
    train_features: np.ndarray  # `copy_features` of every training sketch of the classes
    train_labels: np.ndarray
    # A training sketch of each drawing's class, picked at random: drawn from their codes, they
    # are what a class prior that fitted the encoder's codes exactly would give (None: a class
    # has no training sketch).
    training_picks: list[np.ndarray] | None


def run_info(path: Path) -> dict[str, Any]:
    """A run folder's config.json ({} for an exported model's folder or a file)."""
    config = path / "config.json"
    return json.loads(config.read_text()) if path.is_dir() and config.is_file() else {}


def _class_files(names: list[str], info: dict[str, Any], data_dir: str | None) -> list[Path]:
    """The data file of each class: from `data_dir`, else the run's own sources, else the default."""
    sources = {Path(p).stem: Path(p) for p in info.get("data", {}).get("sources", [])}
    out = []
    for name in names:
        stem = class_file_name(name)
        if data_dir is None and stem in sources and sources[stem].is_file():
            out.append(sources[stem])
        else:
            if data_dir is None and stem in sources:
                warnings.warn(
                    f"the run's data file {sources[stem]} is gone; evaluating {name} on the "
                    f"file in {default_data_dir()} instead",
                    stacklevel=3,
                )
            out.append(
                resolve_class_file(name, Path(data_dir) if data_dir else default_data_dir())[1]
            )
    return out


def _first(split: Split, count: int, num_classes: int) -> tuple[list[np.ndarray], np.ndarray]:
    keep = np.concatenate(
        [np.flatnonzero(split.labels == k)[:count] for k in range(num_classes)]
    ).astype(np.int64)
    return [split.sketches[i] for i in keep], split.labels[keep]


def load_sets(
    sketcher: Sketcher, names: list[str], info: dict[str, Any], settings: EvalSettings
) -> tuple[Split, SketchSets]:
    """The whole evaluated split (for the likelihood) and the real sets of the other metrics."""
    if settings.split not in SPLITS:
        raise SketchDataError(f"split must be one of {', '.join(SPLITS)}, got '{settings.split}'")
    floor_split = "valid" if settings.split == "test" else "test"
    data = load_dataset(
        _class_files(names, info, settings.data_dir),
        splits=(settings.split, floor_split, "train"),
        scale_factor=sketcher.scale_factor,
        max_seq_len=sketcher.model.config.max_seq_len,
    )
    real, real_labels = _first(data[settings.split], settings.samples, len(names))
    floor, floor_labels = _first(data[floor_split], settings.samples, len(names))
    empty = [n for k, n in enumerate(names) if not (real_labels == k).any()]
    if empty:
        raise SketchDataError(f"no {settings.split} sketches for class {', '.join(empty)}")
    train = data["train"]
    sets = SketchSets(
        real,
        real_labels,
        floor,
        floor_labels,
        [],
        real_labels.copy(),
        None,
        copy_features(train.sketches),
        train.labels,
        pick_training(train, real_labels, settings.seed),
    )
    return data[settings.split], sets


def pick_training(train: Split, labels: np.ndarray, seed: int) -> list[np.ndarray] | None:
    """One training sketch of class `labels[i]` for each i, at random (seeded)."""
    rng = np.random.default_rng(seed)
    pools = {int(k): np.flatnonzero(train.labels == k) for k in np.unique(labels)}
    if any(len(pool) == 0 for pool in pools.values()):
        return None
    return [train.sketches[int(rng.choice(pools[int(k)]))] for k in labels]
