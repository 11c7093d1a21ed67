"""Argument types shared by the commands: bad values are refused by argparse, before any work."""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import tempfile
from pathlib import Path

from aisketcher.limits import MAX_TEMPERATURE, MIN_TEMPERATURE

OUTPUT_SUFFIXES = (".svg", ".png", ".gif", ".npz", ".ndjson")
DEVICE_HELP = "cpu (default), cuda, cuda:N or auto (a GPU when there is one)"
_DEVICE = re.compile(r"cpu|auto|cuda(:\d{1,3})?")


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def device(text: str) -> str:
    """A device name torch knows and this tool runs on; whether it exists is checked later."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device '{text}': use cpu, cuda, cuda:N or auto")
    return text


def output_file(text: str) -> str:
    """A path whose suffix names a format the drawing commands write, in a folder that can be
    written (or created): checked before any work, not after the drawing."""
    suffix = Path(text).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"unknown output format {suffix or '(no suffix)'!r} in '{text}': use "
            + ", ".join(OUTPUT_SUFFIXES)
        )
    folder = Path(text).absolute().parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write '{text}': {existing} is not a folder")
    try:
        if existing == folder:  # a file made and removed at once: the surest test of writing
            tempfile.TemporaryFile(dir=folder).close()
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot write '{text}': {exc.strerror or exc} in {existing}"
        ) from None
    return text


def non_negative_int(text: str) -> int:
    """An integer >= 0 (an index, a count of retries)."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2^63 - 1 (what NumPy and torch both take)."""
    value = non_negative_int(text)
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"a seed must be below 2^63, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate, minutes)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _within(text: str, low: float, high: float, refusal: str) -> float:
    """A number in [low, high] (NaN is not); else `refusal`, then what was given."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not low <= value <= high:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{refusal}, got {text}")
    return value


def unit_interval(text: str) -> float:
    """A number from 0 to 1 (a share, a pull)."""
    return _within(text, 0.0, 1.0, "must be from 0 to 1")


def stretch(text: str) -> float:
    """A random stretch S in [0, 0.9]: each axis scaled by a factor in [1 - S, 1 + S]."""
    return _within(text, 0.0, 0.9, "must be from 0 to 0.9")


def temperature(text: str) -> float:
    """A sampling temperature in [0.01, 2]."""
    value = positive_float(text)
    if not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:
        raise argparse.ArgumentTypeError(
            f"temperature must be within [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}], got {text}"
        )
    return value


def guidance(text: str) -> float:
    """A class-guidance weight w in [0, 100] (1: the paper's conditional model)."""
    return _within(text, 0.0, 100.0, "guidance must be within [0, 100]")


def prior_spread(text: str) -> float:
    """A share of the class priors' spread, in [0, 10]."""
    return _within(text, 0.0, 10.0, "the prior spread must be within [0, 10]")


PRIOR_SPREAD_HELP = (
    "class-only drawing: z_s and z_r drawn at this share of their class prior's spread (1: as "
    "fitted; < 1: nearer the class's typical drawing, less varied); default: the model's own"
)


PEN_TEMPERATURE_HELP = (
    "temperature of the pen's choices alone (draw on, lift, end), 0.01-2; a low --temperature "
    "makes ending rarer and drawings run on; default: the model's own (the built-in model: 1; "
    "others: --temperature)"
)


TEMPERATURE_HELP = "randomness, 0.01-2: lower is tidier and less varied; default: {}"


def add_drawing_settings(
    p: argparse.ArgumentParser, temperature_default: float | None = None
) -> None:
    """--temperature, --guidance, --prior-spread and --pen-temperature: how drawings are drawn
    (default: the model's; the temperature's `temperature_default` where given)."""
    own = "the model's own (most 0.4, the built-in model 0.2)"
    default = own if temperature_default is None else f"{temperature_default:g}"
    p.add_argument(
        "--temperature",
        type=temperature,
        default=temperature_default,
        help=TEMPERATURE_HELP.format(default),
    )
    p.add_argument("--guidance", type=guidance, default=None, help=GUIDANCE_HELP)
    p.add_argument("--prior-spread", type=prior_spread, default=None, help=PRIOR_SPREAD_HELP)
    p.add_argument("--pen-temperature", type=temperature, default=None, help=PEN_TEMPERATURE_HELP)


GUIDANCE_HELP = (
    "class guidance w: the drawing moves from the model's 'no class' prediction w times as far "
    "as to its class's (1: the paper's model; > 1: more typical of the class, less varied). "
    "Needs a model trained with class dropout; default: the model's own"
)


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


MAX_PICTURE = 4096


def picture_size(text: str) -> int:
    """Pixels per sketch in a picture: 16 to 4096."""
    value = positive_int(text)
    if not 16 <= value <= MAX_PICTURE:
        raise argparse.ArgumentTypeError(f"must be within [16, {MAX_PICTURE}] pixels, got {value}")
    return value
