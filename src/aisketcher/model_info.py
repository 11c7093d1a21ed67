"""What a model on disk says about itself, read without torch: where the built-in model lives,
which classes a model knows, how a class name given by a user matches one of them, and which
class an input sketch is encoded under."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from aisketcher.errors import SketchDataError
from aisketcher.model.config import ModelConfig


def builtin_model_dir() -> Path:
    return Path(str(resources.files("aisketcher") / "pretrained" / "default"))


def model_classes(source: str | Path | None) -> list[str] | None:
    """The class names of a run or model folder (None: the built-in model) or of a magenta-js
    file; None when the source cannot tell (loading it will report why)."""
    path = builtin_model_dir() if source is None else Path(source)
    try:
        if path.is_dir():
            names = json.loads((path / "config.json").read_text())["data"]["classes"]
        else:
            names = [json.loads(path.read_text())[0]["name"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError, RecursionError):
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return names


def match_class(name: str | int, known: list[str]) -> int:
    """The index of `name` among `known` (case, and spaces, underscores or hyphens between words,
    aside), or a class index checked against them; an unknown name's error suggests the known
    names a typo away from it, and no others."""
    if isinstance(name, int):
        if not 0 <= name < len(known):
            raise SketchDataError(f"class index {name} out of range 0..{len(known) - 1}")
        return name
    if name in known:  # as spelt: decides between names that differ only in case
        return known.index(name)
    key = name_key(name)
    keys = [name_key(n) for n in known]
    if keys.count(key) == 1:
        return keys.index(key)
    raise SketchDataError(
        f"the model does not know class '{name}' (it knows: {', '.join(known)})"
        + did_you_mean(name, known)
    )


def input_classes(
    labels: Sequence[str | None],
    given: Sequence[str | int | None],
    class_names: Sequence[str] | None,
    ask: str = "give a class, or a label for every sketch",
) -> list[str | int]:
    """The class each input sketch is encoded under (reconstruct, interpolate): the one `given`
    for it; else, for a model of one class, that class; else the sketch's own label. A sketch
    with none is refused, `ask` saying what to give: the class decides what the model draws, so
    none is guessed. `class_names` None: the model's classes are not known yet (the CLI before
    the model loads), so none is the only one."""
    only = class_names[0] if class_names is not None and len(class_names) == 1 else None
    chosen = [
        g if g is not None else only if only is not None else (label or None)
        for g, label in zip(given, labels, strict=True)
    ]
    if None in chosen:
        raise SketchDataError(f"the input sketches carry no class: {ask}")
    return chosen


def did_you_mean(name: str, known: Sequence[str], *, quoted: bool = False) -> str:
    """ "; did you mean a, b?" naming the known names nearest `name` (at most three, all at the
    fewest edits) when they are a typo away, or "" when none is: a suggestion of a different word
    misleads more than none. `quoted`: the names in quotes (names with spaces)."""
    key = name_key(name)
    # A typo is an edit or two, more in a long name; a different word is further away however
    # many letters it shares ("zebra" and "camera" share "e", "r", "a").
    allowed = 1 + len(key) // 5
    near = sorted(
        (d, i)
        for i, k in enumerate(name_key(n) for n in known)
        # The lengths' difference is the fewest edits: most names need no counting.
        if abs(len(k) - len(key)) <= allowed and (d := _typo_distance(key, k)) <= allowed
    )
    names = [repr(known[i]) if quoted else known[i] for d, i in near[:3] if d == near[0][0]]
    return f"; did you mean {', '.join(names)}?" if names else ""


def name_key(name: str) -> str:
    """A name as compared: without case, words joined by one underscore."""
    return re.sub(r"[\s_-]+", "_", name.strip()).casefold()


def _typo_distance(a: str, b: str) -> int:
    """Edits from a to b: a letter inserted, deleted or replaced, or two neighbours swapped."""
    before = previous = list(range(len(b) + 1))  # the rows for a[: i - 2] and a[: i - 1]
    for i, x in enumerate(a, 1):
        row = [i]
        for j, y in enumerate(b, 1):
            edits = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (x != y))
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                edits = min(edits, before[j - 2] + 1)
            row.append(edits)
        before, previous = previous, row
    return previous[-1]


def read_model_config(path: Path) -> tuple[ModelConfig, list[str], float]:
    """A model folder's config.json: the model config, its class names and scale factor, each
    checked (a hostile or damaged file gets one clear error naming it)."""
    source = str(path)
    try:
        info = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # also integers too long to parse
        raise SketchDataError(f"not a readable JSON config: {exc}", source) from None
    if not isinstance(info, dict) or not isinstance(info.get("model"), dict):
        raise SketchDataError("no 'model' object in the config", source)
    data = info.get("data")
    if not isinstance(data, dict):
        raise SketchDataError("no 'data' object in the config", source)
    try:
        config = ModelConfig.from_dict(info["model"])
    except (SketchDataError, TypeError) as exc:
        raise SketchDataError(str(exc), source) from None
    classes, scale = data.get("classes"), data.get("scale_factor")
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise SketchDataError("'data.classes' must be a list of class names", source)
    if len(classes) != config.num_classes:
        raise SketchDataError(
            f"{len(classes)} class names for a model of {config.num_classes} classes", source
        )
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 1e6:
        raise SketchDataError(
            f"'data.scale_factor' must be a positive number, got {scale!r}", source
        )
    return config, classes, float(scale)
