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


JSON_CASES = {
    "letters as numbers": '{"stroke3": [["a", "b", "c"]]}',
    "ragged rows": '{"stroke3": [[1, 2, 0], [1, 2]]}',
    "an object for rows": '{"stroke3": {"a": 1}}',
    "a 400-digit coordinate": '{"stroke3": [[1' + "0" * 400 + ", 2, 0]]}",
    "200,000 nested lists": "[" * 200_000,
    "two columns": '{"stroke3": [[1, 2]]}',
    "a numeric label": '{"strokes": [[[1, 2], [3, 4]]], "label": 5}',
    "not UTF-8": b"\xff\xfe[[[1, 2]]]",
    "a 5000-digit integer": '{"stroke3": [[1' + "0" * 5000 + ", 2, 0]]}",
}


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_bad_json_sketches_get_one_clear_error_naming_the_file(case: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    text = JSON_CASES[case]
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SketchDataError) as exc:
        read_sketches(path)
    assert str(exc.value).startswith(f"{path}: ")


def test_an_svg_in_an_encoding_the_parser_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "utf7.svg"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-7"?>'
        '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L10 10"/></svg>'
    )
    with pytest.raises(SketchDataError, match="unreadable XML"):
        read_sketches(path)
