"""The ``strokes`` encoder: drawings as Sketch-RNN's stroke-5 rows for a mixture-density model."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from composer import ComposerError, Encoder, EncodeReport, GenerationPlan, MixtureDensity
from composer_strokes import strokes as st
from composer_strokes.drawing import Drawing

START_ROW = (0.0, 0.0, 1.0, 0.0, 0.0)  # Sketch-RNN's S0: no offset, pen down
END_ROW = (0.0, 0.0, 0.0, 0.0, 1.0)  # the drawing has ended (also the padding row)


def example_drawings() -> list[Drawing]:
    """Small handmade drawings (y grows downwards): a square, a cross, a house with a door, a zigzag."""
    square = st.from_polylines([[(2, 2), (12, 2), (12, 12), (2, 12), (2, 2)]])
    cross = st.from_polylines([[(0, 0), (10, 10)], [(10, 0), (0, 10)]])
    house = st.from_polylines([[(0, 10), (0, 20), (16, 20), (16, 10), (8, 2), (0, 10), (16, 10)],
                               [(6, 20), (6, 14), (10, 14), (10, 20)], [(8, 8)]])
    zigzag = st.from_polylines([[(0, 5), (4, 0), (8, 5), (12, 0), (16, 5), (20, 0)]])
    return [Drawing(square, "square"), Drawing(cross, "cross"), Drawing(house, "house"), Drawing(zigzag)]


class StrokeEncoder(Encoder):
    """Pen drawings as stroke-5 rows ``(dx, dy, p1, p2, p3)`` (Ha & Eck 2017, Sketch-RNN).

    A sequence is the start row S0 ``(0, 0, 1, 0, 0)``, one row per point with ``dx, dy`` divided by the
    corpus's normalising scale (the standard deviation of all offsets, measured by :meth:`fit`), and one end
    row ``(0, 0, 0, 0, 1)``; the core pads with end rows, which count as data as in Sketch-RNN. Before
    encoding, a drawing is rescaled so its larger side is ``scale_to`` (if set) and simplified with
    Ramer-Douglas-Peucker at ``epsilon`` (in the units after rescaling); a drawing with more than
    ``max_length`` points after that is skipped, and counted as dropped when fitting into a fixed model.

    ``scale_to`` is 0 by default: the built-in corpora each come in consistent units (Hershey glyphs in font
    units with a cap height of 21, QuickDraw in its 0-255 grid), and the corpus scale factor normalises
    them, while rescaling every drawing on its own would erase relative sizes that carry meaning (a comma
    beside a W, lower case beside capitals). Set it when mixing sources of different units (SVG files).
    """

    name = "strokes"
    modality = "strokes"
    description = ("pen drawings as Sketch-RNN's stroke-5 rows (offsets over the corpus's scale factor, "
                   "pen down/up/end) for a mixture-density model")
    needs_fit = True
    default_format = "svg,png"
    length_unit = "points"
    bos = START_ROW
    eos = None
    pad_value = END_ROW

    @dataclass
    class Options:
        max_length: int = 250  # drawings with more points (after simplification) are skipped: Sketch-RNN's N_max
        epsilon: float = 0.0  # Ramer-Douglas-Peucker tolerance applied before encoding (0: none)
        scale_to: float = 0.0  # if > 0, each drawing is first rescaled so its larger side is this many units
        augment_scale: float = 0.15  # training: dx and dy each scaled by a factor in [1 - a, 1 + a]
        augment_drop: float = 0.1  # training: probability of merging a point inside a stroke into the next

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        opts = self.options
        checks = [
            (opts.max_length >= 1, "max_length must be at least 1"),
            (math.isfinite(opts.epsilon) and opts.epsilon >= 0, "epsilon must be 0 or more"),
            (math.isfinite(opts.scale_to) and opts.scale_to >= 0, "scale_to must be 0 (off) or more"),
            (0 <= opts.augment_scale < 1, "augment_scale must be in [0, 1)"),
            (0 <= opts.augment_drop <= 1, "augment_drop must be in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ComposerError(f"{self.name}: option {message}")
        self.scale = 1.0

    @property
    def head(self) -> MixtureDensity:
        return MixtureDensity(components=20, dims=2, pen_states=3)

    @property
    def input_dim(self) -> int:
        return 5

    # -- data
    def prepare(self, item: Drawing | np.ndarray) -> np.ndarray | None:
        """The stroke-3 rows that get encoded (rescaled, simplified, pen values 0/1 with the last point
        lifting the pen), or None for a drawing that is empty or holds values that are not finite."""
        rows = item.strokes if isinstance(item, Drawing) else Drawing(item).strokes
        if not len(rows) or not np.isfinite(rows).all():
            return None
        rows = rows.copy()
        rows[:, 2] = rows[:, 2] >= st.PEN_UP
        rows[-1, 2] = 1
        if self.options.scale_to > 0:
            rows = st.normalize_size(rows, self.options.scale_to)
        if self.options.epsilon > 0:
            rows = st.simplify(rows, self.options.epsilon)
        return rows

    def fit(self, items: Iterable[Any]) -> None:
        """Measure the normalising scale on the drawings that encode (finite, within ``max_length``)."""
        usable = (rows for rows in map(self.prepare, items) if rows is not None)
        self.scale = st.normalizing_scale(rows for rows in usable if len(rows) <= self.options.max_length)

    def body(self, rows: np.ndarray) -> np.ndarray:
        """Stroke-5 rows of prepared stroke-3 rows, offsets divided by the scale."""
        out = st.to_stroke5(rows)
        out[:, :2] /= self.scale
        return out

    def encode(self, item: Drawing) -> np.ndarray:
        return self.encode_checked(item)[0]

    def encode_checked(self, item: Drawing) -> tuple[np.ndarray, EncodeReport]:
        """The rows ``[T, 5]`` of a drawing, or an empty array and one dropped item for a drawing that is
        empty, not finite, or longer than ``max_length``."""
        rows = self.prepare(item)
        if rows is None or len(rows) > self.options.max_length:
            return np.zeros((0, 5), dtype=np.float32), EncodeReport(dropped=1)
        seq = np.concatenate([[START_ROW], self.body(rows), [END_ROW]]).astype(np.float32)
        return seq, EncodeReport()

    def decode(self, seq: Any) -> Drawing:
        """A drawing from rows ``[T, 5]``: a leading start row is skipped, the first end row (the largest
        pen column is p3) ends it, offsets are multiplied by the scale and the last point lifts the pen."""
        rows = np.asarray(seq, dtype=np.float32).reshape(-1, 5)
        if len(rows) and np.array_equal(rows[0], START_ROW):
            rows = rows[1:]
        strokes = st.from_stroke5(rows)
        strokes[:, :2] *= self.scale
        if len(strokes):
            strokes[-1, 2] = 1
        return Drawing(strokes)

    def augment(self, seq: np.ndarray, rng: random.Random) -> np.ndarray:
        """Sketch-RNN's training augmentation of the rows between the start row and the first end row:
        random per-axis scaling, then points inside strokes merged into the next; the start and end rows
        (and any padding after them) are kept."""
        seq = np.asarray(seq, dtype=np.float32)
        start = int(len(seq) > 0 and np.array_equal(seq[0], START_ROW))
        stroke3 = st.from_stroke5(seq[start:])
        tail = seq[start + len(stroke3):]
        if self.options.augment_scale > 0:
            stroke3 = st.random_scale(stroke3, rng, self.options.augment_scale)
        stroke3 = st.drop_points(stroke3, rng, self.options.augment_drop)
        return np.concatenate([seq[:start], st.to_stroke5(stroke3), tail]).astype(np.float32)

    # -- generation
    def generation_plan(self, length: float | None = None, **request: Any) -> GenerationPlan:
        return GenerationPlan(max_tokens=int(length) if length else self.options.max_length)

    def primer(self, item: Drawing) -> np.ndarray:
        """The rows of a drawing to continue from, without the start and end rows (any length)."""
        rows = self.prepare(item)
        if rows is None:
            raise ComposerError("the primer drawing is empty or holds values that are not finite")
        return self.body(rows)

    def summarize(self, item: Drawing) -> str:
        return f"{item.size()}, label {item.label!r}" if item.label is not None else item.size()

    def statistics(self, items: list[Any], reference: list[Any] | None = None) -> dict[str, float]:
        """Mean strokes and points and the typical bounding-box aspect of the drawings; with ``reference``
        also how far each mean lies from the reference's (generated minus reference)."""
        stats = describe(items)
        if reference is not None:
            ref = describe(reference)
            for key in ("strokes", "points", "aspect"):
                if key in stats and key in ref:
                    stats[f"{key} difference"] = stats[key] - ref[key]
        return stats

    def example_items(self) -> list[Drawing]:
        return example_drawings()

    # -- checkpoint state
    def state_dict(self) -> dict:
        return {"options": dataclasses.asdict(self.options), "scale": float(self.scale)}

    def load_state_dict(self, state: dict) -> None:
        scale = state.get("scale", 1.0)
        if not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0:
            raise ComposerError(f"{self.name}: the checkpoint's scale must be a positive number, got {scale!r}")
        self.scale = float(scale)


def describe(items: list[Any]) -> dict[str, float]:
    """The number of drawings that have points, their mean strokes and points, and their aspect: the
    geometric mean of width / height of the bounding boxes (1 for squares; the smaller side is taken as
    at least 1% of the larger, so that a line does not count as infinitely wide)."""
    drawings = [d for d in items if isinstance(d, Drawing) and d.num_points]
    if not drawings:
        return {"drawings": 0}
    aspects = []
    for d in drawings:
        xmin, ymin, xmax, ymax = st.bounds(d.strokes)
        width, height = xmax - xmin, ymax - ymin
        floor = 0.01 * max(width, height)
        if floor > 0:
            aspects.append(math.log(max(width, floor) / max(height, floor)))
    stats = {
        "drawings": float(len(drawings)),
        "strokes": float(np.mean([d.num_strokes for d in drawings])),
        "points": float(np.mean([d.num_points for d in drawings])),
    }
    if aspects:
        stats["aspect"] = float(math.exp(np.mean(aspects)))
    return stats
