"""The copy of an SVG document that svgelements gets (formats/svg.py reads the strokes from it).

A document with a DOCTYPE is refused before anything parses it (that is where entity
declarations live, so no entity expansion or external entity can happen). svgelements skips what it
cannot read and some of its regular expressions take seconds on a crafted colour of 200 characters,
so it only sees a copy of the document checked here: the geometry attributes, validated (malformed
path data, points, lengths or transforms are refused with the reason), the stroke and display as
"none" or not, and nothing else. The file size, the number of elements (with `<use>` expanded, and
a `<use>` that contains itself is refused), their depth, the inherited attribute text svgelements
reads with each, and the number of points are bounded.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

MAX_SVG_POINTS = 100_000  # more points than any hand-drawn sketch
# svgelements takes some 20-250 microseconds per element (a circle the most; <use> is expanded in
# place), and recurses once per nesting level.
_MAX_ELEMENTS = 5_000
_MAX_DEPTH = 100
# Characters of attributes svgelements reads with every element, its own and inherited ones, summed
# over the document with <use> expanded (it takes about a microsecond for each): a long transform
# on a group of many shapes multiplies them. A 2 MiB file of plain paths is about 2 million.
_MAX_WORK = 4_000_000

SVG_NS = "{http://www.w3.org/2000/svg}"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
# Elements whose content is drawn in place (svgelements gets <g> for all but <svg>, <defs>, <use>).
_CONTAINERS = {"svg", "g", "a", "switch", "defs", "use"}
# Content drawn only through <use>: kept inside a <defs>.
_HIDDEN = {"symbol", "clipPath", "mask", "marker", "pattern"}
# The length attributes svgelements gets, by element; any other element (text, image, style,
# metadata, title, desc, foreign elements) is dropped with its content.
_LENGTHS: dict[str, tuple[str, ...]] = {
    "path": (),
    "polyline": (),
    "polygon": (),
    "line": ("x1", "y1", "x2", "y2"),
    "rect": ("x", "y", "width", "height", "rx", "ry"),
    "circle": ("cx", "cy", "r"),
    "ellipse": ("cx", "cy", "rx", "ry"),
    "svg": ("x", "y", "width", "height"),
    "use": ("x", "y"),
}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_LENGTH = re.compile(rf"\s*({_NUMBER.pattern})(?:px|pt|pc|mm|cm|in|%)?\s*")
_COMMAND = re.compile(r"[MmLlHhVvCcSsQqTtAaZz]")
_FLAG = re.compile(r"[01]")
_SEPARATOR = re.compile(r"\s*,?\s*")
# Argument kinds of each path command: n a number, f an arc flag (which needs no separator).
_PATH_ARGS = {
    "M": "nn",
    "L": "nn",
    "H": "n",
    "V": "n",
    "C": "nnnnnn",
    "S": "nnnn",
    "Q": "nnnn",
    "T": "nn",
    "A": "nnnffnn",
    "Z": "",
}
_TRANSFORM = re.compile(r"\s*,?\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")
_TRANSFORM_ARGS = {
    "matrix": (6,),
    "translate": (1, 2),
    "scale": (1, 2),
    "rotate": (1, 3),
    "skewX": (1,),
    "skewY": (1,),
}


class Refused(ValueError):
    """A problem with the document, worded for the user."""


class NoDoctypeBuilder(ET.TreeBuilder):
    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise Refused("DOCTYPE declarations are not allowed (entities could be expanded)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused(f"number out of range: {text}")
    return value


def _numbers(text: str, what: str) -> list[float]:
    rest = _NUMBER.sub(" ", text).replace(",", " ").strip()
    if rest:
        raise Refused(f"unexpected {rest[:20]!r} in {what}")
    return [_finite(v) for v in _NUMBER.findall(text)]


def _path_data(d: str) -> tuple[str, int]:
    """Path data checked and rewritten as plain tokens, which svgelements reads exactly (it stops
    silently at the first thing it does not understand, and misreads numbers such as "10."), and
    the number of its drawing commands (each draws at least a point)."""
    out: list[str] = []
    commands = 0
    cmd = ""
    pos = _SEPARATOR.match(d).end()
    while pos < len(d):
        m = _COMMAND.match(d, pos)
        if m is not None:
            if not cmd and m.group() not in "Mm":
                raise Refused("path data must start with a moveto (M or m)")
            cmd, pos = m.group(), m.end()
            out.append(cmd)
        elif cmd in ("", "Z", "z"):
            if _NUMBER.match(d, pos) is None:
                raise Refused(f"unexpected {d[pos : pos + 20]!r} in path data")
            raise Refused("numbers without a command (at the start or after Z)")
        # Otherwise the numbers repeat the last command (a lineto after a moveto).
        kinds = _PATH_ARGS[cmd.upper()]
        commands += bool(kinds)
        for kind in kinds:
            pos = _SEPARATOR.match(d, pos).end()
            m = (_FLAG if kind == "f" else _NUMBER).match(d, pos)
            if m is None:
                if pos < len(d) and _COMMAND.match(d, pos) is None:
                    raise Refused(f"unexpected {d[pos : pos + 20]!r} in path data")
                plural = "s" if len(kinds) > 1 else ""
                raise Refused(f"command {cmd} needs {len(kinds)} number{plural}")
            out.append(m.group() if kind == "f" else repr(_finite(m.group())))
            pos = m.end()
        pos = _SEPARATOR.match(d, pos).end()
    return " ".join(out), commands


def _check_transform(text: str) -> None:
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TRANSFORM.match(text, pos)
        if m is None:
            raise Refused(f"cannot read transform {text[:40]!r}")
        pos = m.end()
        name, args = m.group(1), _numbers(m.group(2), "transform")
        if len(args) not in _TRANSFORM_ARGS[name]:
            raise Refused(f"transform {name} with {len(args)} arguments")


def _viewbox(text: str) -> list[float] | None:
    """A viewBox's four numbers; None for one that is malformed or empty (ignored, as browsers do)."""
    try:
        box = _numbers(text, "viewBox")
    except Refused:
        return None
    return box if len(box) == 4 and box[2] > 0 and box[3] > 0 else None


