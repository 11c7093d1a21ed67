"""Writing sketches to a file of any format its suffix names (`save_sketches`): pictures
(`render`), sketch-rnn `.npz` (`npz`), and Quick, Draw! `.ndjson` in the simplified form
(`write_ndjson`). Sketches are stroke-3 arrays or `Sketch` objects, taken without importing that
type, so that `Sketch.save` can use this module."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from aisketcher import render
from aisketcher.atomic import atomic_path
from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import SPLITS, write_npz
from aisketcher.limits import CANVAS, canvas_frame
from aisketcher.strokes import (
    StrokeSketch,
    as_stroke3,
    label_of,
    stroke3_on_integer_grid,
    stroke3_to_strokes,
)


def save_sketches(
    sketches: StrokeSketch | Sequence[StrokeSketch],
    path: str | Path,
    *,
    labels: Sequence[str] | None = None,
    size: int | None = None,
    cols: int | None = None,
    highlight_from: Sequence[int | None] | None = None,
    split: str = "test",
) -> None:
    """Write sketches to `path`, in the format its extension names, atomically.

    .svg / .png: one sketch at `size` (default 256) or a grid of `size`-pixel cells (default 128)
    captioned by `labels`, each sketch's points from `highlight_from[i]` on in the highlight colour
    (a model's continuation of a user's start); .gif: the drawing animated (exactly one sketch).
    .npz: a sketch-rnn file as the official ones (int16 offsets, points rounded to whole units)
    with the sketches as `split` and the other two splits empty, and each sketch's class recorded
    (`labels`, else the sketches' own) when every sketch has one; .ndjson: Quick, Draw! lines,
    each with its sketch's class as the word ("sketch" when it has none).
    """
    path = Path(path)
    single = hasattr(sketches, "stroke3") or (
        isinstance(sketches, np.ndarray) and sketches.ndim == 2
    )
    given = [sketches] if single else list(sketches)
    items = [as_stroke3(s) for s in given]
    ext = path.suffix.lower()
    if not items:
        raise SketchDataError("no sketches to save", str(path))
    if labels is not None and len(labels) != len(items):
        raise SketchDataError(f"{len(labels)} labels for {len(items)} sketches", str(path))
    if ext not in (".svg", ".png", ".gif", ".npz", ".ndjson"):
        raise SketchDataError(
            f"unknown output format {ext or '(none)'!r}: use .svg, .png, .gif, .npz or .ndjson",
            str(path),
        )
    classes = list(labels) if labels is not None else [label_of(s) for s in given]
    if ext == ".gif" and len(items) != 1:
        raise SketchDataError(f"a .gif animates one sketch, got {len(items)}", str(path))
    if highlight_from is not None and len(highlight_from) != len(items):
        raise SketchDataError(
            f"{len(highlight_from)} highlight starts for {len(items)} sketches", str(path)
        )
    one = len(items) == 1 and labels is None
    first = None if highlight_from is None else highlight_from[0]
    if ext == ".npz" and split not in SPLITS:
        raise SketchDataError(f"unknown split {split!r}: use {', '.join(SPLITS)}", str(path))
    try:
        with atomic_path(path) as tmp:
            if ext in (".svg", ".png"):  # one sketch, or a grid of them
                single_picture, grid = {
                    ".svg": (render.sketch_to_svg, render.grid_svg),
                    ".png": (render.render_png, render.grid_png),
                }[ext]
                picture = (
                    single_picture(items[0], size or 256, highlight_from=first)
                    if one
                    else grid(items, labels, cols, size or 128, highlight_from=highlight_from)
                )
                if ext == ".svg":
                    tmp.write_text(picture, encoding="utf-8")
                else:
                    picture.save(tmp, format="PNG")
            elif ext == ".gif":
                render.animate_gif(items[0], tmp, size or 256, highlight_from=first)
            elif ext == ".npz":
                sets = {name: [] for name in SPLITS}
                sets[split] = [stroke3_on_integer_grid(s) for s in items]
                recorded = None if None in classes else {split: classes}
                write_npz(tmp, sets, labels=recorded)
            else:
                write_ndjson(tmp, items, [c or "sketch" for c in classes])
    except OSError as exc:
        raise SketchDataError(f"cannot write: {exc.strerror or exc}", str(path)) from None


def _on_canvas(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """Strokes moved to a minimum of 0 and scaled uniformly to a maximum of 255, rounded."""
    low, scale = canvas_frame(strokes)
    return [np.round((s - low) * scale) for s in strokes]


def write_ndjson(
    path: str | Path, sketches: Iterable[StrokeSketch], word: str | Sequence[str]
) -> None:
    """Write sketches as simplified ndjson lines of class `word` (one for all, or one per
    sketch, as a file of several classes has), atomically.

    Coordinates are integers on Google's 0..255 canvas: a drawing already on it is written as it
    is (Google's own round-trip exactly); any other is moved to the top-left corner (minimum 0) and
    scaled uniformly to a maximum of 255, as Google's simplified files are. key_ids count from 1.
    Fields the sketches do not carry (countrycode, timestamp, recognized) are written as null.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        one = isinstance(word, str)
        words = itertools.repeat(word) if one else word
        for number, (sketch, name) in enumerate(zip(sketches, words, strict=not one), start=1):
            absolute = stroke3_to_strokes(as_stroke3(sketch))
            strokes = [np.round(s) for s in absolute]
            if min(s.min() for s in strokes) < 0 or max(s.max() for s in strokes) > CANVAS:
                strokes = _on_canvas(absolute)
            drawing = [s.astype(np.int64).T.tolist() for s in strokes]
            record = {
                "word": name,
                "countrycode": None,
                "timestamp": None,
                "recognized": None,
                "key_id": str(number),
                "drawing": drawing,
            }
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
