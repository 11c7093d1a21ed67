"""Reading and writing sketch files. No torch here."""

from __future__ import annotations

import stat
from pathlib import Path

from aisketcher.errors import SketchDataError


def require_file(path: str | Path) -> Path:
    """`path` if it is a regular file; a FIFO, device or folder would block or mislead a reader."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SketchDataError("no such file", str(path)) from None
    except OSError as exc:
        raise SketchDataError(f"cannot read: {exc.strerror}", str(path)) from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe or a device)"
        raise SketchDataError(f"is {kind}; give a sketch file", str(path))
    return path