def _clean_attributes(element: ET.Element, tag: str) -> tuple[dict[str, str], int]:
    """The attributes svgelements gets for one element, each one checked, and the least number of
    points the element draws (counted for paths and polylines)."""
    attrib = element.attrib
    # Declarations split as svgelements splits them; they override the attributes.
    style = {}
    for declaration in attrib.get("style", "").split(";"):
        parts = declaration.split(":")
        if len(parts) == 2:
            style[parts[0].strip()] = parts[1].strip()
    out = {}
    points = 0
    if "id" in attrib:
        out["id"] = attrib["id"]
    if "transform" in attrib:
        _check_transform(attrib["transform"])
        out["transform"] = attrib["transform"]
    # Only whether a shape is stroked matters, not the colour (svgelements inherits it).
    stroke = style.get("stroke", attrib.get("stroke", "inherit")).strip().lower()
    if stroke != "inherit":
        out["stroke"] = "none" if stroke == "none" else "black"
    if style.get("display", attrib.get("display", "")).strip().lower() == "none":
        out["display"] = "none"
    for name in _LENGTHS.get(tag, ()):
        if name in attrib:
            m = _LENGTH.fullmatch(attrib[name])
            if m is None:
                raise Refused(f"<{tag}> attribute {name} is not a length: {attrib[name][:20]!r}")
            _finite(m.group(1))
            out[name] = attrib[name]
    if tag == "path":
        out["d"], points = _path_data(attrib.get("d", ""))
    elif tag in ("polyline", "polygon"):
        values = _numbers(attrib.get("points", ""), f"<{tag}> points")
        if len(values) % 2:
            raise Refused(f"<{tag}> points has an odd number of coordinates")
        points = len(values) // 2
        out["points"] = " ".join(
            f"{x!r},{y!r}" for x, y in zip(values[::2], values[1::2], strict=True)
        )
    elif tag == "use":
        href = attrib.get("href", attrib.get(_XLINK_HREF, ""))
        if href.startswith("#"):
            out["href"] = href
    elif tag == "svg" and (box := _viewbox(attrib.get("viewBox", ""))):
        out["viewBox"] = " ".join(map(repr, box))
    return out, points


