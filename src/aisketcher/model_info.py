"""What a model on disk says about itself, read without torch: where the built-in model lives,
which classes a model knows, and how a class name given by a user matches one of them."""

from __future__ import annotations

import difflib
import json
from importlib import resources
from pathlib import Path

from aisketcher.errors import SketchDataError


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
    """The index of `name` (spaces or underscores alike) or of a class index among `known`."""
    if isinstance(name, int):
        if not 0 <= name < len(known):
            raise SketchDataError(f"class index {name} out of range 0..{len(known) - 1}")
        return name
    key = name.strip().replace(" ", "_")
    names = [n.replace(" ", "_") for n in known]
    if key in names:
        return names.index(key)
    near = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise SketchDataError(
        f"the model does not know class '{name}' (it knows: {', '.join(known)}){hint}"
    )
