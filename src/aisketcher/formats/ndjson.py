"""Quick, Draw! ndjson files: read both official forms ("simplified" and "raw"); written in the
simplified form by `formats.writer.write_ndjson`.

One JSON object per line: `{"word", "countrycode", "timestamp", "recognized", "key_id", "drawing"}`,
where `drawing` holds one entry per stroke, `[[xs], [ys]]` in the simplified form (integers on a
0..255 canvas) or `[[xs], [ys], [ts]]` in the raw form (floats on the player's canvas, times in ms).

Raw drawings are turned into the simplified form by Google's documented steps, in that order: align
to the top-left (minimum 0), scale uniformly so the longer side spans 0..255, resample every stroke at
1-pixel spacing, simplify with Ramer-Douglas-Peucker (epsilon 2.0). Google does not publish its code;
the details chosen here (arc-length resampling that keeps the stroke's end point, perpendicular
distance to the infinite line in RDP, rounding to the nearest integer only at the end, a stroke of
one point written as two equal points) are the ones that best reproduce the official simplified
drawings (see `benchmarks/raw_preprocessing.py`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aisketcher.errors import SketchDataError
from aisketcher.formats import require_file
from aisketcher.limits import CANVAS, MAX_INK, canvas_frame, canvas_ink, check_drawing
from aisketcher.sketch import Sketch
from aisketcher.strokes import strokes_to_stroke3

# Google's documented simplification parameters (the canvas side: limits.CANVAS).
RESAMPLE_SPACING = 1.0
RDP_EPSILON = 2.0


@dataclass(eq=False)
class Drawing:
    """One Quick, Draw! drawing; `strokes` are absolute (n, 2) float arrays of x, y points."""

    key_id: str | None  # None when the line has none (only word and drawing are needed)
    word: str
    recognized: bool | None
    countrycode: str | None
    strokes: list[np.ndarray]

    def to_sketch(self) -> Sketch:
        return Sketch(drawing_to_stroke3(self), label=self.word)


def rdp(points: np.ndarray, epsilon: float = RDP_EPSILON) -> np.ndarray:
    """Ramer-Douglas-Peucker simplification of one polyline (n, 2); keeps both end points.

    Distances are to the infinite line through a span's end points (to the start point when they
    coincide); on ties the earliest point is kept, as a recursive first-maximum search would.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    if n < 3:
        return pts.copy()
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    spans = [(0, n - 1)]
    while spans:
        first, last = spans.pop()
        if last - first < 2:
            continue
        start = pts[first]
        direction = pts[last] - start
        rel = pts[first + 1 : last] - start
        length = math.hypot(direction[0], direction[1])
        if length > 0:
            dist = np.abs(direction[0] * rel[:, 1] - direction[1] * rel[:, 0]) / length
        else:
            dist = np.hypot(rel[:, 0], rel[:, 1])
        i = int(np.argmax(dist))
        if dist[i] > epsilon:
            split = first + 1 + i
            keep[split] = True
            spans.append((first, split))
            spans.append((split, last))
    return pts[keep]


def resample(points: np.ndarray, spacing: float = RESAMPLE_SPACING) -> np.ndarray:
    """Points every `spacing` along the polyline's length, plus its end point.

    A stroke of zero length (one point, or all points equal) gives its first and last point.
    """
    pts = np.asarray(points, dtype=np.float64)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    along = np.concatenate([[0.0], np.cumsum(seg)])
    total = along[-1]
    if total == 0:
        return pts[[0, -1]]
    t = np.arange(0.0, total, spacing)
    if t[-1] < total:
        t = np.append(t, total)
    return np.column_stack([np.interp(t, along, pts[:, 0]), np.interp(t, along, pts[:, 1])])


