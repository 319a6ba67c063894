"""The item of the strokes modality: one drawing in stroke-3 format."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class Drawing:
    """A pen drawing as stroke-3 rows ``(dx, dy, p)``, float32 ``[N, 3]``.

    ``dx, dy`` is the offset from the previous point (the first row's from the origin), ``y`` grows
    downwards (image and SVG convention, as QuickDraw), and ``p = 1`` means the pen lifts after this
    point, so the last point of every stroke has ``p = 1``. ``label`` is a class name (a glyph's
    character, a QuickDraw word) and ``split`` a dataset's own split (``"train"``, ``"valid"``,
    ``"test"``); the core reads both.
    """

    strokes: np.ndarray
    label: str | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        strokes = np.asarray(self.strokes, dtype=np.float32)
        if strokes.size == 0:
            strokes = strokes.reshape(0, 3)
        if strokes.ndim != 2 or strokes.shape[1] != 3:
            raise ValueError(f"a drawing needs stroke-3 rows [N, 3], got shape {list(strokes.shape)}")
        self.strokes = strokes

    @property
    def num_points(self) -> int:
        return len(self.strokes)

    @property
    def num_strokes(self) -> int:
        """Strokes drawn: pen lifts, plus an unfinished last stroke."""
        if not len(self.strokes):
            return 0
        lifts = int(np.count_nonzero(self.strokes[:, 2] >= 0.5))
        return lifts + int(self.strokes[-1, 2] < 0.5)

    def size(self) -> str:
        """``"5 strokes, 83 points"``."""
        strokes, points = self.num_strokes, self.num_points
        return f"{strokes} stroke{'s' * (strokes != 1)}, {points} point{'s' * (points != 1)}"

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label is not None else ""
        split = f", split={self.split!r}" if self.split is not None else ""
        return f"Drawing({self.size()}{label}{split})"
