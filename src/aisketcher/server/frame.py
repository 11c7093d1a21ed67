"""The client's frame: results leave in the coordinates of the canvas a request's strokes came
from, so a continuation lines up with the user's drawing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aisketcher.sketch import Sketch


@dataclass(frozen=True)
class Frame:
    """Client coordinates from the model's pixel units: client = model / scale + origin."""

    scale: float = 1.0
    origin: tuple[float, float] = (0.0, 0.0)

    def to_client(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) / self.scale + np.asarray(self.origin)

    def moved(self, model_point: np.ndarray, client_point: np.ndarray) -> Frame:
        """This frame shifted so that `model_point` maps onto `client_point`."""
        x, y = np.asarray(self.origin) + client_point - self.to_client(model_point)
        return Frame(self.scale, (float(x), float(y)))

    def sketch_out(
        self, sketch: Sketch, prefix_points: int = 0, start: np.ndarray | None = None
    ) -> dict:
        """A result as JSON: absolute strokes and stroke-3, both in the client's frame to 0.01;
        `start` (absolute points and pens, (n, 3), in that frame) in place of the sketch's first
        `prefix_points` points: the user's own, as sent."""
        s3 = sketch.stroke3.astype(np.float64)
        drawn = np.round(self.to_client(np.cumsum(s3[:, :2], axis=0)), 2)
        points = np.column_stack([drawn, s3[:, 2]])
        if start is not None:
            points = np.vstack([start, points[prefix_points:]])
            prefix_points = len(start)
        pens = points[:, 2] > 0.5
        pens[-1] = True  # a sketch's last point ends its stroke
        offsets = np.round(np.diff(points[:, :2], axis=0, prepend=np.zeros((1, 2))), 2)
        return {
            "label": sketch.label or "",
            "strokes": [s.tolist() for s in np.split(points[:, :2], np.flatnonzero(pens[:-1]) + 1)],
            "stroke3": [[x, y, int(p)] for (x, y), p in zip(offsets.tolist(), pens, strict=True)],
            "prefix_points": prefix_points,
        }
