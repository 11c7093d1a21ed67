"""Argument types shared by the commands: bad values are refused by argparse, before any work."""

from __future__ import annotations

import argparse
from pathlib import Path

OUTPUT_SUFFIXES = (".svg", ".png", ".gif", ".npz", ".ndjson")


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def output_file(text: str) -> str:
    """A path whose suffix names a format the drawing commands write."""
    suffix = Path(text).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"unknown output format {suffix or '(no suffix)'!r} in '{text}': use "
            + ", ".join(OUTPUT_SUFFIXES)
        )
    return text
