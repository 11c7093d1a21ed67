"""Step-wise sampling for the web app: each drawing mode's request made into the plan the
`Sketcher` makes (`modes`), drawn by the shared `Sampler` a time budget at a time.

`StepSampler` steps the same `Sampler` as the `Sketcher` methods (so a seed gives the same
sketches), but returns after a time budget with the points drawn so far, which the server streams
while the model is still drawing. Points leave in the client's frame (`frame.Frame`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from aisketcher.api import Sketcher
from aisketcher.errors import SketchDataError
from aisketcher.modes import Plan
from aisketcher.sampler import Sampler, make_generator
from aisketcher.server.frame import Frame
from aisketcher.server.schemas import (
    MAX_ROWS,
    CompleteRequest,
    DrawRequest,
    HealRequest,
    InterpolateRequest,
    ReconstructRequest,
    TranslateRequest,
)


class StepSampler:
    """Sketches of one request (one batch row each), drawn a time budget at a time."""

    def __init__(
        self,
        sketcher: Sketcher,
        plan: Plan,
        frames: Sequence[Frame],
        *,
        temperature: float | None,  # None: the model's own
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


# ----- one function per drawing mode: its request -> the plan's step sampler -----
def draw(sketcher: Sketcher, body: DrawRequest) -> StepSampler:
    """Class-only drawing, as `Sketcher.draw`."""
    plan = sketcher.plan_draw(body.cls, body.count, body.seed)
    frames = [Frame()] * body.count
    return StepSampler(sketcher, plan, frames, temperature=body.temperature, seed=body.seed)


def complete(sketcher: Sketcher, body: CompleteRequest) -> StepSampler:
    """`Sketcher.complete`: the user's points, then the model's, from the class's latent.

    Results begin with the start as the user sent it (absolute points and pens in the client's
    frame) unless the model had to simplify it to fit (then with what the model took, as
    `Sketcher.complete`'s)."""
    sketch, frame = body.sketch.to_sketch(body.simplify)
    start = body.sketch.points()
    plan = sketcher.plan_complete(sketch, body.cls, body.count, body.seed)
    fits = len(plan.prefix) == len(sketch)  # not simplified to fit
    if fits:
        # The model's ending, offsets from its pen, goes on from the user's own last point.
        frame = frame.moved(plan.prefix[:, :2].sum(axis=0) * sketcher.scale_factor, start[-1, :2])
    return StepSampler(
        sketcher,
        plan,
        [frame] * body.count,
        temperature=body.temperature,
        seed=body.seed,
        start=start if fits else None,
    )


def translate(sketcher: Sketcher, body: TranslateRequest) -> StepSampler:
    """The paper's Figure 2, as `Sketcher.translate`: one sketch decoded under each class."""
    if body.classes is None and len(sketcher.class_names) > MAX_ROWS:
        raise SketchDataError(f"the model has more than {MAX_ROWS} classes: name some")
    sketch, frame = body.sketch.to_sketch(body.simplify)
    plan = sketcher.plan_translate(sketch, body.classes, body.seed, class_pull=body.class_pull)
    frames = [frame] * plan.count
    return StepSampler(sketcher, plan, frames, temperature=body.temperature, seed=body.seed)


def reconstruct(sketcher: Sketcher, body: ReconstructRequest) -> StepSampler:
    """`Sketcher.reconstruct`: each sketch encoded under the class given (or the model's only
    class, or its own label) and decoded, in its own frame."""
    sketches, frames = zip(*(s.to_sketch(body.simplify) for s in body.sketches), strict=True)
    plan = sketcher.plan_reconstruct(sketches, body.cls)
    return StepSampler(sketcher, plan, frames, temperature=body.temperature, seed=body.seed)


def heal(sketcher: Sketcher, body: HealRequest) -> StepSampler:
    """`Sketcher.heal`: the damaged sketch encoded and drawn whole `count` ways, each in the
    damaged sketch's frame, so that a healed drawing lies over what is left of the user's."""
    sketch, frame = body.sketch.to_sketch(body.simplify)
    plan = sketcher.plan_heal(sketch, body.cls, body.count)
    frames = [frame] * body.count
    return StepSampler(sketcher, plan, frames, temperature=body.temperature, seed=body.seed)


def interpolate(sketcher: Sketcher, body: InterpolateRequest) -> StepSampler:
    """`Sketcher.interpolate`: `steps` sketches along the line from a's latent to b's, each in the
    frame of the end it is nearer."""
    (a, frame_a), (b, frame_b) = (s.to_sketch(body.simplify) for s in (body.a, body.b))
    plan = sketcher.plan_interpolate(a, b, body.steps, body.classes)
    frames = [(frame_a, frame_b)[i] for i in plan.inputs or []]
    return StepSampler(sketcher, plan, frames, temperature=body.temperature, seed=body.seed)
