"""The picture of an :class:`composer.inspection.Inspection` (matplotlib, imported here only): for a character
model the text coloured by its best cells (Karpathy's view), then a heatmap of the chosen cells over the
positions, the encoder's properties under it on the same time axis, and a gate-saturation scatter per layer.
Each cell's colours are scaled to its own largest |activation|, so that a quiet cell shows its pattern too."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

WIDTH = 15.0  # inches
DPI = 110
TEXT_COLUMNS = 100  # characters per line of the coloured text before it wraps
TEXT_LINES = 16  # lines of text per coloured panel at most
TEXT_PANELS = 4  # cells shown as coloured text at most
TEXT_SIZE, LINE_HEIGHT = 10, 0.2  # the coloured text's font size (points) and line height (inches)
TEXT_RANGE = 1.3  # the colour scale reaches beyond a cell's extremes there: no black text on the darkest red
LABEL_ALL = 110  # label every position along the time axis up to this many positions
MAX_TICKS = 40
GATE_COLOURS = {"input": "tab:green", "forget": "tab:blue", "output": "tab:red", "reset": "tab:purple",
                "update": "tab:orange"}
SHOWN = {"\n": "\u21b5", " ": "\u2423", "\t": "\u21e5"}  # a newline, a space, a tab made visible on an axis


def _cell_name(layer: int, cell: int, found: Any) -> str:
    name = f"layer {layer} cell {cell}"
    return f'{name}: r={found.r:+.2f} with "{found.property}"' if found is not None else name


def _short_name(layer: int, cell: int, found: Any) -> str:
    return f"{layer}:{cell}" + (f"  r={found.r:+.2f} {found.property}" if found is not None else "")


def _scaled(values: np.ndarray) -> np.ndarray:
    top = float(np.abs(values).max())
    return values / top if top > 0 else values


def _text_rows(labels: list[str], values: np.ndarray) -> tuple[list[list[str]], np.ndarray, bool]:
    """Characters laid out in lines (wrapped at TEXT_COLUMNS, at most TEXT_LINES) with each one's value."""
    rows: list[list[str]] = [[]]
    grid = [[]]
    for label, value in zip(labels, values):
        if not label:
            continue
        rows[-1].append(SHOWN[label] if label in ("\n", "\t") else label)
        grid[-1].append(value)
        if label == "\n" or len(rows[-1]) == TEXT_COLUMNS:
            rows.append([])
            grid.append([])
    if not rows[-1]:
        rows.pop()
        grid.pop()
    cut = len(rows) > TEXT_LINES
    rows, grid = rows[:TEXT_LINES], grid[:TEXT_LINES]
    array = np.full((len(rows), TEXT_COLUMNS), np.nan)
    for r, line in enumerate(grid):
        array[r, :len(line)] = line
    return rows, array, cut


def _char_width(fig: Any) -> float:
    """The advance of one character of the monospace font at TEXT_SIZE, in inches (measured, so that a line
    drawn as one string sits on its grid of coloured cells)."""
    from matplotlib.font_manager import FontProperties

    sample = "M" * 100
    width, _, _ = fig.canvas.get_renderer().get_text_width_height_descent(
        sample, FontProperties(family="monospace", size=TEXT_SIZE), ismath=False)
    return width / len(sample) / fig.dpi


def _coloured_text(ax: Any, labels: list[str], values: np.ndarray, caption: str, cmap: Any, char: float) -> None:
    """Karpathy's view: each character on a background coloured by the cell's value after reading it."""
    rows, array, cut = _text_rows(labels, values)
    columns = max(map(len, rows))
    box = ax.get_position()
    ax.set_position([box.x0, box.y0, min(box.width, columns * char / WIDTH), box.height])
    ax.imshow(array[:, :columns], cmap=cmap, vmin=-TEXT_RANGE, vmax=TEXT_RANGE, aspect="auto",
              interpolation="nearest", extent=(-0.5, columns - 0.5, len(rows) - 0.5, -0.5))
    for r, line in enumerate(rows):
        ax.text(-0.5, r, "".join(line), ha="left", va="center", fontsize=TEXT_SIZE, family="monospace")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(caption + (f" (the first {TEXT_LINES} lines)" if cut else ""), loc="left", fontsize=10)


def _time_axis(ax: Any, seen: Any, steps: int) -> None:
    """Tick labels along the time axis: every position's label when few, else the encoder's time marks."""
    if steps <= LABEL_ALL and any(seen.labels):
        ax.set_xticks(range(steps), [SHOWN.get(label, label) for label in seen.labels[:steps]],
                      fontsize=7, family="monospace", rotation=0 if max(map(len, seen.labels)) <= 1 else 90)
        return
    kept: list[int] = []
    for t in sorted(t for t in seen.marks if t < steps):
        if not kept or t - kept[-1] >= steps / MAX_TICKS:  # marks closer than that would overprint
            kept.append(t)
    if kept:
        ax.set_xticks(kept, [seen.marks[t] for t in kept], fontsize=7, rotation=90)
    ax.set_xlabel("position (token)" if not kept else "")


def _marks(ax: Any, seen: Any, steps: int) -> None:
    if steps > LABEL_ALL:
        for t in seen.marks:
            if t < steps:
                ax.axvline(t - 0.5, color="0.4", lw=0.5, alpha=0.6)


