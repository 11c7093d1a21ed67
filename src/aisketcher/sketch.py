"""The Sketch type and the one place that converts between stroke formats.

Formats (spec section 1):
- stroke-3: rows (dx, dy, p), p = 1 on the last point of each stroke (pen lifts after it).
- stroke-5: rows (dx, dy, p1, p2, p3): pen down, pen lifts after this point, sketch has ended.
- absolute strokes: a list of (n, 2) arrays of x, y points, what a canvas records.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aisketcher.errors import SketchDataError

# Sketch-RNN clamps offsets to this magnitude before normalising (magenta utils.py).
MAX_OFFSET = 1000.0


def validate_stroke3(data: object, source: str | None = None) -> np.ndarray:
    """Return `data` as a float32 (N, 3) stroke-3 array or raise SketchDataError naming `source`."""
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise SketchDataError(f"not a numeric array: {exc}", source) from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise SketchDataError(f"stroke-3 must be numeric, got dtype {arr.dtype}", source)
    if np.iscomplexobj(arr):
        # Casting would silently drop the imaginary part (NumPy only warns).
        raise SketchDataError(f"stroke-3 must be real, got dtype {arr.dtype}", source)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise SketchDataError(f"stroke-3 must have shape (N, 3), got {arr.shape}", source)
    if arr.shape[0] == 0:
        raise SketchDataError("empty sketch (no points)", source)
    with np.errstate(over="ignore"):  # values too large for float32 become inf, refused next
        arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise SketchDataError("sketch has NaN or infinite values", source)
    pen = arr[:, 2]
    if not ((pen == 0.0) | (pen == 1.0)).all():
        raise SketchDataError("pen state (third column) must be 0 or 1", source)
    return arr


def stroke3_to_stroke5(s3: np.ndarray, max_len: int | None = None) -> np.ndarray:
    """Stroke-3 (N, 3) -> stroke-5 (max_len, 5); rows past the sketch are (0, 0, 0, 0, 1).

    Pen states are copied as given, as in magenta's `to_big_strokes` (real data lifts the pen on
    the last point; `stroke5_to_stroke3` restores that lift when converting back).
    """
    n = len(s3)
    length = n if max_len is None else max_len
    if n > length:
        raise SketchDataError(f"sketch has {n} points, more than max_len={length}")
    out = np.zeros((length, 5), dtype=np.float32)
    out[:n, :2] = s3[:, :2]
    out[:n, 3] = s3[:, 2]
    out[:n, 2] = 1.0 - s3[:, 2]
    out[n:, 4] = 1.0
    return out


def stroke5_to_stroke3(s5: np.ndarray) -> np.ndarray:
    """Stroke-5 -> stroke-3, cut at the first end-of-sketch row (which is not a point)."""
    s5 = np.asarray(s5, dtype=np.float32)
    end = np.flatnonzero(s5[:, 4] > 0.5)
    n = int(end[0]) if len(end) else len(s5)
    out = np.zeros((n, 3), dtype=np.float32)
    out[:, :2] = s5[:n, :2]
    out[:, 2] = s5[:n, 3]
    if n:
        out[-1, 2] = 1.0
    return out


def strokes_to_stroke3(strokes: Sequence[np.ndarray | Sequence[Sequence[float]]]) -> np.ndarray:
    """Absolute strokes (list of (n, 2) point arrays) -> stroke-3 offsets.

    The first offset is the first point itself (from the origin), as in the official conversion.
    """
    parts = []
    for i, stroke in enumerate(strokes):
        try:
            pts = np.asarray(stroke, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise SketchDataError(f"stroke {i} is not a list of (x, y) points: {exc}") from None
        if pts.size == 0:
            continue
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise SketchDataError(f"stroke {i} must be (n, 2) points, got shape {pts.shape}")
        pen = np.zeros((len(pts), 1))
        pen[-1] = 1.0
        parts.append(np.hstack([pts, pen]))
    if not parts:
        raise SketchDataError("empty sketch (no strokes with points)")
    absolute = np.vstack(parts)
    offsets = absolute.copy()
    offsets[1:, :2] = absolute[1:, :2] - absolute[:-1, :2]
    return offsets.astype(np.float32)


def stroke3_on_integer_grid(s3: np.ndarray) -> np.ndarray:
    """Offsets between the absolute points rounded to whole units, as int16 like the official
    sketch-rnn files: rounding the points, not each offset, so no error accumulates along the
    sketch (every point within half a unit of where it was)."""
    points = np.round(np.cumsum(s3[:, :2].astype(np.float64), axis=0))
    offsets = np.diff(points, axis=0, prepend=0.0)
    if len(offsets) and np.abs(offsets).max() >= 32768:
        raise SketchDataError("offsets beyond the int16 range of a sketch-rnn file")
    out = np.empty((len(s3), 3), dtype=np.int16)
    out[:, :2] = offsets
    out[:, 2] = s3[:, 2] > 0.5
    return out


def stroke3_to_strokes(s3: np.ndarray) -> list[np.ndarray]:
    """Stroke-3 offsets -> absolute strokes (list of (n, 2) float arrays)."""
    absolute = np.cumsum(np.asarray(s3, dtype=np.float64)[:, :2], axis=0)
    ends = np.flatnonzero(s3[:, 2] > 0.5) + 1
    if not len(ends) or ends[-1] != len(s3):
        ends = np.append(ends, len(s3))
    starts = np.concatenate([[0], ends[:-1]])
    return [absolute[a:b] for a, b in zip(starts, ends, strict=True) if b > a]


@dataclass(eq=False)
class Sketch:
    """One vector sketch in stroke-3 form, with an optional class name.

    >>> s = Sketch.from_strokes([[(0, 0), (10, 0), (10, 10)], [(0, 5), (5, 5)]], label="box")
    >>> len(s), s.num_strokes
    (5, 2)
    """

    stroke3: np.ndarray
    label: str | None = None

    def __post_init__(self) -> None:
        self.stroke3 = validate_stroke3(self.stroke3)

    @classmethod
    def from_strokes(cls, strokes: Sequence, label: str | None = None) -> Sketch:
        """From absolute points, a list of strokes each a list of (x, y)."""
        return cls(strokes_to_stroke3(strokes), label)

    @classmethod
    def from_stroke5(cls, s5: np.ndarray, label: str | None = None) -> Sketch:
        return cls(stroke5_to_stroke3(s5), label)

    def __len__(self) -> int:
        return len(self.stroke3)

    @property
    def num_strokes(self) -> int:
        return len(self.strokes())

    def strokes(self) -> list[np.ndarray]:
        """Absolute strokes, a list of (n, 2) arrays."""
        return stroke3_to_strokes(self.stroke3)

    def to_stroke5(self, max_len: int | None = None) -> np.ndarray:
        return stroke3_to_stroke5(self.stroke3, max_len)

    def bounds(self) -> tuple[float, float, float, float]:
        """(min_x, min_y, max_x, max_y) of the absolute points."""
        pts = np.cumsum(self.stroke3[:, :2].astype(np.float64), axis=0)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def scaled(self, factor: float) -> Sketch:
        """Offsets multiplied by `factor` (e.g. to undo a dataset's normalisation)."""
        out = self.stroke3.copy()
        out[:, :2] *= factor
        return Sketch(out, self.label)

    def clamped(self, limit: float = MAX_OFFSET) -> Sketch:
        out = self.stroke3.copy()
        out[:, :2] = np.clip(out[:, :2], -limit, limit)
        return Sketch(out, self.label)

    def to_svg(self, size: int = 256, **kwargs: object) -> str:
        from aisketcher.render import sketch_to_svg

        return sketch_to_svg(self, size=size, **kwargs)

    def save(self, path: str | Path, size: int | None = None) -> None:
        """Write the sketch to .svg, .png, .gif (animated), .npz or .ndjson, by the suffix."""
        from aisketcher.render import save_sketches

        save_sketches(self, path, size=size)

    def _repr_svg_(self) -> str:
        return self.to_svg(size=200)

    def _repr_png_(self) -> bytes:
        from aisketcher.render import render_png

        buffer = io.BytesIO()
        render_png(self, 200).save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self) -> str:
        label = f" {self.label!r}" if self.label else ""
        return f"<Sketch{label}: {len(self)} points, {self.num_strokes} strokes>"
