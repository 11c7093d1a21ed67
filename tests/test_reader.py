"""Input files: whatever the path names, the readers answer at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aisketcher.cli import main
from aisketcher.errors import SketchDataError
from aisketcher.formats.reader import read_sketches


@pytest.mark.parametrize("suffix", [".npz", ".ndjson", ".svg", ".json"])
def test_a_pipe_or_a_folder_is_refused_without_blocking(tmp_path: Path, suffix: str) -> None:
    fifo = tmp_path / f"pipe{suffix}"
    os.mkfifo(fifo)  # opening it to read would wait forever for a writer
    with pytest.raises(SketchDataError, match="not a regular file"):
        read_sketches(fifo)
    folder = tmp_path / f"folder{suffix}"
    folder.mkdir()
    with pytest.raises(SketchDataError, match="is a folder"):
        read_sketches(folder)
    if suffix in (".npz", ".ndjson"):
        assert main(["data", "inspect", str(fifo)]) == 2