def _clean(root: ET.Element) -> None:
    """Reduce the document, in place, to what svgelements needs to draw it (see the module doc)."""
    root.tag = "svg"
    root.attrib = _clean_attributes(root, "svg")[0]
    if "viewBox" in root.attrib:
        # Without its viewBox the root maps user units 1:1, and its size is the viewBox's, against
        # which percentages resolve.
        box = root.attrib.pop("viewBox").split()
        root.attrib.update(width=box[2], height=box[3])
    for name in ("x", "y"):  # ignored on the outermost <svg>
        root.attrib.pop(name, None)
    # svgelements leaves a shape unstroked by default; this makes only an explicit "none" count.
    root.attrib.setdefault("stroke", "black")
    points = 0
    stack = [root]
    while stack:  # an explicit stack: deep nesting is refused later, not by a RecursionError
        parent = stack.pop()
        kept = []
        for child in parent:
            tag = child.tag.removeprefix(SVG_NS) if isinstance(child.tag, str) else ""
            if tag == "rect" and any("%" in child.get(k, "") for k in ("width", "height")):
                continue  # a background
            if tag in _HIDDEN:
                holder = ET.Element("defs")
                holder.append(child)
                kept.append(holder)
                child.tag, child.attrib = "g", _clean_attributes(child, "g")[0]
            elif tag in _CONTAINERS or tag in _LENGTHS:
                kept.append(child)
                child.attrib, drawn = _clean_attributes(child, tag)
                # Refused here, before svgelements spends some 15 microseconds on each segment.
                points += drawn
                if points > MAX_SVG_POINTS:
                    raise Refused(f"more than {MAX_SVG_POINTS} points; not a sketch")
                child.tag = tag if tag in _LENGTHS or tag == "defs" else "g"
            else:
                continue
            stack.append(child)
            child.text = child.tail = None
        parent[:] = kept
        parent.text = None


def _check_expansion(root: ET.Element) -> None:
    """Refuse a document whose <use> references refer to themselves, nest too deep, or expand into
    too much work for svgelements (it copies the referenced content in place)."""
    ids = {el.get("id"): el for el in root.iter() if "id" in el.attrib}

    def parts(element: ET.Element) -> list[ET.Element]:
        ref = ids.get(element.get("href", "")[1:]) if element.tag == "use" else None
        return [*element, ref] if ref is not None else list(element)

    # Post-order over the tree plus the <use> references, with an explicit stack. For each element:
    # the elements it expands into, the attribute characters they read, and its depth.
    done: dict[ET.Element, tuple[int, int, int]] = {}
    open_: set[ET.Element] = set()
    stack: list[tuple[ET.Element, bool]] = [(root, False)]
    while stack:
        element, finished = stack.pop()
        if finished:
            open_.discard(element)
            sizes = [done[k] for k in parts(element)]
            own = 1 + sum(len(k) + len(v) for k, v in element.attrib.items())
            size = 1 + sum(s[0] for s in sizes)
            work = min(own * size + sum(s[1] for s in sizes), _MAX_WORK + 1)
            depth = 1 + max((s[2] for s in sizes), default=0)
            if depth > _MAX_DEPTH:
                raise Refused(f"elements nested more than {_MAX_DEPTH} deep; not a sketch")
            if size > _MAX_ELEMENTS:
                raise Refused(f"more than {_MAX_ELEMENTS} elements (<use> expanded); not a sketch")
            done[element] = (size, work, depth)
        elif element in open_:
            raise Refused("a <use> refers to an element that contains it")
        elif element not in done:
            open_.add(element)
            stack.append((element, True))
            stack.extend((k, False) for k in parts(element))
    if done[root][1] > _MAX_WORK:
        raise Refused("inherited transforms and <use> references expand too much; not a sketch")


def prepare(root: ET.Element) -> bytes:
    """The document `root` (parsed with `NoDoctypeBuilder`) checked and reduced, in place, to what
    svgelements needs to draw it, as bytes for it to parse; `Refused` says why it cannot be."""
    if sum(1 for _ in root.iter()) > _MAX_ELEMENTS:  # before any work per element
        raise Refused(f"more than {_MAX_ELEMENTS} elements; not a sketch")
    _clean(root)
    _check_expansion(root)
    return ET.tostring(root)
