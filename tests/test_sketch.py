"""The Sketch type and the stroke-3 / stroke-5 / absolute-stroke conversions."""

from __future__ import annotations

import numpy as np
import pytest

from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import read_npz
from aisketcher.sketch import Sketch
from aisketcher.strokes import (
    stroke3_to_stroke5,
    stroke3_to_strokes,
    stroke5_to_stroke3,
    strokes_to_stroke3,
    validate_stroke3,
)

BOX = [[(0, 0), (10, 0), (10, 10)], [(0, 5), (5, 5)]]
BOX_STROKE3 = [[0, 0, 0], [10, 0, 0], [0, 10, 1], [-10, -5, 0], [5, 0, 1]]


@pytest.fixture(scope="module")
def cats(quickdraw_dir) -> list[np.ndarray]:
    return read_npz(quickdraw_dir / "cat.npz", ["test"])["test"][:50]


def test_stroke5_round_trip_on_real_sketches(cats):
    for s3 in cats:
        s5 = stroke3_to_stroke5(s3, 200)
        n = len(s3)
        assert s5.shape == (200, 5)
        assert np.array_equal(s5[:, 2:].sum(axis=1), np.ones(200))
        assert np.array_equal(s5[n:], np.tile([0, 0, 0, 0, 1], (200 - n, 1)))
        assert np.array_equal(s5[:n, 3], s3[:, 2])
        assert np.array_equal(stroke5_to_stroke3(s5), s3)
        # Without padding there is no end-of-sketch row; the conversion back still works.
        assert np.array_equal(stroke5_to_stroke3(stroke3_to_stroke5(s3)), s3)


def test_stroke5_too_short_is_an_error(cats):
    with pytest.raises(SketchDataError, match="more than max_len"):
        stroke3_to_stroke5(cats[0], len(cats[0]) - 1)


def test_stroke5_to_stroke3_cuts_at_the_end_row_and_lifts_the_pen():
    s5 = np.array([[1, 2, 1, 0, 0], [3, 4, 1, 0, 0], [0, 0, 0, 0, 1], [9, 9, 1, 0, 0]])
    assert stroke5_to_stroke3(s5).tolist() == [[1, 2, 0], [3, 4, 1]]
    assert stroke5_to_stroke3(np.tile([0, 0, 0, 0, 1], (3, 1))).shape == (0, 3)


def test_absolute_strokes_round_trip_on_real_sketches(cats):
    for s3 in cats:
        strokes = stroke3_to_strokes(s3)
        assert len(strokes) == int(s3[:, 2].sum())
        assert sum(len(s) for s in strokes) == len(s3)
        # The first offset is the first absolute point.
        assert np.array_equal(strokes[0][0], s3[0, :2])
        assert np.array_equal(strokes_to_stroke3(strokes), s3)


def test_last_stroke_without_a_pen_lift_is_kept():
    s3 = np.array([[1, 1, 1], [2, 0, 0], [0, 2, 0]], dtype=np.float32)
    strokes = stroke3_to_strokes(s3)
    assert [s.tolist() for s in strokes] == [[[1, 1]], [[3, 1], [3, 3]]]


def test_from_strokes():
    sketch = Sketch.from_strokes(BOX, label="box")
    assert sketch.label == "box"
    assert sketch.stroke3.dtype == np.float32
    assert sketch.stroke3.tolist() == BOX_STROKE3
    assert (len(sketch), sketch.num_strokes) == (5, 2)
    assert [s.tolist() for s in sketch.strokes()] == [[list(p) for p in s] for s in BOX]
    assert repr(sketch) == "<Sketch 'box': 5 points, 2 strokes>"


def test_from_stroke5_and_to_stroke5():
    sketch = Sketch.from_strokes(BOX)
    again = Sketch.from_stroke5(sketch.to_stroke5(8))
    assert np.array_equal(again.stroke3, sketch.stroke3)


def test_bounds_scaled_clamped():
    sketch = Sketch.from_strokes([[(0, 0), (10, 0)], [(-5, 5), (5, 20)]], label="l")
    assert sketch.bounds() == (-5.0, 0.0, 10.0, 20.0)

    half = sketch.scaled(0.5)
    assert half.bounds() == (-2.5, 0.0, 5.0, 10.0)
    assert half.label == "l"
    assert np.array_equal(half.stroke3[:, 2], sketch.stroke3[:, 2])
    assert sketch.bounds() == (-5.0, 0.0, 10.0, 20.0)  # the original is unchanged

    big = Sketch(np.array([[5000, -3000, 0], [-1001, 20, 1]]))
    assert big.clamped().stroke3.tolist() == [[1000, -1000, 0], [-1000, 20, 1]]
    assert big.clamped(100).stroke3.tolist() == [[100, -100, 0], [-100, 20, 1]]
    assert big.stroke3[0, 0] == 5000


