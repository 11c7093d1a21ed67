"""Multi-class sketch datasets: classes from files, splits, labels and the training scale factor.

Preprocessing follows magenta's sketch-rnn (spec section 1): offsets clamped to +-1000, sketches
longer than `max_seq_len` dropped, and dx, dy divided by one scale factor computed on the training
split only (then stored with whatever is trained on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aisketcher.data.paths import default_data_dir
from aisketcher.data.stats import normalizing_scale_factor
from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import SPLITS, read_npz
from aisketcher.model_info import did_you_mean
from aisketcher.sketch import MAX_OFFSET


@dataclass
class Split:
    """One split of a dataset: normalised float32 stroke-3 sketches and their class indices."""

    sketches: list[np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.sketches)

    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sketches], dtype=np.int64)

    def __repr__(self) -> str:
        return f"Split({len(self)} sketches, {len(np.unique(self.labels))} classes)"


@dataclass
class SketchDataset:
    """Several classes, each from its own file, with integer labels in the order given."""

    class_names: list[str]
    splits: dict[str, Split]
    scale_factor: float
    max_seq_len: int
    sources: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def longest(self) -> int:
        """N_max: the longest sketch over all splits (magenta sets max_seq_len to this)."""
        return max((len(s) for split in self.splits.values() for s in split.sketches), default=0)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
        return (
            f"SketchDataset({self.num_classes} classes: {', '.join(self.class_names)}; {sizes}; "
            f"scale factor {self.scale_factor:.4g})"
        )

    def __getitem__(self, split: str) -> Split:
        if split not in self.splits:
            raise SketchDataError(f"no split '{split}' (has: {', '.join(self.splits)})")
        return self.splits[split]


def class_file_name(name: str) -> str:
    """QuickDraw class name -> file stem used by the sketch-rnn files ("paint can" -> "paint_can")."""
    return name.strip().replace(" ", "_")


def resolve_class_file(name_or_path: str | Path, data_dir: Path) -> tuple[str, Path]:
    """A class name (looked up in `data_dir`, or its `quickdraw/` folder) or an `.npz` path."""
    text = str(name_or_path)
    if text.endswith(".npz"):
        path = Path(text)
        if not path.is_file():
            raise SketchDataError("no such file", text)
        return path.stem, path
    stem = class_file_name(text)
    if not data_dir.is_dir():
        raise SketchDataError(
            "the data folder does not exist (give --data, set $AISKETCHER_DATA, or fetch the "
            "files with `aisketcher data download`)",
            str(data_dir),
        )
    for folder in (data_dir, data_dir / "quickdraw"):
        candidate = folder / f"{stem}.npz"
        if candidate.is_file():
            return stem, candidate
    folder = data_dir / "quickdraw" if (data_dir / "quickdraw").is_dir() else data_dir
    known = sorted(p.stem for p in folder.glob("*.npz"))
    raise SketchDataError(
        f"unknown class '{text}' (no {stem}.npz in {folder})" + did_you_mean(stem, known)
    )


def parse_class_list(text: str | Sequence[str]) -> list[str]:
    """ "cat,bicycle" or ["cat", "bicycle"] -> ["cat", "bicycle"], keeping order; a class given
    twice is refused (it would count its data twice)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in (str(i).strip() for i in items):
        if item in out:
            raise SketchDataError(f"class '{item}' is given twice")
        if item:
            out.append(item)
    if not out:
        raise SketchDataError("no classes given")
    return out


def _prepare(sketches: list[np.ndarray], max_seq_len: int) -> list[np.ndarray]:
    kept = []
    for s in sketches:
        if len(s) > max_seq_len:
            continue
        s = s.copy()
        np.clip(s[:, :2], -MAX_OFFSET, MAX_OFFSET, out=s[:, :2])
        kept.append(s)
    return kept


def load_dataset(
    classes: str | Sequence[str | Path],
    data_dir: str | Path | None = None,
    *,
    max_seq_len: int = 250,
    splits: Sequence[str] = SPLITS,
    scale_factor: float | None = None,
) -> SketchDataset:
    """Load classes (names or `.npz` paths) into one labelled, normalised dataset.

    `scale_factor` defaults to the std of the training offsets of these classes; pass the stored
    value of a trained model to prepare data for it.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    names = parse_class_list(classes) if isinstance(classes, str) else list(classes)
    resolved = [resolve_class_file(n, root) for n in names]
    raw: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    labels: dict[str, list[int]] = {s: [] for s in splits}
    need = list(dict.fromkeys([*splits, "train"])) if scale_factor is None else list(splits)
    train_all: list[np.ndarray] = []
    for label, (_, path) in enumerate(resolved):
        data = read_npz(path, need)
        for split in splits:
            kept = _prepare(data[split], max_seq_len)
            raw[split].extend(kept)
            labels[split].extend([label] * len(kept))
        if scale_factor is None and "train" not in splits:
            train_all.extend(_prepare(data["train"], max_seq_len))
    if scale_factor is None:
        if "train" in splits:
            train_all = raw["train"]
        if not train_all:
            raise SketchDataError("no training sketches to compute the scale factor from")
        scale_factor = normalizing_scale_factor(train_all)
    if not (np.isfinite(scale_factor) and scale_factor > 0):
        # Dividing by it would silently turn every offset into inf or NaN.
        raise SketchDataError(f"scale factor must be a positive number, got {scale_factor}")
    result = {}
    for split in splits:
        normed = []
        for s in raw[split]:
            s[:, :2] /= scale_factor
            normed.append(s)
        result[split] = Split(normed, np.asarray(labels[split], dtype=np.int64))
    return SketchDataset(
        class_names=[n for n, _ in resolved],
        splits=result,
        scale_factor=float(scale_factor),
        max_seq_len=max_seq_len,
        sources=[str(p.resolve()) for _, p in resolved],  # usable from any working directory
    )
