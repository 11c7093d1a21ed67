"""SVG input: strokes from paths and polylines, and refusal of what is not an SVG of lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import read_npz
from aisketcher.formats.svg import read_svg
from aisketcher.sketch import stroke3_to_strokes

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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("this is not xml <", "not well-formed XML"),
        ("<svg><path d='M0 0'></svg>", "not well-formed XML"),
        (SVG.format("<text>hello</text>"), "no strokes"),
        ("<html><path d='M0 0 L1 1'/></html>", "not <svg>"),
        (SVG.format('<path d="M0 0 A 5 5 0 0 1 10 0"/>'), "arcs"),
        (SVG.format('<circle cx="5" cy="5" r="3"/>'), "<circle>"),
        (SVG.format('<path d="M0 0 L 1 x"/>'), "unexpected 'x'"),
        (SVG.format('<path d="M0 0 L 1"/>'), "needs 2 numbers"),
        (SVG.format('<path d="0 0 L 1 1"/>'), "without a command"),
        (SVG.format('<polyline points="0 0 1"/>'), "odd number"),
        (SVG.format('<path d="M0 0 L 1e999 0"/>'), "out of range"),
        (SVG.format('<line x1="1e400"/>'), "out of range"),
        (SVG.format('<g transform="shear(2)"><path d="M0 0 L1 1"/></g>'), "transform"),
    ],
)
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
