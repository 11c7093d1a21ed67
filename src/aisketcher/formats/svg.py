"""Read vector sketches from SVG: paths and the basic shapes, with their transforms, via svgelements.

Every `<path>`, `<polyline>`, `<polygon>`, `<line>`, `<rect>` (rounded or not), `<circle>` and
`<ellipse>` is drawn, also through `<use>`; each subpath becomes one stroke of absolute points in the
SVG's user units (y pointing down, as in Quick, Draw!). svgelements parses the geometry and applies
the `transform` of the shapes and of their groups (and nested `<svg>` viewports); Bezier curves and
elliptical arcs are flattened into segments of about 2 user units. The root `viewBox` is not applied:
coordinates stay in user units whatever the document's width and height.

Not drawn: shapes with `stroke="none"` (attribute or `style`), `display="none"`, a `<rect>` sized in
percent (the background of the pictures this project writes), and the content of `<defs>`,
`<symbol>`, `<clipPath>`, `<mask>`, `<marker>` and `<pattern>` except through `<use>`. Text, images
and CSS style sheets are ignored.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import xml.etree.ElementTree as ET

import numpy as np
from svgelements import SVG, Arc, Close, CubicBezier, Matrix, Move, QuadraticBezier, Shape

from aisketcher.errors import SketchDataError
from aisketcher.formats import require_file
from aisketcher.formats.svg_document import (
    MAX_SVG_POINTS,
    SVG_NS,
    NoDoctypeBuilder,
    Refused,
    prepare,
)

# Bounds on an SVG read as a sketch (long drawings are simplified afterwards): the work of
# parsing grows with them, and no hand-drawn sketch comes near them.
MAX_SVG_BYTES = 2 << 20
# A curve is cut into pieces of about this many user units (within the piece limits).
_FLATTEN_STEP = 2.0
_MIN_PIECES = 4
_MAX_PIECES = 256


def _pieces(length: float) -> int:
    # min() with the cap first also turns an infinite or NaN length into the cap.
    return max(_MIN_PIECES, math.ceil(min(_MAX_PIECES * _FLATTEN_STEP, length) / _FLATTEN_STEP))


def _stretch(m: Matrix) -> float:
    """The most a transform lengthens a segment: the largest singular value of its linear part."""
    squares = m.a * m.a + m.b * m.b + m.c * m.c + m.d * m.d
    det = m.a * m.d - m.b * m.c
    return math.sqrt((squares + math.sqrt(max(squares * squares - 4 * det * det, 0.0))) / 2)


def _strokes(svg: SVG) -> list[np.ndarray]:
    """Strokes of the drawn shapes in document order: one per subpath, curves flattened."""
    strokes: list[np.ndarray] = []
    total = 0
    for shape in svg.elements():
        if not isinstance(shape, Shape) or shape.values.get("stroke") == "none":
            continue
        # Flattened in the shape's own coordinates, then transformed here: svgelements' arcs
        # come out wrong under a skew, as they assume perpendicular axes (svgelements issue #47).
        m = shape.transform
        stretch = _stretch(m)
        subpaths: list[list[list[float]]] = []
        current: list[list[float]] | None = None  # the subpath being drawn; None after Z
        for segment in shape.segments(transformed=False):
            if isinstance(segment, Move):
                current = [[segment.end.x, segment.end.y]]
                subpaths.append(current)
                total += 1
                continue
            if isinstance(segment, Close):
                start = [segment.end.x, segment.end.y]
                if current is not None and current[-1] != start:
                    # A closed curve (a circle) ends a rounding error away from its start.
                    if np.allclose(current[-1], start, rtol=1e-12, atol=1e-9):
                        current[-1] = start
                    else:
                        current.append(start)
                        total += 1
                current = None
                continue
            if current is None:  # drawing on after Z starts a new subpath where Z ended
                current = [[segment.start.x, segment.start.y]]
                subpaths.append(current)
                total += 1
            if isinstance(segment, (QuadraticBezier, CubicBezier)):
                if isinstance(segment, QuadraticBezier):
                    control = [segment.start, segment.control, segment.end]
                else:
                    control = [segment.start, segment.control1, segment.control2, segment.end]
                # The control polygon is at least as long as the curve.
                length = sum(math.dist(a, b) for a, b in itertools.pairwise(control))
                pieces = _pieces(length * stretch)
            elif isinstance(segment, Arc) and segment.rx and segment.ry and segment.sweep:
                # An elliptical arc is no faster than hypot(rx, ry) per radian of sweep. (With a
                # zero radius it is a straight line, as SVG has it, and a zero sweep draws nothing.)
                pieces = _pieces(math.hypot(segment.rx, segment.ry) * abs(segment.sweep) * stretch)
            else:
                pieces = 1
            total += pieces
            if total > MAX_SVG_POINTS:
                raise Refused(f"more than {MAX_SVG_POINTS} points; not a sketch")
            if pieces == 1:
                current.append([segment.end.x, segment.end.y])
            else:
                t = np.linspace(0.0, 1.0, pieces + 1)[1:]
                current.extend(np.asarray(segment.npoint(t), dtype=np.float64).tolist())
        # SVG's matrix(a b c d e f) maps (x, y) to (a x + c y + e, b x + d y + f).
        linear = np.array([[m.a, m.b], [m.c, m.d]])
        strokes += [np.array(s, dtype=np.float64) @ linear + [m.e, m.f] for s in subpaths]
    return strokes


def read_svg(path_or_text: str | os.PathLike[str] | bytes) -> list[np.ndarray]:
    """Absolute strokes, a list of (n, 2) float arrays, from an SVG file or SVG text.

    A str starting with "<" (or bytes) is SVG text, anything else a file path. Raises
    SketchDataError naming the file for anything that is not an SVG of line strokes.
    """
    if isinstance(path_or_text, bytes) or (
        isinstance(path_or_text, str) and path_or_text.lstrip().startswith("<")
    ):
        source, data = "<svg text>", path_or_text
    else:
        source = str(path_or_text)
        try:
            path = require_file(path_or_text)
            size = path.stat().st_size
            if size > MAX_SVG_BYTES:
                raise SketchDataError(
                    f"{size} bytes, more than a sketch's SVG ({MAX_SVG_BYTES})", source
                )
            data = path.read_bytes()
        except FileNotFoundError:
            raise SketchDataError("no such file", source) from None
        except OSError as exc:
            raise SketchDataError(f"cannot read: {exc.strerror}", source) from None
    parser = ET.XMLParser(target=NoDoctypeBuilder())
    try:
        parser.feed(data)
        root = parser.close()
    except Refused as exc:
        raise SketchDataError(str(exc), source) from None
    except ET.ParseError as exc:
        raise SketchDataError(f"not well-formed XML: {exc}", source) from None
    except (ValueError, LookupError) as exc:  # e.g. an encoding the parser cannot read (UTF-7)
        raise SketchDataError(f"unreadable XML: {exc}", source) from None
    if root.tag.removeprefix(SVG_NS) != "svg":
        raise SketchDataError(f"root element is <{root.tag}>, not <svg>", source)
    try:
        document = prepare(root)
        # Overflow to inf/NaN is reported below as non-finite coordinates, not as NumPy warnings.
        with np.errstate(all="ignore"):
            # 96 user units per inch, as CSS, for lengths given in mm, in, pt...
            svg = SVG.parse(io.BytesIO(document), reify=False, ppi=96.0, on_error="raise")
            strokes = _strokes(svg)
    except Refused as exc:
        raise SketchDataError(str(exc), source) from None
    except Exception as exc:
        # svgelements' own failures, whatever their type: one line, no traceback.
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SketchDataError(f"svgelements cannot read it: {detail}", source) from None
    strokes = [s for s in strokes if len(s)]
    if not strokes:
        raise SketchDataError(
            "no strokes (no stroked <path>, <polyline>, <polygon>, <line>, <rect>, <circle> or"
            " <ellipse>)",
            source,
        )
    if not all(np.isfinite(s).all() for s in strokes):
        raise SketchDataError("coordinates are not finite numbers", source)
    return strokes
