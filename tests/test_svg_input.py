"""SVG input: strokes from paths and the basic shapes with their transforms, and refusal of what
is not an SVG of lines."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import numpy as np
import pytest

from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import read_npz
from aisketcher.formats.svg import read_svg
from aisketcher.render import grid_svg, sketch_to_svg
from aisketcher.strokes import stroke3_to_strokes

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256">{}</svg>'


def _path(strokes: list[np.ndarray]) -> str:
    d = " ".join("M " + " L ".join(f"{x:g},{y:g}" for x, y in stroke) for stroke in strokes)
    return f'<path d="{d}" fill="none" stroke="black"/>'


def test_round_trip_real_sketches(quickdraw_dir: Path, tmp_path: Path) -> None:
    sketches = read_npz(quickdraw_dir / "bicycle.npz", splits=["test"])["test"][:20]
    for i, s3 in enumerate(sketches):
        strokes = stroke3_to_strokes(s3)
        path = tmp_path / f"{i}.svg"
        path.write_text(SVG.format(_path(strokes)))
        got = read_svg(path)
        assert len(got) == len(strokes)
        assert all(np.array_equal(a, b) for a, b in zip(got, strokes, strict=True))


def test_commands_relative_implicit_and_closing() -> None:
    text = SVG.format(
        '<path d="M10 10 20 10 l0,10 h-5 v-5 Z m1 1 L2-2.5e1 l.5.5"/>'
        '<polyline points="0,0 5,5 10,0"/><polygon points="1 1 2 2 3 1"/>'
        '<line x1="0" y1="1" x2="3" y2="4"/><rect x="1" y="2" width="3" height="4"/>'
    )
    got = [s.tolist() for s in read_svg(text)]
    assert got == [
        [[10, 10], [20, 10], [20, 20], [15, 20], [15, 15], [10, 10]],
        [[11, 11], [2, -25], [2.5, -24.5]],
        [[0, 0], [5, 5], [10, 0]],
        [[1, 1], [2, 2], [3, 1], [1, 1]],
        [[0, 1], [3, 4]],
        [[1, 2], [4, 2], [4, 6], [1, 6], [1, 2]],
    ]


def test_transforms_and_skipped_definitions() -> None:
    text = SVG.format(
        '<defs><path d="M0 0 L100 100"/></defs>'
        '<g transform="translate(10, 20) scale(2)"><path d="M1 1 L2 1" transform="rotate(90)"/></g>'
    )
    (stroke,) = read_svg(text.encode())
    assert np.allclose(stroke, [[8, 22], [8, 24]])


def test_curves_are_flattened_onto_the_curve() -> None:
    (stroke,) = read_svg(SVG.format('<path d="M0 0 Q 10 20 20 0 T 40 0"/>'))
    assert stroke[0].tolist() == [0, 0] and stroke[-1].tolist() == [40, 0]
    assert [0, 0] in stroke.tolist() and [20, 0] in stroke.tolist()
    first = stroke[stroke[:, 0] <= 20]
    assert np.isclose(first[:, 1].max(), 10.0, atol=0.1)  # the quadratic's apex
    second = stroke[stroke[:, 0] >= 20]
    assert np.isclose(second[:, 1].min(), -10.0, atol=0.1)  # T reflects the control point
    (cubic,) = read_svg(SVG.format('<path d="M0 0 c 0 10 10 10 10 0 s 10 -10 10 0"/>'))
    assert cubic[-1].tolist() == [20, 0] and len(cubic) > 8


# SVG files that are not sketches, and a fragment of the refusal (which names the file).
BAD_SVGS: list[tuple[str, str]] = [
    ("this is not xml <", "not well-formed XML"),
    ("<svg><path d='M0 0'></svg>", "not well-formed XML"),
    (SVG.format("<text>hello</text>"), "no strokes"),
    ("<html><path d='M0 0 L1 1'/></html>", "not <svg>"),
    (SVG.format('<path d="M0 0 L 1 x"/>'), "unexpected 'x'"),
    (SVG.format('<path d="M0 0 L 1"/>'), "needs 2 numbers"),
    (SVG.format('<path d="0 0 L 1 1"/>'), "without a command"),
    (SVG.format('<polyline points="0 0 1"/>'), "odd number"),
    (SVG.format('<path d="M0 0 L 1e999 0"/>'), "out of range"),
    (SVG.format('<line x1="1e400"/>'), "out of range"),
    (SVG.format('<g transform="shear(2)"><path d="M0 0 L1 1"/></g>'), "transform"),
    (SVG.format('<path d="L 1 1"/>'), "must start with a moveto"),
    (SVG.format('<circle r="big"/>'), "not a length"),
    (SVG.format('<g id="a"><use href="#a"/></g>'), "refers to an element that contains it"),
    (SVG.format("<g>" * 120 + '<path d="M0 0 L1 1"/>' + "</g>" * 120), "nested more than"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SVGS)
def test_bad_svg_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.svg"
    path.write_text(text)
    with pytest.raises(SketchDataError, match=message) as info:
        read_svg(path)
    assert str(info.value).startswith(f"{path}: ")


def test_entity_bomb_and_external_entities_are_refused(tmp_path: Path) -> None:
    levels = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10))
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY e0 "0 0 ">{levels}]>'
        '<svg xmlns="http://www.w3.org/2000/svg"><path d="M &e9;"/></svg>'
    )
    path = tmp_path / "bomb.svg"
    path.write_text(bomb)
    with pytest.raises(SketchDataError, match="DOCTYPE") as info:  # refused, never expanded
        read_svg(path)
    assert str(path) in str(info.value)
    external = (
        '<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L1 1"/><text>&x;</text></svg>'
    )
    with pytest.raises(SketchDataError, match="DOCTYPE"):
        read_svg(external)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SketchDataError, match="no such file"):
        read_svg(tmp_path / "none.svg")


def test_an_svg_too_big_for_a_sketch_is_refused_before_parsing(tmp_path) -> None:
    path = tmp_path / "huge.svg"
    points = " ".join(f"L{i % 500} {i % 300}" for i in range(400_000))
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 {points}"/></svg>')
    with pytest.raises(SketchDataError, match="more than a sketch's SVG"):
        read_svg(path)


# The basic shapes, arcs and transforms. Every expected value below is worked out by hand from the
# SVG specification (shape outlines, arc endpoint parameterisation, transform matrices), not taken
# from the reader's output.


def _closed(stroke: np.ndarray) -> bool:
    return bool(np.allclose(stroke[0], stroke[-1]))


def _max_step(stroke: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(stroke, axis=0), axis=1).max())


def test_circle_points_lie_on_the_circle_all_the_way_round() -> None:
    (stroke,) = read_svg(SVG.format('<circle cx="50" cy="40" r="10"/>'))
    offset = stroke - [50, 40]
    assert np.allclose(np.hypot(offset[:, 0], offset[:, 1]), 10, atol=1e-9)
    assert _closed(stroke)
    # All the way round: the angles leave no gap wider than the step of about 2 units allows.
    angles = np.sort(np.arctan2(offset[:, 1], offset[:, 0]))
    gaps = np.diff(np.concatenate([angles, [angles[0] + 2 * math.pi]]))
    assert gaps.max() < 0.35  # radians: 3.5 units of arc on a radius of 10
    assert _max_step(stroke) < 3.5 and len(stroke) < 100


def test_ellipse_points_satisfy_its_equation_and_reach_its_extremes() -> None:
    (stroke,) = read_svg(SVG.format('<ellipse cx="-5" cy="3" rx="20" ry="5"/>'))
    x, y = (stroke[:, 0] + 5) / 20, (stroke[:, 1] - 3) / 5
    assert np.allclose(x**2 + y**2, 1, atol=1e-9)
    assert _closed(stroke)
    assert np.allclose([stroke[:, 0].min(), stroke[:, 0].max()], [-25, 15], atol=1e-9)
    assert np.allclose([stroke[:, 1].min(), stroke[:, 1].max()], [-2, 8], atol=1e-9)


def test_rects_plain_rounded_and_in_units() -> None:
    plain, rounded, mm = read_svg(
        SVG.format(
            '<rect x="1" y="2" width="3" height="4"/>'
            '<rect x="10" y="20" width="40" height="30" rx="5"/>'  # ry defaults to rx
            '<rect width="25.4mm" height="1in"/>'  # 96 user units per inch
        )
    )
    assert plain.tolist() == [[1, 2], [4, 2], [4, 6], [1, 6], [1, 2]]
    assert np.allclose(mm, [[0, 0], [96, 0], [96, 96], [0, 96], [0, 0]])
    # Rounded: straight edges between the tangent points, quarter circles of radius 5 at the
    # corners, centred 5 units inside them.
    assert _closed(rounded)
    assert np.allclose(rounded.min(axis=0), [10, 20]) and np.allclose(rounded.max(axis=0), [50, 50])
    tangents = [[15, 20], [45, 20], [50, 25], [50, 45], [45, 50], [15, 50], [10, 45], [10, 25]]
    for point in tangents:
        assert np.isclose(np.linalg.norm(rounded - point, axis=1).min(), 0, atol=1e-9), point
    centres = np.array([[15, 25], [45, 25], [45, 45], [15, 45]])
    for x, y in rounded:
        on_edge = (15 <= x <= 45 and y in (20, 50)) or (25 <= y <= 45 and x in (10, 50))
        on_corner = np.isclose(np.linalg.norm(centres - [x, y], axis=1), 5, atol=1e-9).any()
        assert on_edge or on_corner, (x, y)
    square_corners = [[10, 20], [50, 20], [50, 50], [10, 50]]
    assert not any(np.allclose(p, c) for p in rounded for c in square_corners)


def test_lines_polylines_and_polygons_in_units_and_through_use() -> None:
    text = SVG.format(
        '<line x1="1in" y1="0" x2="0.5in" y2="12pt"/>'  # 1in = 96, 12pt = 16 user units
        '<defs><polygon id="tri" points="0,0 4,0 4,2"/><polyline id="zig" points="0,0 1,1 2,0"/>'
        "</defs>"
        # x and y of a <use> translate after its own transform: scale(2) then translate(5, 7).
        '<use href="#tri" x="5" y="7" transform="scale(2)"/>'
        '<use xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="#zig" y="10"/>'
    )
    line, tri, zig = read_svg(text)
    assert np.allclose(line, [[96, 0], [48, 16]])
    assert np.allclose(tri, [[10, 14], [18, 14], [18, 18], [10, 14]])
    assert np.allclose(zig, [[0, 10], [1, 11], [2, 10]])


@pytest.mark.parametrize(
    "d",
    [
        "M 0 0 A 10 10 0 0 1 20 0",
        "M 0 0 A 1 1 0 0 1 20 0",  # radii too small are scaled up to just reach: 10
        "m 0 0 a 10 10 0 1 1 20 0",  # large-arc flag: with a half circle, the same arc
    ],
)
def test_arcs_follow_the_circle_through_the_endpoints(d: str) -> None:
    (stroke,) = read_svg(SVG.format(f'<path d="{d}"/>'))
    assert stroke[0].tolist() == [0, 0] and np.allclose(stroke[-1], [20, 0])
    assert np.allclose(np.linalg.norm(stroke - [10, 0], axis=1), 10, atol=1e-9)
    # Sweep flag 1 turns through increasing angles, which with y down is clockwise on the page:
    # from (0, 0) over the top, y = -10, to (20, 0).
    assert (stroke[:, 1] <= 1e-9).all() and np.isclose(stroke[:, 1].min(), -10, atol=0.2)
    assert _max_step(stroke) < 3.5


def test_arcs_with_both_flags_take_the_short_or_long_way_round() -> None:
    # From (0, 0) to (10, 10) on circles of radius 10: the centres are (10, 0) and (0, 10).
    short, long = read_svg(
        SVG.format('<path d="M 0 0 A 10 10 0 0 0 10 10"/><path d="M 0 0 A 10 10 0 1 0 10 10"/>')
    )
    # sweep 0, small arc: anticlockwise on the page, about the centre (10, 0): a quarter circle.
    assert np.allclose(np.linalg.norm(short - [10, 0], axis=1), 10, atol=1e-9)
    assert (short[:, 0] <= 10 + 1e-9).all() and (short[:, 1] >= -1e-9).all()
    # sweep 0, large arc: about the centre (0, 10), three quarters round through (-10, 10), (0, 20).
    assert np.allclose(np.linalg.norm(long - [0, 10], axis=1), 10, atol=1e-9)
    assert np.isclose(long[:, 0].min(), -10, atol=0.2) and np.isclose(
        long[:, 1].max(), 20, atol=0.2
    )


def test_nested_group_transforms_apply_to_every_shape() -> None:
    text = SVG.format(
        '<g transform="translate(100 50)"><g transform="rotate(90)"><g transform="scale(2, 3)">'
        '<polygon points="0,0 4,0 4,2"/>'
        '<circle cx="0" cy="0" r="5" transform="matrix(1 0 0.5 1 10 0)"/>'
        "</g></g></g>"
    )
    polygon, circle = read_svg(text)

    # The outer transforms by hand: scale (x, y) -> (2x, 3y); rotate(90) (x, y) -> (-y, x);
    # translate adds (100, 50). Together (x, y) -> (100 - 3y, 50 + 2x).
    def outer(x: float, y: float) -> list[float]:
        return [100 - 3 * y, 50 + 2 * x]

    assert np.allclose(polygon, [outer(0, 0), outer(4, 0), outer(4, 2), outer(0, 0)])
    # The circle's own matrix (a skew and a shift) is (x, y) -> (x + 0.5 y + 10, y). Undo both by
    # hand: the outer map inverts to (x, y) -> ((y - 50) / 2, (100 - x) / 3), the skew to
    # (x, y) -> (x - 0.5 y - 10, y); the points must come back onto the circle of radius 5.
    x, y = (circle[:, 1] - 50) / 2, (100 - circle[:, 0]) / 3
    x = x - 0.5 * y - 10
    assert np.allclose(np.hypot(x, y), 5, atol=1e-9)
    angles = np.sort(np.arctan2(y, x))
    assert np.diff(np.concatenate([angles, [angles[0] + 2 * math.pi]])).max() < 0.5
    assert _closed(circle)


def test_svg_units_stay_user_units_whatever_the_viewbox() -> None:
    text = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="512px" height="10cm" viewBox="-10 -20 100 50">'
        '<line x1="0" y1="0" x2="10" y2="5"/><rect x="0" y="0" width="50%" height="10%"/></svg>'
    )
    assert [s.tolist() for s in read_svg(text)] == [[[0, 0], [10, 5]]]
    # A nested <svg> maps its viewBox onto its viewport: 2 units onto 20, placed at (10, 10).
    text = SVG.format(
        '<svg x="10" y="10" width="20" height="20" viewBox="0 0 2 2"><path d="M0 0 L2 1"/></svg>'
    )
    assert [s.tolist() for s in read_svg(text)] == [[[10, 10], [30, 20]]]


def test_unstroked_hidden_and_non_drawn_content_is_skipped() -> None:
    text = SVG.format(
        '<rect width="100%" height="100%" fill="white"/>'
        '<path d="M0 0 L1 1" style="fill: red; stroke : none"/>'
        '<g stroke="none"><line x1="0" y1="0" x2="5" y2="5"/>'
        '<line x1="1" y1="1" x2="2" y2="2" stroke="blue"/></g>'
        '<circle r="3" display="none"/><g style="display:none"><circle r="4"/></g>'
        '<symbol id="s"><line x1="7" y1="7" x2="8" y2="8"/></symbol>'
        '<mask id="m"><line x1="9" y1="9" x2="10" y2="10"/></mask>'
        '<clipPath><circle r="5"/></clipPath><marker><circle r="6"/></marker>'
        '<title>a title</title><text x="3" y="3">words</text>'
        '<use href="#s"/>'
    )
    assert [s.tolist() for s in read_svg(text)] == [[[1, 1], [2, 2]], [[7, 7], [8, 8]]]


def _d_points(d: str) -> np.ndarray:
    return np.array([float(v) for v in re.findall(r"-?[\d.]+", d)]).reshape(-1, 2)


def _same_strokes(got: list[np.ndarray], expected: list[np.ndarray]) -> bool:
    return len(got) == len(expected) and all(
        np.allclose(a, b) for a, b in zip(got, expected, strict=True)
    )


def test_pictures_this_project_writes_read_back_as_their_strokes(quickdraw_dir: Path) -> None:
    sketches = read_npz(quickdraw_dir / "cat.npz", splits=["test"])["test"][:6]
    # The expected strokes are the numbers of the written paths' d attributes (the white
    # background <rect> and the captions are not strokes).
    one = sketch_to_svg(sketches[0], 256)
    assert _same_strokes(read_svg(one), [_d_points(d) for d in re.findall(r' d="([^"]+)"', one)])
    # A grid: each cell's paths inside <g transform="translate(x y)">.
    grid = grid_svg(list(sketches), labels=[f"cat {i}" for i in range(6)], cols=3)
    cells = re.findall(r'<g transform="translate\(([\d.]+) ([\d.]+)\)">(.*?)</g>', grid, re.S)
    expected = [
        _d_points(d) + np.array([float(x), float(y)])
        for x, y, body in cells
        for d in re.findall(r' d="([^"]+)"', body)
    ]
    assert len(cells) == 6 and _same_strokes(read_svg(grid), expected)


def test_use_bombs_and_crafted_colours_are_refused_or_read_quickly() -> None:
    levels = "".join(
        f'<g id="u{i}">' + f'<use href="#u{i - 1}"/>' * 10 + "</g>" for i in range(1, 10)
    )
    bomb = SVG.format(f'<defs><path id="u0" d="M0 0 L1 1"/>{levels}</defs><use href="#u9"/>')
    start = time.perf_counter()
    with pytest.raises(SketchDataError, match=r"more than \d+ elements"):
        read_svg(bomb)  # a billion paths if expanded
    # svgelements' colour patterns backtrack for minutes on this; the reader never hands it over.
    colour = "rgba(" + ",".join(["1" * 60] * 4) + ")"
    text = SVG.format(f'<path d="M0 0 L1 1" stroke="{colour}" fill="{colour}"/>')
    assert [s.tolist() for s in read_svg(text)] == [[[0, 0], [1, 1]]]
    assert time.perf_counter() - start < 5
