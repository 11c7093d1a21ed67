"""Atomic file writes: a file with its final name is always complete."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aisketcher.errors import SketchDataError


def _read_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


# Read once, at import: setting it at every write would race with files other threads create.
_UMASK = _read_umask()


@contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, hidden) that replaces `path` once written.

    On any error the temporary file is removed and `path` is left as it was. The file gets the
    usual permissions (0666 less the umask) even when the writer creates it private, as safetensors
    does. `fsync` flushes it to disk before the rename, for files whose loss on a power cut would
    matter (checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.part{path.suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(
    path: Path,
    write: Callable[[str], object],
    failures: tuple[type[BaseException], ...] = (OSError,),
) -> None:
    """`write(temporary path)`, flushed to disk, then renamed over `path`; a failed write (a full
    disk: one of `failures`) leaves `path` as it was and says so in one line."""
    try:
        with atomic_path(path, fsync=True) as tmp:
            write(str(tmp))
    except failures as exc:
        raise SketchDataError(
            f"could not write it ({exc}); the file already there, if any, is intact", str(path)
        ) from None


def json_text(data: dict[str, Any]) -> str:
    """How the JSON files beside checkpoints and in model folders are written."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """`data` as `json_text`, written as `atomic_write` does."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json_text(data)))
