"""Checks of a settings dataclass loaded from a file (a model config, a run's training settings,
the loss weights): one rule for every field's type and one for its range, whatever the class."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

_KINDS = {"str": str, "int": int, "float": float, "bool": bool}


def mistyped(settings: Any) -> list[str]:
    """The fields of dataclass `settings` whose value is not of the declared type (str, int,
    float or bool, each maybe "| None"). A whole number given for a float is stored as a float (one
    too large for a float as inf, for a range check to refuse); True is not an int."""
    bad = []
    for f in dataclasses.fields(settings):
        name = f.type.removesuffix(" | None")
        kind, value = _KINDS[name], getattr(settings, f.name)
        if value is None and name != f.type:
            continue
        if kind is float and type(value) is int:
            try:
                value = float(value)
            except OverflowError:  # an integer of hundreds of digits
                value = math.inf
            object.__setattr__(settings, f.name, value)
        if type(value) is not kind:
            bad.append(f.name)
    return bad


def out_of_range(
    settings: Any, ranges: dict[str, tuple[float, float]], skip: Sequence[str] = ()
) -> list[str]:
    """A problem for each field in `ranges` (but `skip`: mistyped; None: an optional field left
    unset) outside its bounds; NaN is."""
    problems = []
    for name, (low, high) in ranges.items():
        value = getattr(settings, name)
        if name not in skip and value is not None and not (low <= value <= high):  # NaN fails
            problems.append(f"{name} must be within [{low:g}, {high:g}], got {value!r}")
    return problems
