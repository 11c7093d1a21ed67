"""Step-wise sampling for the web app: the shared `Sampler`, a time budget at a time.

`StepSampler` steps the same `Sampler` as the `Sketcher` methods (so a seed gives the same
sketches), but returns after a time budget with the points drawn so far, which the server streams
while the model is still drawing.
Points leave in the client's frame: the coordinates of the canvas the request's strokes came from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aisketcher.api import Sketcher
from aisketcher.modes import Plan
from aisketcher.sampler import Sampler, make_generator
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


class StepSampler:
    """Sketches of one request (one batch row each), drawn a time budget at a time."""

    def __init__(
        self,
        sketcher: Sketcher,
        plan: Plan,
        frames: Sequence[Frame],
        *,
        temperature: float,
        seed: int | None,
        start: np.ndarray | None = None,
    ) -> None:
        self.sketcher, self.labels, self.frames, self.start = sketcher, plan.labels, frames, start
        self.sampler = Sampler(
            sketcher.model,
            plan.latent,
            plan.count,
            temperature=temperature,
            generator=make_generator(sketcher.device, seed),
            prefix=plan.prefix,
        )
        # Where each row's pen is, in normalised units, to send absolute points.
        self.cursor = np.zeros((plan.count, 2))
        if plan.prefix is not None:
            self.cursor += plan.prefix[:, :2].sum(axis=0)

    @property
    def finished(self) -> bool:
        return self.sampler.finished

    def advance(self, seconds: float) -> list[list[float]]:
        """Decode until `seconds` have passed or every row has ended.

        Returns the new points as [row, x, y, pen] in each row's client frame; pen = 1 when the
        stroke ends after the point.
        """
        until = time.perf_counter() + seconds
        scale_factor = self.sketcher.scale_factor
        drawn: list[list[float]] = []
        while not self.finished:
            points, drawing = self.sampler.step()
            for i in np.flatnonzero(drawing & (points[:, 4] < 0.5)):  # an end is not a point
                self.cursor[i] += points[i, :2]
                x, y = self.frames[i].to_client(self.cursor[i] * scale_factor)
                drawn.append(
                    [int(i), round(float(x), 2), round(float(y), 2), int(points[i, 3] > 0.5)]
                )
            if time.perf_counter() >= until:
                break
        return drawn

    def results(self) -> list[dict]:
        """The finished sketches as JSON (see `Frame.sketch_out`)."""
        sketches = self.sketcher.to_sketches(self.sampler.sketches(), self.labels)
        return [
            frame.sketch_out(s, self.sampler.prefix_points, self.start)
            for frame, s in zip(self.frames, sketches, strict=True)
        ]


def draw(
    sketcher: Sketcher, cls: str, count: int, *, temperature: float, seed: int | None
) -> StepSampler:
    """Class-only drawing, as `Sketcher.draw`."""
    plan = sketcher.plan_draw(cls, count, seed)
    return StepSampler(sketcher, plan, [Frame()] * count, temperature=temperature, seed=seed)


def complete(
    sketcher: Sketcher,
    sketch: Sketch,
    frame: Frame,
    start: np.ndarray,
    cls: str,
    count: int,
    *,
    temperature: float,
    seed: int | None,
) -> StepSampler:
    """`Sketcher.complete`: the user's points, then the model's, from the class's latent.

    `sketch` is the start as the model takes it, `start` as the user sent it (absolute points and
    pens in the client's frame); results begin with `start` unless the model had to simplify it
    to fit (then with what the model took, as `Sketcher.complete`'s)."""
    plan = sketcher.plan_complete(sketch, cls, count, seed)
    fits = len(plan.prefix) == len(sketch)  # not simplified to fit
    if fits:
        # The model's ending, offsets from its pen, goes on from the user's own last point.
        frame = frame.moved(plan.prefix[:, :2].sum(axis=0) * sketcher.scale_factor, start[-1, :2])
    return StepSampler(
        sketcher,
        plan,
        [frame] * count,
        temperature=temperature,
        seed=seed,
        start=start if fits else None,
    )


def translate(
    sketcher: Sketcher,
    sketch: Sketch,
    frame: Frame,
    classes: Sequence[str] | None,
    *,
    temperature: float,
    seed: int | None,
    class_pull: float,
) -> StepSampler:
    """The paper's Figure 2, as `Sketcher.translate`: one sketch decoded under each class."""
    plan = sketcher.plan_translate(sketch, classes, seed, class_pull=class_pull)
    return StepSampler(sketcher, plan, [frame] * plan.count, temperature=temperature, seed=seed)


def reconstruct(
    sketcher: Sketcher,
    sketches: Sequence[Sketch],
    frames: Sequence[Frame],
    cls: str | None,
    *,
    temperature: float,
    seed: int | None,
) -> StepSampler:
    """`Sketcher.reconstruct`: each sketch encoded under `cls` (or the model's only class, or its
    own label) and decoded."""
    plan = sketcher.plan_reconstruct(sketches, cls)
    return StepSampler(sketcher, plan, frames, temperature=temperature, seed=seed)


def interpolate(
    sketcher: Sketcher,
    ends: tuple[Sketch, Sketch],
    frames: tuple[Frame, Frame],
    steps: int,
    classes: tuple[str, str] | None,
    *,
    temperature: float,
    seed: int | None,
) -> StepSampler:
    """`Sketcher.interpolate`: `steps` sketches along the line from a's latent to b's, each in
    the frame of the end it is nearer."""
    plan = sketcher.plan_interpolate(ends[0], ends[1], steps, classes)
    rows = [frames[i] for i in plan.inputs or []]
    return StepSampler(sketcher, plan, rows, temperature=temperature, seed=seed)
