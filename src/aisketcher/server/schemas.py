"""The JSON API's requests and answers, with every limit on what a request may ask for.

A sketch is `{"strokes": [[[x, y], ...], ...]}` (absolute points, e.g. a canvas's), a bare list of
such strokes, or `{"stroke3": [[dx, dy, pen], ...]}`, as in `formats.reader.sketch_from_json`.
Strokes are simplified by default as Google simplified the Quick, Draw! data the model learnt from
(scaled to 0..255, resampled, Ramer-Douglas-Peucker), and results are mapped back to the frame
the strokes came in, so a continuation lines up with the user's drawing; a completion begins with
the user's own points, as sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aisketcher.errors import SketchDataError
from aisketcher.formats.ndjson import simplify_raw
from aisketcher.formats.reader import sketch_from_json
from aisketcher.latents import TRANSLATE_PULL
from aisketcher.limits import (
    MAX_COORDINATE,
    MAX_INK,
    MAX_POINTS,
    MAX_STROKES,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    canvas_frame,
    canvas_ink,
)
from aisketcher.server.frame import Frame
from aisketcher.sketch import Sketch

MAX_COUNT = 8  # sketches per draw, complete or heal request
MAX_ROWS = 20  # sketches one request may have drawn in all (translate, reconstruct, interpolate)
MAX_SEED = 2**32 - 1
MIN_IMAGE, MAX_IMAGE = 32, 1024

Coordinate = Annotated[float, Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE, allow_inf_nan=False)]
Point = tuple[Coordinate, Coordinate]
Stroke = Annotated[list[Point], Field(min_length=1, max_length=MAX_POINTS)]
Row3 = tuple[Coordinate, Coordinate, Annotated[int, Field(ge=0, le=1)]]
ClassName = Annotated[str, Field(min_length=1, max_length=64)]
ModelName = Annotated[str, Field(min_length=1, max_length=64)]


class SketchIn(BaseModel):
    """One sketch: `strokes` (absolute points) or `stroke3` (offsets, pen 1 = stroke ends)."""

    model_config = ConfigDict(extra="forbid")

    strokes: Annotated[list[Stroke], Field(min_length=1, max_length=MAX_STROKES)] | None = None
    stroke3: Annotated[list[Row3], Field(min_length=1, max_length=MAX_POINTS)] | None = None
    label: ClassName | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: object) -> object:
        return {"strokes": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _one_form(self) -> SketchIn:
        if (self.strokes is None) == (self.stroke3 is None):
            raise ValueError("give exactly one of 'strokes' and 'stroke3'")
        if self.strokes is not None:
            total = sum(len(s) for s in self.strokes)
            if total > MAX_POINTS:
                raise ValueError(f"{total} points; at most {MAX_POINTS} per sketch")
        return self

    def points(self) -> np.ndarray:
        """The absolute points and pens (n, 3; pen 1: the stroke ends) in the client's frame:
        strokes as sent, stroke-3 rows summed (to 0.01, as the answers' numbers)."""
        if self.stroke3 is not None:
            rows = np.asarray(self.stroke3, dtype=np.float64)
            rows[:, :2] = np.round(np.cumsum(rows[:, :2], axis=0), 2)
            return rows
        return np.vstack(
            [np.column_stack([s, np.arange(len(s)) == len(s) - 1]) for s in self.strokes or []]
        )

    def to_sketch(self, simplify: bool) -> tuple[Sketch, Frame]:
        """The sketch in the model's pixel units, and the frame that maps results back."""
        if self.stroke3 is not None or not simplify:
            return sketch_from_json(self.model_dump(exclude_none=True), "sketch"), Frame()
        arrays = [np.asarray(s, dtype=np.float64) for s in self.strokes or []]
        low, scale = canvas_frame(arrays)  # simplify_raw's, kept to map the model's points back
        ink = canvas_ink(arrays)
        if ink > MAX_INK:
            raise SketchDataError(
                f"the drawing has too much ink to simplify ({ink:.0f} > {MAX_INK:.0f} pixels "
                "on a 255-pixel canvas)",
                "sketch",
            )
        strokes = [s.tolist() for s in simplify_raw(arrays)]
        sketch = sketch_from_json({"strokes": strokes, "label": self.label}, "sketch")
        return sketch, Frame(scale, (float(low[0]), float(low[1])))


def _temperature(default: float | None) -> Any:
    return Field(
        default,
        ge=MIN_TEMPERATURE,
        le=MAX_TEMPERATURE,
        strict=True,
        allow_inf_nan=False,  # NaN and Infinity, as Python's json writes them: not "above 2"
        description="randomness of the drawing"
        + (" (default: the model's own, GET /api/model)" if default is None else ""),
    )


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    temperature: float | None = _temperature(None)
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, strict=True, description="repeats a result exactly"
    )
    model: ModelName | None = Field(
        None,
        description="one of Google's pretrained models as google:NAME (`/api/models` lists them; "
        "the server downloads one on first use); default: the server's own model",
    )


