"""Drawings read from SVG files: the outlines of ``<path>``, ``<polyline>``, ``<polygon>``, ``<line>``,
``<rect>``, ``<circle>`` and ``<ellipse>`` elements as pen strokes, in the SVG's own y-down coordinates.

Curves (cubic and quadratic Béziers, smooth ones included) are flattened to a few points each; an arc
(``A``/``a``) is drawn as a straight line to its end point. ``transform`` attributes (``matrix``,
``translate``, ``scale``, ``rotate``, ``skewX``, ``skewY``) are applied. A point repeating the one before it
is left out, so a zero-length polyline is a dot. Not drawn: a ``<rect>`` sized in percent (a background, as
the svg writer puts one), ``<use>`` references, styles, and what sits in ``<defs>``, ``<clipPath>``,
``<mask>``, ``<symbol>``, ``<marker>`` and ``<pattern>``.

A file declaring a DOCTYPE or an ENTITY is refused unread: the XML parser would otherwise expand entities
(the "billion laughs") that a drawing never needs. So is one in an encoding other than UTF-8, ASCII or
Latin-1, in which that check could not see the declaration.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from composer import ComposerError

CURVE_POINTS = 8  # points a Bézier segment is flattened to
ELLIPSE_POINTS = 32  # points around a circle or an ellipse
MAX_BYTES = 64 << 20  # a larger file is refused
HIDDEN = {"defs", "clipPath", "mask", "symbol", "marker", "pattern", "title", "desc", "metadata", "style"}
DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
ENCODING = re.compile(rb"""\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")
# encodings in which the check for declarations above sees every ASCII character as itself
ASCII_COMPATIBLE = {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1"}
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
SEPARATOR = re.compile(r"[\s,]*")
TRANSFORM = re.compile(r"(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")
PARAMETERS = {"M": 2, "L": 2, "H": 1, "V": 1, "Z": 0, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7}

Matrix = np.ndarray  # 3 x 3 affine


def read_svg(path: str | Path) -> tuple[list[np.ndarray], str | None]:
    """The strokes of an SVG file as absolute ``[k, 2]`` polylines, and its ``<title>`` (or None).
    ComposerError, naming the file, for a file that is not a drawable, well-formed SVG."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ComposerError(f"{path.name}: {exc.strerror or 'cannot read it'}") from None
    if len(data) > MAX_BYTES:
        raise ComposerError(f"{path.name}: larger than {MAX_BYTES >> 20} MiB, not read")
    declared = ENCODING.match(data)
    if b"\x00" in data or (declared and declared.group(1).decode("ascii", "replace").lower() not in ASCII_COMPATIBLE):
        raise ComposerError(f"{path.name}: only UTF-8, ASCII and Latin-1 SVG files are read")
    if DECLARATION.search(data):
        raise ComposerError(f"{path.name}: declares a DOCTYPE or ENTITY; such SVG files are refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ComposerError(f"{path.name}: not well-formed XML ({exc})") from None
    if _tag(root) != "svg":
        raise ComposerError(f"{path.name}: not an SVG document (its root is <{_tag(root)}>)")
    try:
        with np.errstate(all="ignore"):  # huge numbers overflow to inf; such strokes are left out below
            lines = [line for line in _walk(root, np.eye(3)) if len(line)]
    except ValueError as exc:
        raise ComposerError(f"{path.name}: {exc}") from None
    lines = [_without_repeats(line) for line in lines if np.isfinite(line).all()]
    if not lines:
        raise ComposerError(f"{path.name}: nothing drawable in it (no path, polyline, polygon or line)")
    title = next((el.text.strip() for el in root if _tag(el) == "title" and el.text and el.text.strip()), None)
    return lines, title


def _without_repeats(line: np.ndarray) -> np.ndarray:
    """The polyline without points that repeat the one before (a zero-length polyline is a dot)."""
    moved = np.ones(len(line), dtype=bool)
    moved[1:] = (np.diff(line, axis=0) != 0).any(axis=1)
    return line[moved]


def _tag(element: ET.Element) -> str:
    return element.tag.rpartition("}")[2] if isinstance(element.tag, str) else ""


def _walk(element: ET.Element, matrix: Matrix) -> Iterator[np.ndarray]:
    matrix = matrix @ parse_transform(element.get("transform", ""))
    tag = _tag(element)
    if tag in HIDDEN:
        return
    for line in _shape(tag, element):
        yield line @ matrix[:2, :2].T + matrix[:2, 2]
    for child in element:
        yield from _walk(child, matrix)


def _numbers(text: str | None) -> list[float]:
    return [float(n) for n in NUMBER.findall(text or "")]


def _shape(tag: str, el: ET.Element) -> list[np.ndarray]:
    def attr(name: str) -> float:
        values = _numbers(el.get(name))
        return values[0] if values else 0.0

    if tag == "path":
        return parse_path(el.get("d", ""))
    if tag in ("polyline", "polygon"):
        values = _numbers(el.get("points"))
        points = np.array(values[: len(values) // 2 * 2], dtype=np.float64).reshape(-1, 2)
        if tag == "polygon" and len(points) > 1:
            points = np.vstack([points, points[:1]])
        return [points]
    if tag == "line":
        return [np.array([[attr("x1"), attr("y1")], [attr("x2"), attr("y2")]])]
    if tag == "rect":
        if "%" in el.get("width", "") + el.get("height", ""):
            return []  # a background filling the viewport, as the svg writer draws one
        x, y, w, h = attr("x"), attr("y"), attr("width"), attr("height")
        return [np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]])] if w > 0 and h > 0 else []
    if tag in ("circle", "ellipse"):
        rx, ry = (attr("r"), attr("r")) if tag == "circle" else (attr("rx"), attr("ry"))
        if rx <= 0 or ry <= 0:
            return []
        angles = np.linspace(0, 2 * math.pi, ELLIPSE_POINTS + 1)
        return [np.column_stack([attr("cx") + rx * np.cos(angles), attr("cy") + ry * np.sin(angles)])]
    return []


def parse_transform(text: str) -> Matrix:
    """The affine matrix of an SVG ``transform`` attribute (identity for anything it does not know)."""
    matrix = np.eye(3)
    for kind, args in TRANSFORM.findall(text):
        v = _numbers(args)
        step = np.eye(3)
        if kind == "matrix" and len(v) == 6:
            step[:2] = [[v[0], v[2], v[4]], [v[1], v[3], v[5]]]
        elif kind == "translate" and v:
            step[:2, 2] = [v[0], v[1] if len(v) > 1 else 0.0]
        elif kind == "scale" and v:
            step[0, 0], step[1, 1] = v[0], v[1] if len(v) > 1 else v[0]
        elif kind == "rotate" and v:
            a = math.radians(v[0])
            cx, cy = (v[1], v[2]) if len(v) == 3 else (0.0, 0.0)
            turn = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
            step = _translation(cx, cy) @ turn @ _translation(-cx, -cy)
        elif kind in ("skewX", "skewY") and v:
            step[(0, 1) if kind == "skewX" else (1, 0)] = math.tan(math.radians(v[0]))
        matrix = matrix @ step
    return matrix


def _translation(x: float, y: float) -> Matrix:
    out = np.eye(3)
    out[:2, 2] = x, y
    return out


class _Scanner:
    """Reads path data: commands, numbers and the packed arc flags (``a10 10 0 015 5``)."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def _skip(self) -> None:
        self.pos = SEPARATOR.match(self.text, self.pos).end()

    def command(self) -> str | None:
        self._skip()
        if self.pos < len(self.text) and self.text[self.pos].upper() in PARAMETERS:
            self.pos += 1
            return self.text[self.pos - 1]
        return None

    def at_number(self) -> bool:
        self._skip()
        return bool(NUMBER.match(self.text, self.pos))

    def done(self) -> bool:
        self._skip()
        return self.pos >= len(self.text)

    def number(self) -> float:
        self._skip()
        found = NUMBER.match(self.text, self.pos)
        if not found:
            raise ValueError(f"path data: expected a number at character {self.pos}")
        self.pos = found.end()
        return float(found.group())

    def flag(self) -> float:
        self._skip()
        if self.pos < len(self.text) and self.text[self.pos] in "01":
            self.pos += 1
            return float(self.text[self.pos - 1])
        raise ValueError(f"path data: expected an arc flag 0 or 1 at character {self.pos}")


def parse_path(d: str) -> list[np.ndarray]:
    """The subpaths of SVG path data as absolute polylines (curves flattened, arcs as lines); ValueError
    for path data it cannot read."""
    scan = _Scanner(d)
    lines: list[list[tuple[float, float]]] = []
    current = start = (0.0, 0.0)
    control: tuple[float, float] | None = None  # the last control point, for S and T
    previous = ""
    command = None
    while not scan.done():
        given = scan.command()
        if given is not None:
            command = given
        elif command is None or command in "Zz" or not scan.at_number():
            raise ValueError(f"path data: expected a command at character {scan.pos}")
        upper, relative = command.upper(), command.islower()
        base = current if relative else (0.0, 0.0)

        def point(base: tuple[float, float] = base) -> tuple[float, float]:
            x = scan.number()
            return base[0] + x, base[1] + scan.number()

        if upper == "M":
            current = start = point()
            lines.append([current])
            command = "l" if relative else "L"  # further pairs are lines
            control = None
        elif upper == "Z":
            if lines and lines[-1][-1] != start:
                lines[-1].append(start)
            current, control = start, None
            lines.append([start])  # drawing on without M continues from the subpath's start
        else:
            if not lines:
                lines.append([current])
            if upper == "L":
                current = point()
                new = [current]
            elif upper in "HV":
                value = scan.number() + (base[0] if upper == "H" else base[1])
                current = (value, current[1]) if upper == "H" else (current[0], value)
                new = [current]
            elif upper in "CS":
                if upper == "C":
                    c1 = point()
                else:
                    c1 = _reflect(control, current) if previous in ("C", "S") else current
                c2, end = point(), point()
                new = _bezier([current, c1, c2, end])
                current, control = end, c2
            elif upper in "QT":
                if upper == "Q":
                    c1 = point()
                else:
                    c1 = _reflect(control, current) if previous in ("Q", "T") else current
                end = point()
                new = _bezier([current, c1, end])
                current, control = end, c1
            else:  # A: radii, rotation and flags are read, and a line drawn to the end point
                for _ in range(3):
                    scan.number()
                scan.flag(), scan.flag()
                current = point()
                new = [current]
            lines[-1].extend(new)
        previous = upper
    return [np.array(line, dtype=np.float64) for line in lines if len(line) > 1]


def _reflect(control: tuple[float, float] | None, about: tuple[float, float]) -> tuple[float, float]:
    if control is None:
        return about
    return 2 * about[0] - control[0], 2 * about[1] - control[1]


def _bezier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points along a Bézier curve after its start (de Casteljau), CURVE_POINTS of them."""
    control = np.array(points, dtype=np.float64)
    out = []
    for t in np.linspace(0, 1, CURVE_POINTS + 1)[1:]:
        level = control
        while len(level) > 1:
            level = (1 - t) * level[:-1] + t * level[1:]
        out.append((float(level[0, 0]), float(level[0, 1])))
    return out
