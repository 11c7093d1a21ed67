"""Read vector sketches from SVG: every `<path>`, `<polyline>`, `<polygon>`, `<line>` and `<rect>`.

Each subpath becomes one stroke of absolute points in the SVG's user units (y pointing down, as in
Quick, Draw!). `transform` attributes of the shapes and of their groups are applied. Bezier curves
(C/S/Q/T) are flattened into short line segments; elliptical arcs (A) and `<circle>`/`<ellipse>` are
refused. Documents with a DOCTYPE are refused outright: that is where entity declarations live, so
no entity expansion ("billion laughs") or external entity can happen.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET

import numpy as np

from aisketcher.errors import SketchDataError
from aisketcher.formats import require_file

# Bounds on an SVG read as a sketch (long drawings are simplified afterwards): the work of
# parsing grows with both, and no hand-drawn sketch comes near them.
MAX_SVG_BYTES = 2 << 20
MAX_SVG_POINTS = 100_000

_SVG_NS = "{http://www.w3.org/2000/svg}"
# Content that is not drawn where it stands.
_SKIPPED = {"defs", "clipPath", "mask", "marker", "pattern", "symbol", "metadata", "title", "desc"}
_REFUSED = {"circle", "ellipse"}
# A Bezier segment is cut into pieces of about this many user units (within the piece limits).
_FLATTEN_STEP = 2.0
_MIN_PIECES = 4
_MAX_PIECES = 256

_PATH_TOKEN = re.compile(
    r"\s*,?\s*(?:([MmLlHhVvZzCcSsQqTtAa])|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))"
)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TRANSFORM = re.compile(r"\s*,?\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")
_ARG_COUNTS = {"M": 2, "L": 2, "H": 1, "V": 1, "Z": 0, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7}


class _Refused(ValueError):
    pass


class _NoDoctypeBuilder(ET.TreeBuilder):
    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _Refused("DOCTYPE declarations are not allowed (entities could be expanded)")


def _numbers(text: str, what: str) -> list[float]:
    rest = _NUMBER.sub(" ", text).replace(",", " ").strip()
    if rest:
        raise ValueError(f"unexpected {rest[:20]!r} in {what}")
    return [_finite(v) for v in _NUMBER.findall(text)]


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _parse_transform(text: str) -> np.ndarray:
    """An SVG transform list as a 3x3 matrix."""
    out = np.eye(3)
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TRANSFORM.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read transform {text!r}")
        pos = m.end()
        name, args = m.group(1), _numbers(m.group(2), "transform")
        step = np.eye(3)
        if name == "matrix" and len(args) == 6:
            step[:2] = np.array(args).reshape(3, 2).T
        elif name == "translate" and len(args) in (1, 2):
            step[:2, 2] = args if len(args) == 2 else (args[0], 0.0)
        elif name == "scale" and len(args) in (1, 2):
            step[0, 0], step[1, 1] = args if len(args) == 2 else (args[0], args[0])
        elif name == "rotate" and len(args) in (1, 3):
            a = math.radians(args[0])
            cx, cy = args[1:] if len(args) == 3 else (0.0, 0.0)
            rot = np.array(
                [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]
            )
            shift = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]])
            back = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
            step = shift @ rot @ back
        elif name in ("skewX", "skewY") and len(args) == 1:
            step[(0, 1) if name == "skewX" else (1, 0)] = math.tan(math.radians(args[0]))
        else:
            raise ValueError(f"transform {name} with {len(args)} arguments")
        out = out @ step
    return out


def _bezier(control: np.ndarray) -> np.ndarray:
    """Points along a quadratic or cubic Bezier (control points (k, 2)), without the start point."""
    length = float(np.linalg.norm(np.diff(control, axis=0), axis=1).sum())
    # min() with the cap first also turns an infinite or NaN length into the cap.
    pieces = max(_MIN_PIECES, math.ceil(min(_MAX_PIECES * _FLATTEN_STEP, length) / _FLATTEN_STEP))
    t = np.linspace(0.0, 1.0, pieces + 1)[1:, None]
    if len(control) == 3:
        p0, p1, p2 = control
        return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    p0, p1, p2, p3 = control
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _tokens(d: str) -> list[str | float]:
    out: list[str | float] = []
    pos = 0
    d = d.rstrip()
    while pos < len(d):
        m = _PATH_TOKEN.match(d, pos)
        if m is None:
            raise ValueError(f"unexpected {d[pos : pos + 20].strip()!r} in path data")
        out.append(m.group(1) if m.group(1) else _finite(m.group(2)))
        pos = m.end()
    return out


def _path_strokes(d: str) -> list[np.ndarray]:
    """Strokes of one path's `d` attribute: each subpath is a stroke."""
    tokens = _tokens(d)
    strokes: list[list[np.ndarray]] = []
    current = np.zeros(2)
    start = np.zeros(2)
    last_control: np.ndarray | None = None  # for the reflections of S and T
    last_cmd = ""
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if isinstance(token, str):
            cmd = token
            i += 1
        elif last_cmd and last_cmd.upper() != "Z":
            # Repeated coordinates repeat the command; after a moveto they are linetos.
            cmd = {"M": "L", "m": "l"}.get(last_cmd, last_cmd)
        else:
            raise ValueError("numbers without a command (at the start or after Z)")
        up = cmd.upper()
        if up == "A":
            raise ValueError("elliptical arcs (A) are not supported; convert them to lines")
        count = _ARG_COUNTS[up]
        args = tokens[i : i + count]
        if len(args) < count or any(isinstance(a, str) for a in args):
            raise ValueError(f"command {cmd} needs {count} numbers")
        i += count
        vals = np.array(args, dtype=np.float64)
        origin = current if cmd.islower() else np.zeros(2)
        if up == "Z":
            if strokes and not np.array_equal(strokes[-1][-1], start):
                strokes[-1].append(start.copy())
            current = start.copy()
            last_cmd, last_control = cmd, None
            continue
        if up == "M":
            current = origin + vals
            start = current.copy()
            strokes.append([current.copy()])
            last_cmd, last_control = cmd, None
            continue
        if not strokes or last_cmd.upper() == "Z":
            # Drawing right after Z (or with no moveto) starts a new subpath at the current point.
            strokes.append([current.copy()])
        if up == "L":
            new = [origin + vals]
        elif up == "H":
            new = [np.array([vals[0] + (current[0] if cmd.islower() else 0.0), current[1]])]
        elif up == "V":
            new = [np.array([current[0], vals[0] + (current[1] if cmd.islower() else 0.0)])]
        else:
            given = origin + vals.reshape(-1, 2)
            if up in ("S", "T"):
                smooth = last_cmd.upper() in (("C", "S") if up == "S" else ("Q", "T"))
                reflected = 2 * current - last_control if smooth else current
                given = np.vstack([reflected, given])
            control = np.vstack([current, given])
            new = list(_bezier(control))
            last_control = control[-2]
        strokes[-1].extend(new)
        current = new[-1].copy()
        if up in "LHV":
            last_control = None
        last_cmd = cmd
    return [np.array(s) for s in strokes]


