"""Bounds on a drawing as it is read, shared by every reader and the web app: beyond them the
work of reading or simplifying it grows without use (Google's raw drawings hold at most a few
thousand points, on a canvas of a few thousand pixels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_POINTS = 5000  # points of one drawing as given (before simplification)
MAX_STROKES = 200
MAX_COORDINATE = 1e6  # absolute coordinates, in whatever unit the drawing comes in
# Ink length on the 0..255 canvas bounds the work of simplifying (1-pixel resampling, then RDP).
MAX_INK = 20_000.0
CANVAS = 255.0
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 2.0  # sampling temperatures a request may ask for


def check_drawing(strokes: Sequence[np.ndarray]) -> None:
    """Raise ValueError naming the first bound absolute strokes (n, 2) break."""
    if len(strokes) > MAX_STROKES:
        raise ValueError(f"{len(strokes)} strokes; at most {MAX_STROKES} per drawing")
    points = sum(len(s) for s in strokes)
    if points > MAX_POINTS:
        raise ValueError(f"{points} points; at most {MAX_POINTS} per drawing")
    if any(np.abs(s).max() > MAX_COORDINATE for s in strokes if len(s)):
        raise ValueError(f"coordinates beyond +-{MAX_COORDINATE:g}")


def canvas_frame(strokes: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """(low, scale): `(points - low) * scale` puts a drawing on Google's 0..255 canvas, its top-left
    at 0 and its larger side 255 long."""
    everything = np.vstack(strokes)
    low = everything.min(axis=0)
    extent = float((everything - low).max())
    return low, CANVAS / extent if extent > 0 else 1.0


def canvas_ink(strokes: Sequence[np.ndarray]) -> float:
    """The drawing's ink length once scaled to the 0..255 canvas as Google's data is."""
    _, scale = canvas_frame(strokes)
    return sum(float(np.hypot(*np.diff(s, axis=0).T).sum()) for s in strokes) * scale
