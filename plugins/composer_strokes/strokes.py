"""Pure functions on pen drawings: stroke-3 and stroke-5 rows, absolute polylines, Ramer-Douglas-Peucker
simplification, bounding boxes and sizes, the corpus's normalising scale and Sketch-RNN's augmentations.

Stroke-3 rows are ``(dx, dy, p)`` with ``p = 1`` where the pen lifts after the point; stroke-5 rows are
``(dx, dy, p1, p2, p3)``: pen down after the point, pen up after it, drawing ended (Ha & Eck 2017).
A pen value counts as up from 0.5. Polylines are absolute ``[k, 2]`` arrays, one per stroke.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import numpy as np

PEN_UP = 0.5  # a stroke-3 pen value at or above this lifts the pen


def to_stroke5(strokes: np.ndarray) -> np.ndarray:
    """Stroke-3 rows as stroke-5 rows (no end row is added)."""
    strokes = np.asarray(strokes, dtype=np.float32).reshape(-1, 3)
    out = np.zeros((len(strokes), 5), dtype=np.float32)
    out[:, :2] = strokes[:, :2]
    up = strokes[:, 2] >= PEN_UP
    out[:, 2] = ~up
    out[:, 3] = up
    return out


def from_stroke5(rows: np.ndarray) -> np.ndarray:
    """Stroke-5 rows as stroke-3 rows, up to (without) the first end row. Each row's pen state is the
    largest of its three pen columns, so sampled or soft rows read as well as one-hot ones."""
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, 5)
    state = np.argmax(rows[:, 2:5], axis=1) if len(rows) else np.zeros(0, dtype=int)
    ends = np.flatnonzero(state == 2)
    stop = int(ends[0]) if len(ends) else len(rows)
    out = np.zeros((stop, 3), dtype=np.float32)
    out[:, :2] = rows[:stop, :2]
    out[:, 2] = state[:stop] == 1
    return out


def to_polylines(strokes: np.ndarray) -> list[np.ndarray]:
    """Absolute float64 ``[k, 2]`` polylines, one per stroke (an unfinished last stroke included)."""
    strokes = np.asarray(strokes, dtype=np.float64).reshape(-1, 3)
    points = np.cumsum(strokes[:, :2], axis=0)
    ends = np.flatnonzero(strokes[:, 2] >= PEN_UP) + 1
    if not len(ends) or ends[-1] != len(strokes):
        ends = np.append(ends, len(strokes))
    starts = np.concatenate([[0], ends[:-1]])
    return [points[a:b] for a, b in zip(starts, ends) if b > a]


def from_polylines(lines: Iterable[np.ndarray | Sequence[Sequence[float]]]) -> np.ndarray:
    """Stroke-3 rows of absolute polylines; the first offset is from the origin, empty polylines are left out."""
    parts = [np.asarray(line, dtype=np.float64).reshape(-1, 2) for line in lines]
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros((0, 3), dtype=np.float32)
    points = np.concatenate(parts)
    out = np.zeros((len(points), 3), dtype=np.float64)
    out[:, :2] = np.diff(points, axis=0, prepend=np.zeros((1, 2)))
    out[np.cumsum([len(p) for p in parts]) - 1, 2] = 1
    return out.astype(np.float32)


def rdp(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker: the points of a polyline ``[k, 2]`` that keep every dropped point within
    ``epsilon`` of the simplified line (distance to the segment that replaces it). The ends are always kept."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) < 3 or epsilon <= 0:
        return points.copy()
    keep = np.zeros(len(points), dtype=bool)
    keep[[0, -1]] = True
    pending = [(0, len(points) - 1)]
    while pending:
        first, last = pending.pop()
        if last - first < 2:
            continue
        distances = segment_distances(points[first + 1 : last], points[first], points[last])
        farthest = int(np.argmax(distances))
        if distances[farthest] > epsilon:
            split = first + 1 + farthest
            keep[split] = True
            pending += [(first, split), (split, last)]
    return points[keep]


def segment_distances(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances of ``points`` [k, 2] to the segment from ``a`` to ``b`` (to ``a`` when the two coincide)."""
    ab = b - a
    length2 = float(ab @ ab)
    t = np.zeros(len(points)) if length2 == 0 else np.clip((points - a) @ ab / length2, 0.0, 1.0)
    nearest = a + t[:, None] * ab
    return np.linalg.norm(points - nearest, axis=1)


