"""Dataset statistics: sequence lengths, stroke counts and Sketch-RNN's normalising scale factor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from aisketcher.errors import SketchDataError
from aisketcher.strokes import MAX_OFFSET, num_strokes


@dataclass(frozen=True)
class Summary:
    """Min, mean, median, 95th percentile and max of a set of counts."""

    min: float
    mean: float
    median: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan)
        return cls(
            float(arr.min()),
            float(arr.mean()),
            float(np.median(arr)),
            float(np.percentile(arr, 95)),
            float(arr.max()),
        )

    def __str__(self) -> str:
        return (
            f"min {self.min:g}, mean {self.mean:.1f}, median {self.median:g}, "
            f"95th pct {self.p95:g}, max {self.max:g}"
        )


@dataclass(frozen=True)
class SplitStats:
    """What `aisketcher data inspect` reports for one list of stroke-3 sketches."""

    count: int
    length: Summary
    strokes: Summary


def split_stats(sketches: Sequence[np.ndarray]) -> SplitStats:
    """Count, sequence-length and stroke-count summaries of stroke-3 sketches."""
    return SplitStats(
        count=len(sketches),
        length=Summary.of([len(s) for s in sketches]),
        strokes=Summary.of([num_strokes(s) for s in sketches]),
    )


def normalizing_scale_factor(sketches: Iterable[np.ndarray], limit: float = MAX_OFFSET) -> float:
    """Standard deviation of all dx and dy offsets after clamping them to +-`limit`.

    As magenta's `calculate_normalizing_scale_factor` (applied to the training split, whose offsets
    are then divided by this for every split). Population std (ddof 0), in float64.
    """
    parts = [np.asarray(s, dtype=np.float64)[:, :2].ravel() for s in sketches]
    if not parts:
        raise SketchDataError("no sketches to compute a scale factor from")
    offsets = np.clip(np.concatenate(parts), -limit, limit)
    return float(offsets.std())
