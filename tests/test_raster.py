"""Rasters (the paper's X_r): geometry, invariances, batching and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisketcher import Sketch, SketchDataError
from aisketcher import raster as raster_module
from aisketcher.formats.npz import read_npz
from aisketcher.raster import (
    MARGIN,
    rasterize,
    rasterize_many,
)

SIZE = 128


@pytest.fixture(scope="module")
def cats(quickdraw_dir: Path) -> list[np.ndarray]:
    return read_npz(quickdraw_dir / "cat.npz", ["test"])["test"][:40]


def line(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0, 0], [x1 - x0, y1 - y0, 1]], dtype=np.float32)


def test_real_sketches_give_binary_square_rasters_inside_the_margin(cats):
    rasters = rasterize_many(cats)
    assert rasters.shape == (len(cats), SIZE, SIZE)
    assert rasters.dtype == np.uint8
    assert set(np.unique(rasters)) == {0, 1}
    assert (rasters.sum(axis=(1, 2)) > 50).all()
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[MARGIN : SIZE - MARGIN, MARGIN : SIZE - MARGIN] = True
    assert not rasters[:, ~inside].any()
    # Fitting touches the margin on the longer side of every sketch.
    rows, cols = rasters.any(axis=2), rasters.any(axis=1)
    touches = rows[:, MARGIN] | cols[:, MARGIN]
    assert touches.all()


def test_horizontal_line_lights_the_middle_row_edge_to_edge():
    one = rasterize(line(10, 50, 90, 50), line_width=1)
    assert np.flatnonzero(one.any(axis=1)).tolist() == [SIZE // 2]
    assert np.flatnonzero(one[SIZE // 2]).tolist() == list(range(MARGIN, SIZE - MARGIN))
    # The default two-pixel brush straddles the centre line.
    two = rasterize(line(10, 50, 90, 50))
    assert np.flatnonzero(two.any(axis=1)).tolist() == [SIZE // 2 - 1, SIZE // 2]
    assert np.array_equal(rasterize(line(50, 10, 50, 90)), two.T)


def test_diagonal_line_has_no_gaps_and_pen_up_moves_are_not_drawn():
    diagonal = rasterize(line(0, 0, 100, 37), line_width=1)
    assert diagonal[:, MARGIN : SIZE - MARGIN].any(axis=0).all()
    # Two vertical strokes with a pen-up move between them: the columns between stay empty.
    two_strokes = np.array([[0, 0, 0], [0, 100, 1], [100, -100, 0], [0, 100, 1]], dtype=np.float32)
    image = rasterize(two_strokes)
    lit_columns = np.flatnonzero(image.any(axis=0)).tolist()
    assert lit_columns == [MARGIN, MARGIN + 1, SIZE - MARGIN - 2, SIZE - MARGIN - 1]


def test_scaled_and_translated_copies_give_the_same_raster(cats):
    sketch = cats[0].astype(np.float32)
    for factor in (2.0, 0.5, 8.0):
        copy = sketch.copy()
        copy[:, :2] *= factor
        assert np.array_equal(rasterize(copy), rasterize(sketch))
    moved = sketch.copy()
    moved[0, :2] += (300, -70)
    assert np.array_equal(rasterize(moved), rasterize(sketch))


def test_batches_match_single_rasters_across_chunk_boundaries(cats):
    # More than one internal chunk, with sketches of every length and both input kinds.
    sketches = [cats[i % len(cats)] for i in range(raster_module._CHUNK + 9)]
    sketches[3] = Sketch(sketches[3])
    batch = rasterize_many(sketches)
    for i in (0, 3, raster_module._CHUNK - 1, raster_module._CHUNK, len(sketches) - 1):
        assert np.array_equal(batch[i], rasterize(sketches[i]))


def test_degenerate_sketches_are_centred():
    point = rasterize(np.array([[5, 5, 1]]))
    assert np.argwhere(point).tolist() == [[63, 63], [63, 64], [64, 63], [64, 64]]
    same_spot = rasterize(np.array([[5, 5, 0], [0, 0, 0], [0, 0, 1]]), line_width=1)
    assert np.argwhere(same_spot).tolist() == [[64, 64]]
    assert rasterize_many([]).shape == (0, SIZE, SIZE)
    assert rasterize(line(0, 0, 9, 0), size=32, margin=1, line_width=3).shape == (32, 32)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 3)), np.zeros((4, 2)), np.array([[1, np.nan, 1]]), np.array([["a", "b", "c"]])],
)
def test_bad_sketches_raise_sketch_data_error(bad):
    with pytest.raises(SketchDataError):
        rasterize_many([line(0, 0, 1, 1), bad])


def test_bad_geometry_raises():
    with pytest.raises(SketchDataError):
        rasterize(line(0, 0, 1, 1), size=8, margin=4)
