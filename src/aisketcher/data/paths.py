"""Where sketch data, and what aisketcher caches for the user, live by default."""

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
    return user_cache_dir() / "data"


def user_cache_dir() -> Path:
    """aisketcher's folder in the user's cache: `$XDG_CACHE_HOME/aisketcher` (an empty variable
    counts as unset, as the XDG spec says), else `~/.cache/aisketcher`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aisketcher"
