"""The Sketch type: one vector sketch in stroke-3 form with an optional class name, its forms
(`strokes.py` converts), and for notebooks and scripts its pictures and files (`render.py`,
`formats/writer.py`, which take it without importing it)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aisketcher.strokes import (
    MAX_OFFSET,
    stroke3_bounds,
    stroke3_to_stroke5,
    stroke3_to_strokes,
    stroke5_to_stroke3,
    strokes_to_stroke3,
    validate_stroke3,
)


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
        return stroke3_bounds(self.stroke3)

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
        from aisketcher.formats.writer import save_sketches

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
