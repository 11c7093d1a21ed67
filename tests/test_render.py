"""Pictures of sketches: SVG documents, PNG images, grids, GIF animations and save_sketches."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aisketcher import Sketch, SketchDataError
from aisketcher import render as render_module
from aisketcher.formats.npz import read_npz
from aisketcher.formats.writer import save_sketches
from aisketcher.render import animate_gif, grid_png, grid_svg, render_png, sketch_to_svg

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def cats(quickdraw_dir: Path) -> list[Sketch]:
    return [Sketch(s, "cat") for s in read_npz(quickdraw_dir / "cat.npz", ["test"])["test"][:5]]


@pytest.fixture
def zigzag() -> Sketch:
    """Two strokes of four and three points, every point adding ink."""
    return Sketch.from_strokes(
        [[(0, 0), (40, 30), (80, 0), (120, 30)], [(0, 90), (60, 60), (120, 90)]]
    )


def path_coordinates(path: ET.Element) -> np.ndarray:
    numbers = path.get("d").replace("M", " ").replace("L", " ").split()
    return np.array(numbers, dtype=float).reshape(-1, 2)


def test_svg_is_well_formed_with_one_path_per_stroke(cats):
    for sketch in cats:
        root = ET.fromstring(sketch_to_svg(sketch, 200))
        assert root.tag == f"{SVG}svg"
        assert (root.get("width"), root.get("height")) == ("200", "200")
        paths = root.findall(f"{SVG}path")
        assert len(paths) == sketch.num_strokes
        points = np.vstack([path_coordinates(p) for p in paths])
        assert points.min() >= 0 and points.max() <= 200
        # Fitted: the longer side spans the size less both margins.
        span = (points.max(axis=0) - points.min(axis=0)).max()
        assert span == pytest.approx(200 * (1 - 2 * render_module.MARGIN), abs=0.02)
    assert sketch.to_svg(size=64, stroke_width=3) == sketch_to_svg(sketch, 64, stroke_width=3)


def test_highlight_splits_the_stroke_at_the_given_point(zigzag):
    root = ET.fromstring(
        sketch_to_svg(zigzag, highlight_from=2, color="black", highlight_color="red")
    )
    paths = root.findall(f"{SVG}path")
    assert [p.get("stroke") for p in paths] == ["black", "red", "red"]
    before, after = (path_coordinates(p) for p in paths[:2])
    # Points 0-1 are the user's; the segment from point 1 into point 2 is the continuation's.
    assert len(before) == 2 and len(after) == 3
    assert np.array_equal(before[-1], after[0])
    image = np.asarray(render_png(zigzag, 128, highlight_from=2, highlight_color="red"))
    red = (image[..., 0] > 200) & (image[..., 1] < 80)
    dark = image.max(axis=2) < 80
    assert red.sum() > 100 and dark.sum() > 20


def test_degenerate_sketches_render_at_the_centre():
    dot = Sketch(np.array([[7, 7, 1]]))
    flat = Sketch(np.array([[3, 3, 0], [0, 0, 0], [0, 0, 1]]))
    for sketch in (dot, flat):
        (path,) = ET.fromstring(sketch_to_svg(sketch, 100)).findall(f"{SVG}path")
        assert np.allclose(path_coordinates(path), 50)
        image = np.asarray(render_png(sketch, 100).convert("L"))
        assert image[50, 50] < 128
        assert (image < 128).sum() < 30


def test_png_has_the_size_and_ink_where_the_sketch_is():
    horizontal = Sketch.from_strokes([[(0, 0), (100, 0)]])
    image = render_png(horizontal, 120, stroke_width=3)
    assert image.size == (120, 120) and image.mode == "RGB"
    gray = np.asarray(image.convert("L"))
    ink_rows = np.flatnonzero((gray < 128).any(axis=1))
    assert ink_rows.min() >= 57 and ink_rows.max() <= 62
    assert (gray[60, 10:110] < 128).all()
    assert (gray[:50] > 250).all()
    # Anti-aliased: the line's edge has grey levels between ink and paper.
    assert ((gray > 30) & (gray < 220)).any()


def test_flat_grid_has_cells_and_captions(cats):
    root = ET.fromstring(grid_svg(cats, labels=list("abcde"), cols=2, cell=100))
    cells = root.findall(f"{SVG}g")
    assert len(cells) == 5
    assert [t.text for t in root.findall(f"{SVG}text")] == list("abcde")
    translations = [c.get("transform") for c in cells]
    assert translations[:3] == ["translate(0 0)", "translate(100 0)", "translate(0 116)"]
    assert root.get("width") == "200"
    assert sum(len(c.findall(f"{SVG}path")) for c in cells) == sum(s.num_strokes for s in cats)
    png = grid_png(cats, labels=list("abcde"), cols=2, cell=100)
    assert png.size == (int(root.get("width")), int(root.get("height")))


def test_one_row_per_class_grid_with_row_labels(cats, zigzag):
    rows = [cats[:3], [zigzag]]
    root = ET.fromstring(grid_svg(rows, row_labels=["cat", "zigzag"], cell=64))
    assert [t.text for t in root.findall(f"{SVG}text")] == ["cat", "zigzag"]
    cells = root.findall(f"{SVG}g")
    assert len(cells) == 4
    label_width = int(cells[0].get("transform").split("(")[1].split()[0])
    assert label_width > 0
    assert int(root.get("width")) == label_width + 3 * 64
    assert root.get("height") == "128"
    png = grid_png(rows, row_labels=["cat", "zigzag"], cell=64)
    assert png.size == (label_width + 3 * 64, 128)
    gray = np.asarray(png.convert("L"))
    assert (gray[:, :label_width] < 128).any()  # the row label's text
    assert (gray[64:, label_width + 64 :] > 250).all()  # the missing cells are blank


def test_grid_rejects_mismatched_labels(cats):
    with pytest.raises(SketchDataError):
        grid_svg(cats, labels=["only one"])
    with pytest.raises(SketchDataError):
        grid_png([cats[:2]], row_labels=["a", "b"])
    with pytest.raises(SketchDataError):
        grid_svg([])


def test_gif_draws_the_sketch_in_several_frames(zigzag, tmp_path):
    path = tmp_path / "draw.gif"
    animate_gif(zigzag, path, size=64, frame_ms=30, hold_ms=900)
    with Image.open(path) as gif:
        assert gif.n_frames == len(zigzag)
        gif.seek(0)
        first = np.asarray(gif.convert("L"))
        assert gif.info["duration"] == 30
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("L"))
        assert gif.info["duration"] == 900
    assert (first < 128).sum() < (last < 128).sum()
    assert np.array_equal(last < 128, np.asarray(render_png(zigzag, 64).convert("L")) < 128)


def test_gif_frames_are_capped(cats, tmp_path):
    long_sketch = max(cats, key=len)
    animate_gif(long_sketch, tmp_path / "a.gif", size=32, max_frames=6)
    with Image.open(tmp_path / "a.gif") as gif:
        assert 2 <= gif.n_frames <= 6


@pytest.mark.parametrize("ext", [".svg", ".png"])
def test_save_one_or_a_grid(cats, tmp_path, ext):
    save_sketches(cats[0], tmp_path / f"one{ext}", size=96)
    save_sketches(cats, tmp_path / f"grid{ext}", labels=[f"c{i}" for i in range(5)], cols=5)
    if ext == ".svg":
        one = ET.parse(tmp_path / "one.svg").getroot()
        grid = ET.parse(tmp_path / "grid.svg").getroot()
        assert len(one.findall(f"{SVG}path")) == cats[0].num_strokes
        assert len(grid.findall(f"{SVG}g")) == 5
    else:
        with Image.open(tmp_path / "one.png") as one_png, Image.open(tmp_path / "grid.png") as grid:
            assert one_png.size == (96, 96) and grid.width == 5 * 128
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"grid{ext}", f"one{ext}"]


def test_save_gif_and_npz(cats, tmp_path):
    save_sketches(cats[1], tmp_path / "a.GIF", size=48)
    with Image.open(tmp_path / "a.GIF") as gif:
        assert gif.n_frames > 1
    save_sketches(cats, tmp_path / "out.npz")
    back = read_npz(tmp_path / "out.npz", ["test"])["test"]
    assert len(back) == len(cats)
    assert all(np.array_equal(a, s.stroke3) for a, s in zip(back, cats, strict=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.GIF", "out.npz"]


def test_save_ndjson(cats, tmp_path):
    pytest.importorskip("aisketcher.formats.ndjson")
    path = tmp_path / "cats.ndjson"
    save_sketches(cats, path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(cats)
    assert {line["word"] for line in lines} == {"cat"}
    # Google's ndjson has the word on every line: a file of several classes is valid.
    save_sketches(cats[:2], path, labels=["cat", "dog"])
    assert [json.loads(line)["word"] for line in path.read_text().splitlines()] == ["cat", "dog"]


def test_save_rejects_bad_requests_and_keeps_the_old_file(cats, tmp_path, monkeypatch):
    with pytest.raises(SketchDataError, match=r"\.jpg"):
        save_sketches(cats, tmp_path / "x.jpg")
    with pytest.raises(SketchDataError, match="one sketch"):
        save_sketches(cats, tmp_path / "x.gif")
    with pytest.raises(SketchDataError, match="no sketches"):
        save_sketches([], tmp_path / "x.svg")
    target = tmp_path / "keep.svg"
    target.write_text("old")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(render_module, "sketch_to_svg", broken)
    with pytest.raises(RuntimeError):
        save_sketches(cats[0], target)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.svg"]
