"""Files the drawing commands write open in the tools of the field, and come back into every
command that takes an input: sketch-rnn `.npz` as Google's files are, ndjson of several classes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from aisketcher.api import Sketcher
from aisketcher.cli import main
from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import read_npz_labels, write_npz
from aisketcher.formats.reader import read_sketches
from aisketcher.strokes import stroke3_on_integer_grid


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three cats and three apples drawn by the built-in model into one .npz."""
    out = tmp_path_factory.mktemp("drawn") / "ca.npz"
    assert main(["draw", "cat", "apple", "--count", "3", "--seed", "1", "--out", str(out)]) == 0
    return out


def test_a_drawn_npz_loads_as_sketch_rnn_tools_load_it(drawn: Path) -> None:
    data = np.load(drawn, allow_pickle=True, encoding="latin1")  # as magenta's sketch_rnn does
    assert {"train", "valid", "test"} <= set(data.files)
    assert len(data["train"]) == len(data["valid"]) == 0
    assert len(data["test"]) == 6
    for s in data["test"]:
        assert s.dtype == np.int16 and s.ndim == 2 and s.shape[1] == 3
        assert set(np.unique(s[:, 2])) <= {0, 1}
    # Every point within half a unit of the model's own (float) drawing, drawn again here with
    # the seeds the command uses (its seed, then one more per class).
    sketcher = Sketcher.load()
    expected = sketcher.draw("cat", 3, seed=1) + sketcher.draw("apple", 3, seed=2)
    for written, original in zip(data["test"], expected, strict=True):
        points = np.cumsum(original.stroke3[:, :2].astype(np.float64), axis=0)
        assert np.abs(np.cumsum(written[:, :2], axis=0) - points).max() <= 0.5 + 1e-6
        assert np.array_equal(written[:, 2], original.stroke3[:, 2])
    names = data["class_names"]
    assert [str(names[i]) for i in data["test_labels"]] == ["cat"] * 3 + ["apple"] * 3


def test_a_drawn_npz_comes_back_into_every_command_that_takes_an_input(
    drawn: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    back = read_sketches(drawn)
    assert [s.label for s in back] == ["cat"] * 3 + ["apple"] * 3
    out = str(tmp_path / "o.svg")
    runs = [
        ["reconstruct", "--input", str(drawn), "--count", "6"],  # each under its recorded class
        ["translate", "--input", str(drawn), "--index", "4", "--classes", "pig"],
        ["complete", "--input", str(drawn), "--index", "2", "--class", "cat", "--count", "2"],
        ["interpolate", "--a", str(drawn), "--b", str(drawn), "--b-index", "5", "--steps", "3"],
        ["data", "render", str(drawn), "--grid", "2"],
    ]
    for argv in runs:
        assert main([*argv, "--out", out]) == 0, argv
    assert main(["data", "inspect", str(drawn)]) == 0
    assert "6 sketches, classes: apple, cat" in capsys.readouterr().out


def test_draw_puts_the_drawings_in_the_split_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "train.npz"
    assert main(["draw", "eye", "--count", "2", "--split", "train", "--out", str(out)]) == 0
    data = np.load(out, allow_pickle=True, encoding="latin1")
    assert len(data["train"]) == 2 and len(data["test"]) == 0
    assert [s.label for s in read_sketches(out, split="train")] == ["eye", "eye"]
    assert main(["reconstruct", "--input", str(out), "--split", "train", "--out", str(out)]) == 0


def test_an_ndjson_of_several_classes_is_written_and_read_back(tmp_path: Path) -> None:
    out = tmp_path / "ca.ndjson"
    assert main(["draw", "cat", "apple", "--count", "2", "--seed", "3", "--out", str(out)]) == 0
    words = [json.loads(line)["word"] for line in out.read_text().splitlines()]
    assert words == ["cat", "cat", "apple", "apple"]
    assert [s.label for s in read_sketches(out)] == words
    assert main(["reconstruct", "--input", str(out), "--count", "4", "--out", str(out)]) == 0


def test_points_are_rounded_not_offsets() -> None:
    """Rounding each offset would lose a slow drift (0.4 a step rounds to 0 every time)."""
    s3 = np.zeros((50, 3), dtype=np.float32)
    s3[:, 0] = 0.4
    s3[-1, 2] = 1
    grid = stroke3_on_integer_grid(s3)
    assert grid.dtype == np.int16
    assert np.array_equal(np.cumsum(grid[:, 0]), np.round(0.4 * np.arange(1, 51)))
    with pytest.raises(SketchDataError, match="int16"):
        stroke3_on_integer_grid(np.array([[40000.0, 0, 1]], dtype=np.float32))


def npz_with_record(path: Path, **arrays: np.ndarray) -> Path:
    """A file of two sketches in its test split, with `arrays` (a class record) beside them."""
    sketch = np.array([[1, 2, 0], [3, 4, 1]], dtype=np.int16)
    test = np.empty(2, dtype=object)
    test[0], test[1] = sketch, sketch
    np.savez(path, test=test, **arrays)
    return path


# Class records that do not fit their sketches, and what the refusal says.
BAD_CLASS_RECORDS: list[tuple[dict, str]] = [
    ({"class_names": np.array([b"cat"], dtype=object), "test_labels": np.zeros(2)}, "member"),
    ({"class_names": np.array(["cat"]), "test_labels": np.array([0, 1])}, "points past"),
    ({"class_names": np.array(["cat"]), "test_labels": np.array([0])}, "1 recorded classes"),
    ({"class_names": np.array(["cat"]), "test_labels": np.array([0.0, 0.0])}, "indices"),
    ({"class_names": np.array([1, 2]), "test_labels": np.array([0, 1])}, "class names"),
]


@pytest.mark.parametrize(("arrays", "problem"), BAD_CLASS_RECORDS)
def test_a_bad_class_record_is_refused_naming_the_file(
    tmp_path: Path, arrays: dict, problem: str
) -> None:
    path = npz_with_record(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SketchDataError, match=problem) as info:
        read_sketches(path)
    assert str(path) in str(info.value)


def test_a_file_without_a_class_record_reads_as_before(tmp_path: Path) -> None:
    path = npz_with_record(tmp_path / "plain.npz")
    assert read_npz_labels(path, "test") is None
    assert [s.label for s in read_sketches(path)] == [None, None]


def test_write_npz_refuses_labels_that_do_not_fit(tmp_path: Path) -> None:
    sketch = np.array([[1, 2, 1]], dtype=np.int16)
    with pytest.raises(SketchDataError, match="2 labels for 1 sketches"):
        write_npz(tmp_path / "x.npz", {"test": [sketch]}, labels={"test": ["a", "b"]})
    assert not (tmp_path / "x.npz").exists()
    write_npz(tmp_path / "x.npz", {"test": [sketch]}, labels={"test": ["a"]})
    with zipfile.ZipFile(tmp_path / "x.npz") as archive:
        assert sorted(archive.namelist()) == ["class_names.npy", "test.npy", "test_labels.npy"]


def test_data_inspect_takes_the_drawings_the_drawing_commands_take(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    start = tmp_path / "start.json"
    start.write_text(json.dumps({"strokes": [[[10, 10], [60, 12], [62, 70]], [[5, 5], [9, 40]]]}))
    svg = tmp_path / "start.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><circle cx="50" cy="50" r="20"/></svg>')
    for path in (start, svg):
        assert main(["data", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{start}: json drawing, 1 sketch(es)" in out and f"{svg}: svg drawing" in out
    assert "all           1               5" in out  # 5 points, 2 strokes