def test_repr_svg_is_an_svg_document():
    svg = Sketch.from_strokes(BOX)._repr_svg_()
    assert svg.lstrip().startswith(("<svg", "<?xml"))
    assert svg.rstrip().endswith("</svg>")
    assert "<svg" in svg


def test_single_point_sketch():
    sketch = Sketch.from_strokes([[(3, 4)]])
    assert sketch.stroke3.tolist() == [[3, 4, 1]]
    assert (len(sketch), sketch.num_strokes) == (1, 1)
    assert sketch.bounds() == (3.0, 4.0, 3.0, 4.0)
    assert sketch.to_stroke5(2).tolist() == [[3, 4, 0, 1, 0], [0, 0, 0, 0, 1]]
    assert "</svg>" in sketch.to_svg()


def test_zero_length_strokes_and_empty_strokes():
    # A dot drawn as two identical points, an empty stroke (skipped), then a one-point stroke.
    sketch = Sketch.from_strokes([[(5, 5), (5, 5)], [], [(7, 5)]])
    assert sketch.stroke3.tolist() == [[5, 5, 0], [0, 0, 1], [2, 0, 1]]
    assert sketch.num_strokes == 2
    assert sketch.bounds() == (5.0, 5.0, 7.0, 5.0)
    assert "</svg>" in sketch.to_svg()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (np.zeros((0, 3)), "empty sketch"),
        ([[1.0, float("nan"), 0.0]], "NaN or infinite"),
        ([[1.0, float("inf"), 1.0]], "NaN or infinite"),
        ([[1e39, 0.0, 1.0]], "NaN or infinite"),  # overflows float32
        (np.zeros((4, 2)), "shape (N, 3)"),
        (np.zeros(3), "shape (N, 3)"),
        (np.zeros((2, 3, 3)), "shape (N, 3)"),
        ([[1, 2, 2]], "pen state"),
        ([[1, 2, 0.5]], "pen state"),
        ([[1, 2, -1]], "pen state"),
        (np.array([[1, 2, 0]], dtype=object), "must be numeric"),
        ([["1", "2", "0"]], "must be numeric"),
        ([[1 + 2j, 0, 1]], "must be real"),
        ([[1, 2, 0], [3, 4]], "not a numeric array"),
    ],
)
def test_validate_stroke3_errors(data, fragment):
    with pytest.raises(SketchDataError) as info:
        validate_stroke3(data, "drawing.npz")
    assert str(info.value).startswith("drawing.npz: ")
    assert fragment in str(info.value)
    with pytest.raises(SketchDataError) as info:
        Sketch(data)
    assert fragment in str(info.value)


def test_validate_stroke3_accepts_integers_and_bools():
    out = validate_stroke3(np.array([[1, -2, 0], [3, 4, 1]], dtype=np.int16))
    assert out.dtype == np.float32
    assert out.tolist() == [[1, -2, 0], [3, 4, 1]]
    assert validate_stroke3(np.ones((1, 3), dtype=bool)).tolist() == [[1, 1, 1]]


@pytest.mark.parametrize(
    ("strokes", "fragment"),
    [
        ([], "empty sketch"),
        ([[], []], "empty sketch"),
        ([[(0, 0, 0), (1, 1, 1)]], "stroke 0 must be (n, 2) points"),
        ([[(0, 0)], [(1, 1), (2,)]], "stroke 1 is not a list of (x, y) points"),
        ([[[(0, 0)]]], "stroke 0 must be (n, 2) points"),
    ],
)
def test_strokes_to_stroke3_errors(strokes, fragment):
    with pytest.raises(SketchDataError) as info:
        strokes_to_stroke3(strokes)
    assert fragment in str(info.value)


def test_notebook_and_file_use(tmp_path) -> None:
    import io

    from PIL import Image

    s = Sketch.from_strokes([[(0, 0), (10, 0), (10, 10)], [(0, 5), (5, 5)]], label="box")
    with Image.open(io.BytesIO(s._repr_png_())) as image:
        assert image.format == "PNG" and image.size == (200, 200)
    for suffix in (".svg", ".png", ".npz"):
        s.save(tmp_path / f"box{suffix}")
        assert (tmp_path / f"box{suffix}").stat().st_size > 0
