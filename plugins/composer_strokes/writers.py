"""Output formats for drawings: ``svg`` (no extra dependency) and ``png`` (matplotlib), each one drawing
per file or a contact sheet of all the drawings of a run (``write_grid``).

Drawings are black strokes on white, upright (y grows downwards, as in SVG). A single SVG keeps the
drawing's own coordinates in its ``viewBox`` (so it reads back unchanged as a primer or corpus file);
a grid scales every drawing to fit an equal cell, with its label underneath when it has one.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

import numpy as np

from composer_strokes import strokes as st
from composer_strokes.drawing import Drawing

SIZE = 256  # pixels of a single drawing's larger side
CELL = 160  # pixels of a grid cell's side
LABEL_HEIGHT = 18  # pixels under a grid cell for its label
PAD = 0.06  # margin around a drawing, as a share of its larger side
LINE = 2.0  # stroke width in pixels
EMPTY_EXTENT = 1.0  # the side of the box drawn for an empty drawing or a single point


def _number(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _box(drawing: Drawing) -> tuple[float, float, float]:
    """A square around the drawing, padded: ``(x, y, side)``."""
    xmin, ymin, xmax, ymax = st.bounds(drawing.strokes)
    side = max(xmax - xmin, ymax - ymin) or EMPTY_EXTENT
    side *= 1 + 2 * PAD
    return (xmin + xmax - side) / 2, (ymin + ymax - side) / 2, side


def _svg_strokes(lines: list[np.ndarray]) -> list[str]:
    """A polyline per stroke; a one-point stroke is a polyline of no length, which round caps draw as a dot
    (and which the SVG reader reads back as one point)."""
    out = []
    for line in lines:
        points = line if len(line) > 1 else np.vstack([line, line])
        out.append(f'<polyline points="{" ".join(f"{_number(x)},{_number(y)}" for x, y in points)}"/>')
    return out


def _svg_document(width: float, height: float, view_box: str, body: list[str], stroke_width: float,
                  title: str | None = None) -> str:
    left, top = view_box.split()[:2]
    style = (f'fill="none" stroke="black" stroke-width="{_number(stroke_width)}" '
             'stroke-linecap="round" stroke-linejoin="round"')
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_number(width)}" height="{_number(height)}" '
        f'viewBox="{view_box}">',
        *([f"<title>{escape(title)}</title>"] if title is not None else []),
        f'<rect x="{left}" y="{top}" width="100%" height="100%" fill="white"/>',
        f"<g {style}>",
        *body,
        "</g>",
        "</svg>",
        "",
    ])


def write_svg(item: Drawing, path: Path) -> None:
    """One drawing in its own coordinates, padded, with its label as the SVG's title."""
    x, y, side = _box(item)
    width = side * LINE / SIZE
    view_box = " ".join(_number(v) for v in (x, y, side, side))
    document = _svg_document(SIZE, SIZE, view_box, _svg_strokes(st.to_polylines(item.strokes)), width,
                             title=item.label)
    Path(path).write_text(document, encoding="utf-8")


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid for ``count`` cells."""
    columns = max(1, math.ceil(math.sqrt(count)))
    return max(1, math.ceil(count / columns)), columns


def _fitted(item: Drawing, left: float, top: float, side: float) -> list[np.ndarray]:
    """The drawing's polylines scaled and moved to fill the square cell at ``(left, top)``."""
    x, y, extent = _box(item)
    scale = side / extent
    return [(line - (x, y)) * scale + (left, top) for line in st.to_polylines(item.strokes)]


def write_svg_grid(items: list[Drawing], path: Path) -> None:
    """All drawings in one SVG: a near-square grid of equal cells, each drawing scaled to fit its cell and
    its label under it."""
    rows, columns = grid_shape(len(items))
    labelled = any(item.label is not None for item in items)
    cell_height = CELL + (LABEL_HEIGHT if labelled else 0)
    body = []
    for k, item in enumerate(items):
        left, top = (k % columns) * CELL, (k // columns) * cell_height
        body += _svg_strokes(_fitted(item, left, top, CELL))
        if item.label is not None:
            body.append(f'<text x="{_number(left + CELL / 2)}" y="{_number(top + CELL + LABEL_HEIGHT - 5)}" '
                        f'font-family="sans-serif" font-size="12" text-anchor="middle" fill="black" '
                        f'stroke="none">{escape(item.label)}</text>')
    width, height = columns * CELL, rows * cell_height
    view_box = f"0 0 {width} {height}"
    Path(path).write_text(_svg_document(width, height, view_box, body, LINE), encoding="utf-8")


# ------------------------------------------------------------------------------------------ PNG


def png_available() -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    return None


def _plot(axes, item: Drawing) -> None:  # noqa: ANN001 - matplotlib's Axes, imported lazily
    x, y, side = _box(item)
    for line in st.to_polylines(item.strokes):
        if len(line) == 1:
            axes.plot(line[:, 0], line[:, 1], "o", color="black", markersize=LINE * 1.5)
        else:
            axes.plot(line[:, 0], line[:, 1], "-", color="black", linewidth=LINE,
                      solid_capstyle="round", solid_joinstyle="round")
    axes.set_xlim(x, x + side)
    axes.set_ylim(y + side, y)  # y grows downwards
    axes.set_aspect("equal")
    axes.axis("off")


def _save(figure, path: Path) -> None:  # noqa: ANN001
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.savefig(str(path), format="png", facecolor="white")


def write_png(item: Drawing, path: Path) -> None:
    """One drawing, SIZE pixels square, with its label underneath."""
    _png_sheet([item], path, SIZE)


def write_png_grid(items: list[Drawing], path: Path) -> None:
    """All drawings in one PNG: a near-square grid of equal cells with labels under the drawings."""
    _png_sheet(items, path, CELL)


def _png_sheet(items: list[Drawing], path: Path, cell: int) -> None:
    from matplotlib.figure import Figure

    rows, columns = grid_shape(len(items))
    labelled = any(item.label is not None for item in items)
    dpi = 100
    cell_height = cell + (LABEL_HEIGHT if labelled else 0)
    figure = Figure(figsize=(columns * cell / dpi, rows * cell_height / dpi), dpi=dpi)
    for k, item in enumerate(items):
        row, column = divmod(k, columns)
        bottom = 1 - (row * cell_height + cell) / (rows * cell_height)
        axes = figure.add_axes((column / columns, bottom, 1 / columns, cell / (rows * cell_height)))
        _plot(axes, item)
        if item.label is not None:
            axes.text(0.5, 0, item.label, transform=axes.transAxes, ha="center", va="top", fontsize=9)
    _save(figure, path)
