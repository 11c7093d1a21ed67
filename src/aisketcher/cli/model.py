"""`aisketcher train|draw|...`: train models and draw with them."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    del sub
