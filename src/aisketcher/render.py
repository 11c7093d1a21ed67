"""Pictures of sketches: SVG text, anti-aliased PNG and GIF (Pillow), grids (files of any format:
`formats.writer.save_sketches`).

Every picture scales its sketch to fit a square of `size` pixels, aspect kept and centred, leaving
`margin` (a fraction of `size`) on each side. Points from `highlight_from` on are drawn in
`highlight_color`, e.g. to tell a model's continuation from the user's strokes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from aisketcher.atomic import atomic_path
from aisketcher.errors import SketchDataError
from aisketcher.strokes import StrokeSketch, as_stroke3, stroke3_bounds, stroke3_to_strokes

MARGIN = 0.05
HIGHLIGHT_COLOR = "#d62728"
# PNGs are drawn this many times larger, then downsampled: Pillow's own lines are not anti-aliased.
_SUPERSAMPLE = 4

# A run is a polyline in output pixels and whether it is drawn in the highlight colour.
Run = tuple[np.ndarray, bool]


def _runs(
    s3: np.ndarray,
    size: float,
    margin: float,
    highlight_from: int | None = None,
    upto: int | None = None,
) -> list[Run]:
    """The strokes of stroke-3 `s3` (its first `upto` points) in output pixels, split at the
    highlight. The scale comes from the whole sketch, so every prefix of an animation lines up
    with the end.
    """
    min_x, min_y, max_x, max_y = stroke3_bounds(s3)
    extent = max(max_x - min_x, max_y - min_y)
    # A single point or a zero-size sketch has no extent to fit; it is simply centred.
    scale = size * (1 - 2 * margin) / extent if extent > 0 else 1.0
    shift = size / 2 - np.array([min_x + max_x, min_y + max_y]) / 2 * scale
    cut = len(s3) if highlight_from is None else highlight_from
    runs: list[Run] = []
    first = 0
    for stroke in stroke3_to_strokes(s3[:upto]):
        pts = stroke * scale + shift
        last = first + len(pts)
        if last <= cut:
            runs.append((pts, False))
        elif first >= cut:
            runs.append((pts, True))
        else:
            # The segment into the first highlighted point belongs to the highlighted part.
            runs.append((pts[: cut - first], False))
            runs.append((pts[cut - first - 1 :], True))
        first = last
    return runs


def _svg_paths(runs: list[Run], stroke_width: float, color: str, highlight_color: str) -> str:
    style = f'fill="none" stroke-width="{stroke_width:g}" stroke-linecap="round" stroke-linejoin="round"'
    lines = []
    for pts, highlighted in runs:
        # A one-point stroke becomes a zero-length line, which round caps draw as a dot.
        pts = pts if len(pts) > 1 else np.vstack([pts, pts])
        d = "M" + " L".join(f"{x:.2f} {y:.2f}" for x, y in pts)
        stroke = quoteattr(highlight_color if highlighted else color)
        lines.append(f'<path d="{d}" stroke={stroke} {style}/>')
    return "\n".join(lines)


def _svg_document(width: float, height: float, body: str, background: str | None) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}"'
        f' viewBox="0 0 {width:g} {height:g}">'
    )
    parts = [head]
    if background is not None:
        parts.append(f'<rect width="100%" height="100%" fill={quoteattr(background)}/>')
    parts += [body, "</svg>\n"]
    return "\n".join(p for p in parts if p)


def sketch_to_svg(
    sketch: StrokeSketch,
    size: int = 256,
    *,
    stroke_width: float = 2.0,
    color: str = "black",
    margin: float = MARGIN,
    background: str | None = "white",
    highlight_from: int | None = None,
    highlight_color: str = HIGHLIGHT_COLOR,
) -> str:
    """A standalone SVG document of one sketch, one `<path>` per stroke (two for a split stroke)."""
    runs = _runs(as_stroke3(sketch), size, margin, highlight_from)
    return _svg_document(
        size, size, _svg_paths(runs, stroke_width, color, highlight_color), background
    )


def _draw_runs(
    image: Image.Image, runs: list[Run], stroke_width: float, color: str, highlight_color: str
) -> None:
    draw = ImageDraw.Draw(image)
    width = max(1, round(stroke_width * _SUPERSAMPLE))
    radius = width / 2
    for pts, highlighted in runs:
        fill = highlight_color if highlighted else color
        xy = [tuple(p) for p in (pts * _SUPERSAMPLE).tolist()]
        if len(xy) > 1:
            draw.line(xy, fill=fill, width=width, joint="curve")
        # Round caps, which Pillow's lines lack; for a one-point stroke this is the whole dot.
        for x, y in (xy[0], xy[-1]):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)


def _png(
    runs: list[Run],
    size: int,
    stroke_width: float,
    color: str,
    background: str,
    highlight_color: str,
) -> Image.Image:
    big = Image.new("RGB", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), background)
    _draw_runs(big, runs, stroke_width, color, highlight_color)
    return big.resize((size, size), Image.Resampling.LANCZOS)


def render_png(
    sketch: StrokeSketch,
    size: int = 256,
    *,
    stroke_width: float = 2.0,
    color: str = "black",
    margin: float = MARGIN,
    background: str = "white",
    highlight_from: int | None = None,
    highlight_color: str = HIGHLIGHT_COLOR,
) -> Image.Image:
    """An anti-aliased RGB image of one sketch, `size` x `size` pixels."""
    runs = _runs(as_stroke3(sketch), size, margin, highlight_from)
    return _png(runs, size, stroke_width, color, background, highlight_color)


@dataclass
class _Grid:
    """Where the cells and labels of a grid go (shared by the SVG and the PNG)."""

    rows: list[list[tuple[np.ndarray, str | None, int | None]]]  # stroke-3, caption, highlight_from
    row_labels: list[str] | None
    cell: int

    @property
    def font_size(self) -> int:
        return max(10, self.cell // 10)

    @property
    def caption_height(self) -> int:
        has_captions = any(label for row in self.rows for _, label, _ in row)
        return round(self.font_size * 1.6) if has_captions else 0

    @property
    def label_width(self) -> int:
        if not self.row_labels:
            return 0
        # An estimate of the text's width: SVG text is measured only by the viewer.
        return round(max(len(t) for t in self.row_labels) * self.font_size * 0.6 + self.font_size)

    @property
    def cols(self) -> int:
        return max(len(row) for row in self.rows)

    @property
    def width(self) -> int:
        return self.label_width + self.cols * self.cell

    @property
    def height(self) -> int:
        return len(self.rows) * (self.cell + self.caption_height)

    def origin(self, r: int, c: int) -> tuple[int, int]:
        return self.label_width + c * self.cell, r * (self.cell + self.caption_height)


def _is_row(item: object) -> bool:
    return isinstance(item, list | tuple)


def _grid(
    sketches: Sequence,
    labels: Sequence | None,
    cols: int | None,
    cell: int,
    row_labels: Sequence[str] | None,
    highlight_from: Sequence | None = None,
) -> _Grid:
    """Rows of (sketch, caption, highlight_from) cells; `labels` and `highlight_from` are shaped
    like `sketches`."""
    if len(sketches) == 0:
        raise SketchDataError("no sketches to draw")
    if all(_is_row(item) for item in sketches):
        cells = [[as_stroke3(s) for s in row] for row in sketches]
        shape = [len(row) for row in cells]

        def rows_of(values: Sequence) -> list[list]:
            return [list(row) for row in values]

    else:
        flat = [as_stroke3(s) for s in sketches]
        cols = cols or math.ceil(math.sqrt(len(flat)))
        cells = [flat[i : i + cols] for i in range(0, len(flat), cols)]
        shape = [len(row) for row in cells]

        def rows_of(values: Sequence) -> list[list]:
            return [list(values[i : i + cols]) for i in range(0, len(values), cols)]

    per_cell = []
    for name, values in (("labels", labels), ("highlights", highlight_from)):
        shaped = rows_of(values) if values is not None else [[None] * n for n in shape]
        if [len(r) for r in shaped] != shape:
            raise SketchDataError(f"{name} must match the sketches one for one")
        per_cell.append(shaped)
    if row_labels is not None and len(row_labels) != len(cells):
        raise SketchDataError(f"{len(row_labels)} row labels for {len(cells)} rows")
    names, highlights = per_cell
    rows = [
        [(s, names[r][c], highlights[r][c]) for c, s in enumerate(row)]
        for r, row in enumerate(cells)
    ]
    return _Grid(rows, list(row_labels) if row_labels is not None else None, cell)


def grid_svg(
    sketches: Sequence,
    labels: Sequence | None = None,
    cols: int | None = None,
    cell: int = 128,
    *,
    row_labels: Sequence[str] | None = None,
    highlight_from: Sequence | None = None,
    stroke_width: float = 1.5,
    color: str = "black",
    margin: float = MARGIN,
    background: str = "white",
) -> str:
    """An SVG grid of sketches, `cell` pixels each, with optional captions and row labels.

    `sketches` is either a flat sequence (Sketch objects or stroke-3 arrays), laid out `cols` per row
    (default: a square), or a list of rows (lists or tuples), e.g. one row per class; rows may differ
    in length. `labels` has the same shape as `sketches` and captions each cell; `row_labels` names
    each row at its left; `highlight_from`, shaped like `sketches`, gives each cell's first point to
    draw in the highlight colour (None: none).
    """
    grid = _grid(sketches, labels, cols, cell, row_labels, highlight_from)
    font = grid.font_size
    parts = []
    for r, row in enumerate(grid.rows):
        y_mid = grid.origin(r, 0)[1] + cell / 2
        if grid.row_labels:
            parts.append(
                f'<text x="{font / 2:g}" y="{y_mid:g}" font-family="sans-serif" font-size="{font}"'
                f' dominant-baseline="middle">{escape(grid.row_labels[r])}</text>'
            )
        for c, (sketch, label, start) in enumerate(row):
            x, y = grid.origin(r, c)
            runs = _runs(sketch, cell, margin, start)
            paths = _svg_paths(runs, stroke_width, color, HIGHLIGHT_COLOR)
            parts.append(f'<g transform="translate({x} {y})">\n{paths}\n</g>')
            if label:
                parts.append(
                    f'<text x="{x + cell / 2:g}" y="{y + cell + font:g}" text-anchor="middle"'
                    f' font-family="sans-serif" font-size="{font}">{escape(label)}</text>'
                )
    return _svg_document(grid.width, grid.height, "\n".join(parts), background)


def grid_png(
    sketches: Sequence,
    labels: Sequence | None = None,
    cols: int | None = None,
    cell: int = 128,
    *,
    row_labels: Sequence[str] | None = None,
    highlight_from: Sequence | None = None,
    stroke_width: float = 1.5,
    color: str = "black",
    margin: float = MARGIN,
    background: str = "white",
) -> Image.Image:
    """The PNG counterpart of `grid_svg` (same arguments), an RGB image."""
    grid = _grid(sketches, labels, cols, cell, row_labels, highlight_from)
    image = Image.new("RGB", (grid.width, grid.height), background)
    draw = ImageDraw.Draw(image)
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.load_default(grid.font_size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    for r, row in enumerate(grid.rows):
        y_mid = grid.origin(r, 0)[1] + cell / 2
        if grid.row_labels:
            draw.text(
                (grid.font_size / 2, y_mid), grid.row_labels[r], fill=color, font=font, anchor="lm"
            )
        for c, (sketch, label, start) in enumerate(row):
            x, y = grid.origin(r, c)
            runs = _runs(sketch, cell, margin, start)
            image.paste(_png(runs, cell, stroke_width, color, background, HIGHLIGHT_COLOR), (x, y))
            if label:
                caption_mid = y + cell + grid.caption_height / 2
                draw.text((x + cell / 2, caption_mid), label, fill=color, font=font, anchor="mm")
    return image


def animate_gif(
    sketch: StrokeSketch,
    path: str | Path,
    size: int = 256,
    *,
    max_frames: int = 48,
    frame_ms: int = 40,
    hold_ms: int = 1500,
    stroke_width: float = 2.0,
    color: str = "black",
    margin: float = MARGIN,
    background: str = "white",
    highlight_from: int | None = None,
    highlight_color: str = HIGHLIGHT_COLOR,
) -> None:
    """Write a looping GIF that draws the sketch in stroke order, holding the last frame `hold_ms`.

    Frames show evenly spaced prefixes of the points, at most `max_frames` of them.
    """
    s3 = as_stroke3(sketch)
    counts = np.unique(np.linspace(1, len(s3), min(len(s3), max_frames)).round().astype(int))
    frames = [
        _png(
            _runs(s3, size, margin, highlight_from, upto=int(n)),
            size,
            stroke_width,
            color,
            background,
            highlight_color,
        )
        for n in counts
    ]
    durations = [frame_ms] * (len(frames) - 1) + [hold_ms]
    with atomic_path(Path(path)) as tmp:
        frames[0].save(
            tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0
        )