def simplify_raw(strokes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Raw strokes (absolute points, any canvas) -> strokes as in the official simplified data."""
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    low, scale = canvas_frame(arrays)
    return [np.round(rdp(resample((s - low) * scale))) for s in arrays]


def simplify_to_fit(strokes: Sequence[np.ndarray], max_points: int) -> list[np.ndarray]:
    """Strokes with at most `max_points` points in all, simplified as the official data is
    (resampled and RDP on the 0..255 canvas, `simplify_raw`), in their own frame again. When that
    is not enough, RDP's epsilon doubles until it is; a drawing that still does not fit (more
    strokes than points allowed, say) is returned as far as it got."""
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    low, scale = canvas_frame(arrays)
    canvas = [resample((s - low) * scale) for s in arrays]
    epsilon = RDP_EPSILON
    while True:
        simple = [rdp(s, epsilon) for s in canvas]
        if sum(len(s) for s in simple) <= max_points or epsilon > CANVAS:
            return [s / scale + low for s in simple]
        epsilon *= 2


def _number_list(value: object) -> np.ndarray | None:
    """A 1-D float array from a JSON list of numbers, or None if it is anything else."""
    if not isinstance(value, list) or not value:
        return None
    try:
        arr = np.array(value)
    except ValueError:
        return None
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        return None
    return arr.astype(np.float64)


def _parse_strokes(drawing: object, raw: bool | None) -> tuple[list[np.ndarray], bool]:
    """Validate a `drawing` value; return its strokes and whether it is in the raw form."""
    if not isinstance(drawing, list) or not drawing:
        raise ValueError("'drawing' must be a non-empty list of strokes")
    strokes = []
    forms = set()
    for j, stroke in enumerate(drawing):
        if not isinstance(stroke, list) or len(stroke) not in (2, 3):
            raise ValueError(f"stroke {j} must be [xs, ys] or [xs, ys, ts]")
        lists = [_number_list(v) for v in stroke]
        if any(v is None for v in lists):
            raise ValueError(f"stroke {j} must hold non-empty lists of numbers")
        if len({len(v) for v in lists}) != 1:
            sizes = "/".join(str(len(v)) for v in lists)
            raise ValueError(f"stroke {j} has lists of different lengths ({sizes})")
        if not all(np.isfinite(v).all() for v in lists):
            raise ValueError(f"stroke {j} has NaN or infinite values")
        forms.add(len(stroke) == 3)
        strokes.append(np.column_stack(lists[:2]))
    if len(forms) > 1:
        raise ValueError("mixes raw strokes (with timestamps) and simplified strokes")
    is_raw = forms.pop()
    if raw is not None and raw != is_raw:
        found, wanted = ("raw", "simplified") if is_raw else ("simplified", "raw")
        raise ValueError(f"drawing is in the {found} form, expected {wanted}")
    check_drawing(strokes)
    if is_raw and canvas_ink(strokes) > MAX_INK:
        raise ValueError(f"too much ink to simplify (more than {MAX_INK:g} pixels on the canvas)")
    return strokes, is_raw


def _parse_line(line: bytes, raw: bool | None) -> Drawing:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("line is not a JSON object")
    missing = [k for k in ("word", "drawing") if k not in record]
    if missing:
        raise ValueError(f"missing key(s): {', '.join(missing)}")
    key_id, word = record.get("key_id"), record["word"]
    recognized, countrycode = record.get("recognized"), record.get("countrycode")
    if key_id is not None and (isinstance(key_id, bool) or not isinstance(key_id, str | int)):
        raise ValueError("'key_id' must be a string")
    if not isinstance(word, str):
        raise ValueError("'word' must be a string")
    if recognized is not None and not isinstance(recognized, bool):
        raise ValueError("'recognized' must be true or false")
    if countrycode is not None and not isinstance(countrycode, str):
        raise ValueError("'countrycode' must be a string")
    strokes, is_raw = _parse_strokes(record["drawing"], raw)
    if is_raw:
        strokes = simplify_raw(strokes)
    return Drawing(None if key_id is None else str(key_id), word, recognized, countrycode, strokes)


class NdjsonReader:
    """Iterates over the drawings of one ndjson file; `skipped` counts bad lines passed over.

    raw=None detects the form per line (a third, timestamp list per stroke means raw); True or
    False demand that form. Raw drawings are simplified like the official data (`simplify_raw`).
    A malformed line raises SketchDataError with the file and 1-based line number, unless
    skip_bad=True. Blank lines are ignored.
    """

    def __init__(self, path: str | Path, *, raw: bool | None = None, skip_bad: bool = False):
        self.path = Path(path)
        self.raw = raw
        self.skip_bad = skip_bad
        self.skipped = 0

    def __iter__(self) -> Iterator[Drawing]:
        self.skipped = 0
        source = str(self.path)
        require_file(self.path)
        try:
            with open(self.path, "rb") as fh:
                yield from self._drawings(fh, source)
        except FileNotFoundError:
            raise SketchDataError("no such file", source) from None
        except OSError as exc:
            raise SketchDataError(f"cannot read: {exc.strerror}", source) from None

    def _drawings(self, lines: Iterable[bytes], source: str) -> Iterator[Drawing]:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                drawing = _parse_line(line, self.raw)
            except ValueError as exc:
                if not self.skip_bad:
                    raise SketchDataError(str(exc), source, number) from None
                self.skipped += 1
                continue
            yield drawing


def iter_ndjson(
    path: str | Path, *, raw: bool | None = None, skip_bad: bool = False
) -> Iterator[Drawing]:
    """Drawings of an ndjson file, one at a time (use NdjsonReader to learn how many were skipped)."""
    return iter(NdjsonReader(path, raw=raw, skip_bad=skip_bad))


def read_ndjson(
    path: str | Path, *, raw: bool | None = None, skip_bad: bool = False
) -> list[Drawing]:
    """All drawings of an ndjson file."""
    return list(iter_ndjson(path, raw=raw, skip_bad=skip_bad))


def drawing_to_stroke3(drawing: Drawing) -> np.ndarray:
    """Stroke-3 as in the sketch-rnn `.npz` files: the first row is the first absolute point."""
    return strokes_to_stroke3(drawing.strokes)
