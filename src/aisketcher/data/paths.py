"""Where sketch data lives by default."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "AISKETCHER_DATA"


def default_data_dir() -> Path:
    """`$AISKETCHER_DATA`, else `../shared/data` (the development layout), else the user cache."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    dev = Path("../shared/data")
    if dev.is_dir():
        return dev
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aisketcher" / "data"
