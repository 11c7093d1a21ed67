"""The paper's X_r: each sketch as a binarized square raster (128x128), fast enough to render
with every batch (docs/measurements.md; benchmarks/raster.py).

A sketch is scaled to fit (aspect kept) inside a small margin and centred; every pen-down segment is
stamped with a square `line_width` brush at sub-pixel steps (a DDA line), all sketches of a batch at
once with NumPy. That beat drawing each sketch with Pillow (see benchmarks/raster.py), because the
cost per sketch is then a few array operations shared by the whole batch instead of Python calls.

Coordinates use pixel centres: pixel i covers [i - 0.5, i + 0.5), so the image centre is
(size - 1) / 2 and a brush of w pixels centred at c starts at pixel floor(c - (w - 1) / 2 + 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aisketcher.errors import SketchDataError
from aisketcher.sketch import Sketch

RASTER_SIZE = 128
# Two pixels: a 128-pixel image of a 256-pixel drawing halves it, and a one-pixel DDA line then
# flickers between neighbouring pixels with sub-pixel shifts; two pixels keep strokes solid.
LINE_WIDTH = 2
MARGIN = 4
_CHUNK = 128

SketchLike = np.ndarray | Sketch


def _as_stroke3(item: object, index: int) -> np.ndarray:
    arr = item.stroke3 if isinstance(item, Sketch) else np.asarray(item)
    # dtype.kind rather than np.issubdtype: this runs once per sketch and issubdtype is slow.
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0 or arr.dtype.kind not in "biuf":
        raise SketchDataError(
            f"sketch {index}: stroke-3 must be a numeric (N>0, 3) array, got {arr.dtype}{arr.shape}"
        )
    return arr


def _draw_chunk(
    arrays: Sequence[np.ndarray], out: np.ndarray, size: int, line_width: int, margin: int
) -> None:
    """Draw `arrays` into the zeroed flat uint8 buffer `out` (len(arrays) * size * size)."""
    n = len(arrays)
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=n)
    data = np.concatenate(arrays)
    if not np.isfinite(data).all():
        raise SketchDataError("sketch has NaN or infinite values")
    ends = np.cumsum(lengths)
    starts = ends - lengths

    # Absolute points; float64 because the running sum spans the whole chunk. The shift from earlier
    # sketches cancels in each bounding box, so a sketch's raster does not depend on its neighbours.
    points = np.cumsum(data[:, :2], axis=0, dtype=np.float64)
    lo = np.minimum.reduceat(points, starts, axis=0)
    hi = np.maximum.reduceat(points, starts, axis=0)
    extent = (hi - lo).max(axis=1)
    # The brush's centre stays (line_width - 1) / 2 inside the margin so that the whole brush fits.
    room = size - 1 - 2 * margin - (line_width - 1)
    scale = np.divide(room, extent, out=np.zeros_like(extent), where=extent > 0)
    # Shifted so that truncating a coordinate gives the brush's top-left pixel directly: the centre
    # goes to (size - 1) / 2 and the brush starts at floor(c - (line_width - 1) / 2 + 0.5).
    shift = (size - line_width + 1) / 2 - (lo + hi) / 2 * scale[:, None]
    pix = points * np.repeat(scale, lengths)[:, None] + np.repeat(shift, lengths, axis=0)
    px = pix[:, 0].astype(np.float32)
    py = pix[:, 1].astype(np.float32)

    # A segment joins point i to i + 1 when the pen stays down after i, within one sketch.
    down = data[:, 2] < 0.5
    down[ends - 1] = False
    seg = np.flatnonzero(down)
    x0, y0 = px[seg], py[seg]
    dx, dy = px[seg + 1] - x0, py[seg + 1] - y0
    steps = np.ceil(np.maximum(np.abs(dx), np.abs(dy)))
    inner = np.maximum(steps - 1, 0).astype(np.int64)
    np.maximum(steps, 1, out=steps)
    # Interior samples j = 1 .. steps - 1, at most one pixel apart: the line has no gaps.
    j = np.arange(1, inner.sum() + 1, dtype=np.float32) - np.repeat(
        (np.cumsum(inner) - inner).astype(np.float32), inner
    )
    xs = np.concatenate([px, np.repeat(x0, inner) + j * np.repeat(dx / steps, inner)])
    ys = np.concatenate([py, np.repeat(y0, inner) + j * np.repeat(dy / steps, inner)])
    index = np.int32 if n * size * size < 2**31 else np.int64
    base = np.repeat(np.arange(n, dtype=index) * (size * size), lengths)
    base = np.concatenate([base, np.repeat(base[seg], inner)])
    # Coordinates lie in [margin + 0.5, size - margin - line_width + 0.5], so truncation is floor.
    flat = base + ys.astype(index) * size + xs.astype(index)
    for row in range(line_width):
        for col in range(line_width):
            out[flat + (row * size + col)] = 1


def rasterize_many(
    sketches: Sequence[SketchLike],
    size: int = RASTER_SIZE,
    *,
    line_width: int = LINE_WIDTH,
    margin: int = MARGIN,
) -> np.ndarray:
    """Rasters of stroke-3 sketches (arrays or Sketch), uint8 0/1 of shape (n, size, size)."""
    if size < 1 or line_width < 1 or margin < 0 or 2 * margin + line_width > size:
        raise SketchDataError(
            f"bad raster geometry: size={size} line_width={line_width} margin={margin}"
        )
    arrays = [_as_stroke3(s, i) for i, s in enumerate(sketches)]
    out = np.zeros((len(arrays), size, size), dtype=np.uint8)
    flat = out.reshape(-1)
    # Chunks keep the image buffer and the samples in the CPU cache (docs/measurements.md).
    for first in range(0, len(arrays), _CHUNK):
        chunk = arrays[first : first + _CHUNK]
        _draw_chunk(
            chunk,
            flat[first * size * size : (first + len(chunk)) * size * size],
            size,
            line_width,
            margin,
        )
    return out


def rasterize(
    stroke3: SketchLike,
    size: int = RASTER_SIZE,
    *,
    line_width: int = LINE_WIDTH,
    margin: int = MARGIN,
) -> np.ndarray:
    """Raster of one stroke-3 sketch, uint8 0/1 of shape (size, size)."""
    return rasterize_many([stroke3], size, line_width=line_width, margin=margin)[0]
