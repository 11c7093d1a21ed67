"""Sketches from any supported file: sketch-rnn .npz, Quick, Draw! .ndjson, .svg, or .json strokes.

A `.json` file holds one drawing as a list of strokes of absolute [x, y] points (what a canvas
records), optionally under a "strokes" key, or stroke-3 rows under a "stroke3" key.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from aisketcher.errors import SketchDataError
from aisketcher.formats import require_file
from aisketcher.sketch import Sketch


def sketch_from_json(data: object, source: str = "JSON") -> Sketch:
    """{"strokes": [[[x, y], ...], ...]} / a bare list of strokes / {"stroke3": [[dx, dy, p], ...]}."""
    label = data.get("label") if isinstance(data, dict) else None
    if label is not None and not isinstance(label, str):
        raise SketchDataError("'label' must be a string", source)
    if isinstance(data, dict) and "stroke3" in data:
        rows = data["stroke3"]
        if not isinstance(rows, list) or not rows:
            raise SketchDataError(
                "'stroke3' must be a non-empty list of [dx, dy, pen] rows", source
            )
        try:
            s3 = np.asarray(rows, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise SketchDataError("'stroke3' rows must be [dx, dy, pen] numbers", source) from None
        try:
            return Sketch(s3, label)
        except SketchDataError as exc:
            raise SketchDataError(exc.problem, source) from None
    strokes = data.get("strokes") if isinstance(data, dict) else data
    if not isinstance(strokes, list) or not strokes:
        raise SketchDataError("expected a non-empty list of strokes of [x, y] points", source)
    try:
        arrays = [np.asarray(s, dtype=np.float64) for s in strokes]
    except (TypeError, ValueError, OverflowError):
        raise SketchDataError("strokes must be lists of [x, y] number pairs", source) from None
    for i, arr in enumerate(arrays):
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
            raise SketchDataError(f"stroke {i} is not a non-empty list of [x, y] pairs", source)
        if not np.isfinite(arr).all():
            raise SketchDataError(f"stroke {i} has NaN or infinite coordinates", source)
    return Sketch.from_strokes(arrays, label)


def read_sketches(
    path: str | Path, *, split: str = "test", limit: int | None = None
) -> list[Sketch]:
    """All (or the first `limit`) sketches of a file; `split` applies to .npz files."""
    path = require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        from aisketcher.formats.npz import read_npz, read_npz_labels

        arrays = read_npz(path, [split])[split]
        labels = read_npz_labels(path, split)
        if labels is None:
            return [Sketch(s) for s in arrays[:limit]]
        if len(labels) != len(arrays):
            raise SketchDataError(
                f"{len(labels)} recorded classes for {len(arrays)} sketches of '{split}'",
                str(path),
            )
        return [Sketch(s, c) for s, c in zip(arrays[:limit], labels, strict=False)]
    if suffix == ".ndjson":
        from aisketcher.formats.ndjson import iter_ndjson

        return [d.to_sketch() for d in itertools.islice(iter_ndjson(path), limit)]
    if suffix == ".svg":
        from aisketcher.formats.svg import read_svg

        return [Sketch.from_strokes(read_svg(path))]
    if suffix == ".json":
        try:  # a byte-order mark, as Windows editors write, is fine in a file
            data = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (ValueError, RecursionError) as exc:  # also integers too long to parse
            raise SketchDataError(f"not valid JSON: {exc}", str(path)) from None
        return [sketch_from_json(data, str(path))]
    raise SketchDataError("unknown sketch file type (use .npz, .ndjson, .svg or .json)", str(path))


def read_sketch(path: str | Path, *, split: str = "test", index: int = 0) -> Sketch:
    sketches = read_sketches(path, split=split, limit=index + 1)
    if not 0 <= index < len(sketches):
        raise SketchDataError(f"index {index} out of range ({len(sketches)} sketches)", str(path))
    return sketches[index]