def simplify(strokes: np.ndarray, epsilon: float) -> np.ndarray:
    """Stroke-3 rows with each stroke simplified by :func:`rdp` (``epsilon`` in drawing units; 0 keeps all)."""
    if epsilon <= 0:
        return np.asarray(strokes, dtype=np.float32).reshape(-1, 3).copy()
    return from_polylines(rdp(line, epsilon) for line in to_polylines(strokes))


def bounds(strokes: np.ndarray) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of a drawing's points (all zero for an empty drawing)."""
    strokes = np.asarray(strokes, dtype=np.float64).reshape(-1, 3)
    if not len(strokes):
        return 0.0, 0.0, 0.0, 0.0
    points = np.cumsum(strokes[:, :2], axis=0)
    (xmin, ymin), (xmax, ymax) = points.min(axis=0), points.max(axis=0)
    return float(xmin), float(ymin), float(xmax), float(ymax)


def normalize_size(strokes: np.ndarray, size: float) -> np.ndarray:
    """The drawing scaled about the origin so that the larger side of its bounding box is ``size``
    (unchanged when it has no extent)."""
    out = np.asarray(strokes, dtype=np.float32).reshape(-1, 3).copy()
    xmin, ymin, xmax, ymax = bounds(out)
    extent = max(xmax - xmin, ymax - ymin)
    if extent > 0:
        out[:, :2] *= size / extent
    return out


def normalizing_scale(drawings: Iterable[np.ndarray]) -> float:
    """The standard deviation of all ``dx`` and ``dy`` offsets of a corpus together (Sketch-RNN's
    normalising scale factor); 1.0 when there is nothing to measure or no spread."""
    offsets = [np.asarray(d, dtype=np.float64).reshape(-1, 3)[:, :2].ravel() for d in drawings]
    values = np.concatenate(offsets) if offsets else np.zeros(0)
    scale = float(np.std(values)) if len(values) else 0.0
    return scale if np.isfinite(scale) and scale > 0 else 1.0


def random_scale(rows: np.ndarray, rng: random.Random, amount: float = 0.15) -> np.ndarray:
    """A copy with ``dx`` and ``dy`` each multiplied by its own factor drawn from ``[1 - amount, 1 + amount]``
    (works on stroke-3 and stroke-5 rows alike)."""
    out = np.array(rows, dtype=np.float32, copy=True)
    out[:, 0] *= rng.uniform(1 - amount, 1 + amount)
    out[:, 1] *= rng.uniform(1 - amount, 1 + amount)
    return out


def drop_points(strokes: np.ndarray, rng: random.Random, probability: float = 0.1) -> np.ndarray:
    """Stroke-3 rows where each point inside a stroke (neither its first nor its last) is merged, with
    ``probability``, into the next point: that point's offset absorbs the dropped one, so every kept point
    stays where it was and each stroke keeps its ends (Sketch-RNN's stroke augmentation)."""
    strokes = np.asarray(strokes, dtype=np.float32).reshape(-1, 3)
    if probability <= 0 or len(strokes) < 3:
        return strokes.copy()
    kept: list[np.ndarray] = []
    carry = np.zeros(2, dtype=np.float32)
    for i, row in enumerate(strokes):
        inside = 0 < i < len(strokes) - 1 and strokes[i - 1, 2] < PEN_UP and row[2] < PEN_UP
        if inside and rng.random() < probability:
            carry += row[:2]
            continue
        kept.append(np.array([row[0] + carry[0], row[1] + carry[1], row[2]], dtype=np.float32))
        carry[:] = 0
    return np.stack(kept)
