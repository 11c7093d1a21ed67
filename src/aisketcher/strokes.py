"""Stroke formats, and the one place that converts between them (NumPy arrays; spec section 1):

- stroke-3: rows (dx, dy, p), p = 1 on the last point of each stroke (pen lifts after it).
- stroke-5: rows (dx, dy, p1, p2, p3): pen down, pen lifts after this point, sketch has ended.
- absolute strokes: a list of (n, 2) arrays of x, y points, what a canvas records.

Pictures and files take a stroke-3 array or anything that carries one (`HasStroke3`: the `Sketch`
type of sketch.py), so that they need not know that type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from aisketcher.errors import SketchDataError


class HasStroke3(Protocol):
    """A sketch as pictures and files take it besides a bare array (a `Sketch`)."""

    stroke3: np.ndarray
    label: str | None


StrokeSketch = np.ndarray | HasStroke3


def as_stroke3(item: StrokeSketch) -> np.ndarray:
    """The stroke-3 array of a sketch, or an array checked as one (`validate_stroke3`)."""
    return item.stroke3 if hasattr(item, "stroke3") else validate_stroke3(np.asarray(item))


def label_of(item: StrokeSketch) -> str | None:
    return getattr(item, "label", None)


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


def num_strokes(stroke3: np.ndarray) -> int:
    """Number of strokes: pen lifts, plus one if the last point does not lift the pen."""
    lifts = stroke3[:, 2] > 0.5
    return int(np.count_nonzero(lifts)) + int(len(lifts) > 0 and not lifts[-1])


def stroke3_bounds(s3: np.ndarray) -> tuple[float, float, float, float]:
    """(min_x, min_y, max_x, max_y) of the absolute points."""
    pts = np.cumsum(s3[:, :2].astype(np.float64), axis=0)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])