def _shape_strokes(tag: str, attrib: dict[str, str]) -> list[np.ndarray]:
    def num(name: str) -> float:
        values = _numbers(attrib.get(name, "0"), name)
        if len(values) != 1:
            raise ValueError(f"<{tag}> attribute {name} is not a number")
        return values[0]

    if tag == "path":
        return _path_strokes(attrib.get("d", ""))
    if tag in ("polyline", "polygon"):
        values = _numbers(attrib.get("points", ""), f"<{tag}> points")
        if len(values) % 2:
            raise ValueError(f"<{tag}> points has an odd number of coordinates")
        if not values:
            return []
        pts = np.array(values).reshape(-1, 2)
        if tag == "polygon" and not np.array_equal(pts[0], pts[-1]):
            pts = np.vstack([pts, pts[:1]])
        return [pts]
    if tag == "line":
        return [np.array([[num("x1"), num("y1")], [num("x2"), num("y2")]])]
    # rect: its outline as one closed stroke (rounded corners are drawn square).
    x, y, w, h = num("x"), num("y"), num("width"), num("height")
    return [np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]])]


def _unstroked(tag: str, attrib: dict[str, str]) -> bool:
    """Shapes that draw no line: stroke="none", or a rect sized in percent (a background, as
    the pictures this tool writes have)."""
    if attrib.get("stroke", "").strip() == "none":
        return True
    return tag == "rect" and any("%" in attrib.get(k, "") for k in ("width", "height"))


def _collect(root: ET.Element) -> list[np.ndarray]:
    """Strokes of all drawable elements in document order, with their transforms applied."""
    out = []
    # An explicit stack, so that deeply nested groups cannot exhaust Python's recursion limit.
    stack = [(root, np.eye(3))]
    points = 0
    while stack:
        element, matrix = stack.pop()
        tag = element.tag.removeprefix(_SVG_NS)
        if tag in _SKIPPED:
            continue
        if tag in _REFUSED:
            raise ValueError(f"<{tag}> is a curve, not supported; convert it to a path of lines")
        if "transform" in element.attrib:
            matrix = matrix @ _parse_transform(element.attrib["transform"])
        if tag in ("path", "polyline", "polygon", "line", "rect") and not _unstroked(
            tag, element.attrib
        ):
            for stroke in _shape_strokes(tag, element.attrib):
                out.append(stroke @ matrix[:2, :2].T + matrix[:2, 2])
                points += len(stroke)
                if points > MAX_SVG_POINTS:
                    raise ValueError(f"more than {MAX_SVG_POINTS} points; not a sketch")
        stack.extend((child, matrix) for child in reversed(element))
    return out


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
    parser = ET.XMLParser(target=_NoDoctypeBuilder())
    try:
        parser.feed(data)
        root = parser.close()
    except _Refused as exc:
        raise SketchDataError(str(exc), source) from None
    except ET.ParseError as exc:
        raise SketchDataError(f"not well-formed XML: {exc}", source) from None
    except (ValueError, LookupError) as exc:  # e.g. an encoding the parser cannot read (UTF-7)
        raise SketchDataError(f"unreadable XML: {exc}", source) from None
    if root.tag.removeprefix(_SVG_NS) != "svg":
        raise SketchDataError(f"root element is <{root.tag}>, not <svg>", source)
    try:
        # Overflow to inf/NaN is reported below as non-finite coordinates, not as NumPy warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            strokes = _collect(root)
    except ValueError as exc:
        raise SketchDataError(str(exc), source) from None
    strokes = [s for s in strokes if len(s)]
    if not strokes:
        raise SketchDataError(
            "no strokes (no <path>, <polyline>, <polygon>, <line> or <rect>)", source
        )
    if not all(np.isfinite(s).all() for s in strokes):
        raise SketchDataError("coordinates are not finite numbers", source)
    return strokes