def _distinct(shown: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """The cells of ``shown`` with a property no cell before them has (all cells without one)."""
    seen, kept = set(), []
    for triple in shown:
        found = triple[2]
        if found is None or found.property not in seen:
            kept.append(triple)
            seen.add(getattr(found, "property", None))
    return kept


def draw(seen: Any, shown: list[tuple[int, int, Any]]) -> bytes:
    """The PNG of an inspection with the cells ``shown``: (layer, cell, its Correlated or None) triples."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = seen.steps
    cmap = colormaps["RdBu_r"].with_extremes(bad="white")
    char_level = bool(seen.labels) and all(len(label) <= 1 for label in seen.labels)
    texts = _distinct(shown)[:TEXT_PANELS] if char_level else []
    correlated = seen.correlations()
    properties = {name: values for name, values in seen.properties.items() if name in correlated}
    layers = len(seen.layers)
    per_row = min(layers, 4)
    scatter_rows = -(-layers // per_row)

    text_heights = [0.5 + LINE_HEIGHT * len(_text_rows(seen.labels, np.zeros(steps))[0]) for _ in texts]
    heat_height = 0.9 + 0.28 * max(1, len(shown))
    prop_heights = [0.55] * len(properties)
    heights = [0.55, *text_heights, heat_height, *prop_heights, 0.5, *[2.6] * scatter_rows]
    fig = Figure(figsize=(WIDTH, sum(heights) + 0.6), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(heights), per_row, height_ratios=heights, hspace=0.55, left=0.2, right=0.97,
                            top=1 - 0.3 / sum(heights), bottom=0.35 / sum(heights))
    row = 0
    head = fig.add_subplot(grid[row, :])
    head.axis("off")
    what = {"c": "cell state c", "h": "hidden state h"}.get(seen.state_name(), f"state {seen.state_name()}")
    left_out = f"; {seen.left_out:,} more not read" if seen.left_out else ""
    head.text(0, 0.75, f"{seen.title}: {steps:,} positions read teacher-forced{left_out}", fontsize=12, va="center")
    head.text(0, 0.0, f"colour: the {what} after reading each position, each cell scaled to its largest |value| "
              "(red +, blue -)", fontsize=9, va="center", color="0.3")
    row += 1

    for layer, cell, found in texts:
        ax = fig.add_subplot(grid[row, :])
        _coloured_text(ax, seen.labels, _scaled(seen.activation(layer)[:, cell]), _cell_name(layer, cell, found), cmap,
                       _char_width(fig))
        row += 1

    heat = fig.add_subplot(grid[row, :])
    row += 1
    if shown:
        matrix = np.stack([_scaled(seen.activation(layer)[:, cell]) for layer, cell, _ in shown])
        heat.imshow(matrix, cmap=cmap, vmin=-1, vmax=1, aspect="auto", interpolation="nearest",
                    extent=(-0.5, steps - 0.5, len(shown) - 0.5, -0.5))
        heat.set_yticks(range(len(shown)), [_short_name(*triple) for triple in shown], fontsize=8)
    heat.set_title("cells (layer:cell) over the input" + (", the most correlated with each property" if all(
        found is not None for *_, found in shown) else ""), loc="left", fontsize=10)
    _marks(heat, seen, steps)
    axes = [heat]
    for name, values in properties.items():
        ax = fig.add_subplot(grid[row, :], sharex=heat)
        row += 1
        x = np.arange(steps)
        ax.step(x, values, where="mid", color="0.2", lw=0.9)
        ax.fill_between(x, np.nan_to_num(values, nan=np.nanmin(values)), np.nanmin(values), step="mid",
                        color="tab:orange", alpha=0.25)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="y", labelsize=6)
        ax.set_yticks([np.nanmin(values), np.nanmax(values)])
        _marks(ax, seen, steps)
        axes.append(ax)
    for ax in axes[:-1]:
        ax.tick_params(axis="x", labelbottom=False)
    heat.set_xlim(-0.5, steps - 0.5)
    _time_axis(axes[-1], seen, steps)
    row += 1  # a gap before the scatters

    marked = {(layer, cell) for layer, cell, _ in shown}
    for index, (trace, saturation) in enumerate(zip(seen.layers, seen.saturation())):
        ax = fig.add_subplot(grid[row + index // per_row, index % per_row])
        for gate, (left, right) in saturation.items():
            ax.scatter(left, right, s=7, alpha=0.55, color=GATE_COLOURS.get(gate, "0.3"), label=f"{gate} gate",
                       linewidths=0)
            cells = [cell for layer, cell in marked if layer == index]
            if cells:
                ax.scatter(left[cells], right[cells], s=30, facecolors="none", edgecolors="black", linewidths=0.8)
        ax.plot([0, 1], [1, 0], color="0.7", lw=0.6)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_title(f"layer {index} ({trace.cell}): gate saturation" + ("\n(circled: the cells above)" if any(
            layer == index for layer, _ in marked) else ""), fontsize=9)
        ax.set_xlabel("fraction of steps < 0.1 (shut)", fontsize=8)
        ax.set_ylabel("fraction > 0.9 (open)", fontsize=8)
        ax.tick_params(labelsize=7)
        if index == 0:
            ax.legend(fontsize=7, loc="upper right", markerscale=2)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()