class DrawRequest(Sampling):
    cls: ClassName = Field(alias="class", description="what to draw")
    count: int = Field(1, ge=1, le=MAX_COUNT, strict=True)


class CompleteRequest(Sampling):
    sketch: SketchIn = Field(description="the start of a drawing")
    cls: ClassName = Field(alias="class", description="what the drawing should become")
    count: int = Field(4, ge=1, le=MAX_COUNT, strict=True, description="alternative endings")
    simplify: bool = Field(
        True, strict=True, description="simplify strokes as the training data was"
    )


class TranslateRequest(Sampling):
    sketch: SketchIn
    classes: Annotated[list[ClassName], Field(min_length=1, max_length=MAX_ROWS)] | None = Field(
        None, description="target classes, repeats allowed (default: every class of the model)"
    )
    class_pull: float = Field(
        TRANSLATE_PULL,
        ge=0.0,
        le=1.0,
        strict=True,
        allow_inf_nan=False,
        description="how far the input's code z_s moves toward the target class's mean code: 0 "
        "the paper's translation, 1 the class's mean code (no effect on a model without a "
        "fitted z_s prior)",
    )
    simplify: bool = Field(True, strict=True)


class ReconstructRequest(Sampling):
    sketches: Annotated[list[SketchIn], Field(min_length=1, max_length=MAX_ROWS)]
    cls: ClassName | None = Field(
        None, alias="class", description="class of the sketches (default: each sketch's label)"
    )
    simplify: bool = Field(True, strict=True)


class HealRequest(Sampling):
    sketch: SketchIn = Field(description="a drawing with strokes or parts of strokes rubbed out")
    cls: ClassName = Field(alias="class", description="what the drawing is")
    count: int = Field(4, ge=1, le=MAX_COUNT, strict=True, description="healed versions")
    simplify: bool = Field(True, strict=True)


class InterpolateRequest(Sampling):
    a: SketchIn = Field(description="where the path starts")
    b: SketchIn = Field(description="where the path ends")
    classes: tuple[ClassName, ClassName] | None = Field(
        None,
        description="the classes a and b are encoded under (default: each sketch's label, or the "
        "model's only class)",
    )
    steps: int = Field(8, ge=1, le=MAX_ROWS, strict=True, description="sketches along the path")
    temperature: float = _temperature(0.1)  # the path shows best with little randomness
    simplify: bool = Field(True, strict=True)


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sketch: SketchIn
    format: Literal["svg", "png"] = "svg"
    size: int = Field(256, ge=MIN_IMAGE, le=MAX_IMAGE, strict=True, description="pixels per side")
    highlight_from: int | None = Field(
        None,
        ge=0,
        le=MAX_POINTS,
        strict=True,
        description="points from here on in the model's colour",
    )


class SketchOut(BaseModel):
    label: str
    strokes: list[list[tuple[float, float]]] = Field(description="absolute points, client frame")
    stroke3: list[tuple[float, float, int]]
    prefix_points: int = Field(
        description="how many leading points are the user's (simplified if they were more than "
        "the model takes)"
    )


class SketchesOut(BaseModel):
    sketches: list[SketchOut]


class ModelInfo(BaseModel):
    source: str
    classes: list[str]
    max_seq_len: int
    has_encoder: bool
    temperature: float = Field(description="what a drawing that names none is drawn at")
    limits: dict[str, int | float]


class ModelChoices(BaseModel):
    default: str = Field(description="the server's own model, drawn with when a request names none")
    google: list[str] = Field(description="Google's pretrained models, as google:NAME")
    cached: list[str] = Field(description="those of them the server has downloaded already")


class Health(BaseModel):
    status: str
    jobs: int
    max_jobs: int


def limits() -> dict[str, int | float]:
    """The limits above, for clients (the page sets its controls from them)."""
    return {
        "max_points": MAX_POINTS,
        "max_strokes": MAX_STROKES,
        "max_count": MAX_COUNT,
        "max_rows": MAX_ROWS,
        "min_temperature": MIN_TEMPERATURE,
        "max_temperature": MAX_TEMPERATURE,
        "max_coordinate": MAX_COORDINATE,
    }
