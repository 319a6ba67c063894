"""Corpus sources for drawings: the Hershey vector fonts (``hershey:NAME``), Sketch-RNN / QuickDraw
``.npz`` files, QuickDraw's simplified ``.ndjson`` files, and ``.svg`` files.

Every ``load`` is a module-level function of its reference alone (the host may run it in worker
processes) and returns :class:`Drawing` items. A file that cannot be read raises an exception whose
one-line message names it; drawings skipped inside a file that is otherwise read are counted in one
``warning:`` line on stderr.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from composer import ComposerError
from composer_strokes import strokes as st
from composer_strokes.drawing import Drawing
from composer_strokes.npz import read_npz
from composer_strokes.svg import read_svg

HERSHEY = "hershey"
ALL = "all"
# The fonts of the hershey-fonts package whose printable ASCII characters are Latin letters, digits and
# punctuation (looked at one by one): simplex, duplex, complex and triplex Roman, sans serif, script and
# gothic faces. The others map ASCII to Greek, Cyrillic, Japanese or symbol glyphs; they load by name.
LATIN_FONTS = (
    "futural", "futuram", "rowmans", "rowmand", "rowmant", "timesr", "timesrb", "timesi", "timesib",
    "cursive", "scripts", "scriptc", "gothiceng", "gothicger", "gothicita", "gothgbt", "gothgrt", "gothitt",
)
PRINTABLE = [chr(code) for code in range(33, 127)]  # printable ASCII without the space
NPZ_SUFFIXES = (".npz",)
NDJSON_SUFFIXES = (".ndjson",)
SVG_SUFFIXES = (".svg",)


def warn_skipped(name: str, skipped: Counter, total: int) -> None:
    """One line on stderr saying how many drawings of a file were skipped and why."""
    count = sum(skipped.values())
    if count:
        reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.most_common())
        print(f"warning: {name}: skipped {count} of {total} drawings ({reasons})", file=sys.stderr)


# -------------------------------------------------------------------------------------- Hershey


def _hershey() -> Any:
    try:
        from HersheyFonts import HersheyFonts
    except ImportError:
        raise ComposerError("hershey: the hershey-fonts package is not installed (pip install hershey-fonts)") from None
    return HersheyFonts()


def hershey_fonts() -> list[str]:
    """The fonts the installed hershey-fonts package ships."""
    return list(_hershey().default_font_names)


def list_hershey(name: str) -> list[str]:
    """References for ``hershey:NAME``: one font of the hershey-fonts package (any case) or ``all``, the
    Latin-alphabet fonts (:data:`LATIN_FONTS`)."""
    fonts = hershey_fonts()
    wanted = name.strip().lower()
    if wanted == ALL:
        return [f"{HERSHEY}:{font}" for font in LATIN_FONTS if font in fonts]
    matched = next((font for font in fonts if font.lower() == wanted), None)
    if matched is None:
        raise ComposerError(f"unknown Hershey font '{name}' (available: {ALL}, {', '.join(fonts)})")
    return [f"{HERSHEY}:{matched}"]


def load_hershey(ref: str) -> list[Drawing]:
    """One drawing per printable ASCII character (space and characters without strokes left out) of a
    Hershey font, labelled with the character, in font units (y down, the cap height is about 21) with the
    origin at the glyph's left edge on the font's centre line."""
    font = ref.removeprefix(f"{HERSHEY}:")
    fonts = _hershey()
    if font not in fonts.default_font_names:
        raise ComposerError(f"unknown Hershey font '{font}'")
    fonts.load_default_font(font)
    drawings = []
    for char in PRINTABLE:
        lines = [np.asarray(line, dtype=np.float64) for line in fonts.strokes_for_text(char)]
        rows = st.from_polylines(line for line in lines if len(line))
        if len(rows):
            drawings.append(Drawing(rows, label=char))
    return drawings


# ------------------------------------------------------------------------------- npz and ndjson


def load_npz(ref: str) -> list[Drawing]:
    """A Sketch-RNN ``.npz`` file (see :mod:`composer_strokes.npz`): its drawings with the split they come
    from, labelled with the file's stem (QuickDraw files hold one class each: ``cat.npz`` is "cat")."""
    found = read_npz(ref)
    label = Path(ref).stem
    warn_skipped(Path(ref).name, found.skipped, len(found.drawings) + sum(found.skipped.values()))
    return [Drawing(rows, label=label, split=split) for rows, split in found.drawings]


def parse_quickdraw(line: str) -> tuple[Drawing | None, str]:
    """One line of a QuickDraw simplified ``.ndjson`` file as a drawing labelled with its word, or None
    and why: a line that does not parse, holds a bad drawing, or was not recognized by the game."""
    try:
        record = json.loads(line)
    except ValueError:
        return None, "lines that do not parse"
    if not isinstance(record, dict):
        return None, "lines that are not JSON objects"
    if record.get("recognized") is False:
        return None, "not recognized"
    word = record.get("word")
    polylines = _quickdraw_strokes(record.get("drawing"))
    if polylines is None or not (word is None or isinstance(word, str)):
        return None, "bad drawings"
    return Drawing(st.from_polylines(polylines), label=word), ""


def _quickdraw_strokes(drawing: Any) -> list[np.ndarray] | None:
    """``[[x0, x1, ...], [y0, y1, ...](, [t0, ...])]`` per stroke as polylines, or None if malformed."""
    if not isinstance(drawing, list) or not drawing:
        return None
    lines = []
    for stroke in drawing:
        if not isinstance(stroke, list) or len(stroke) < 2:
            return None
        xs, ys = stroke[0], stroke[1]
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys) or not xs:
            return None
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs + ys):
            return None
        try:
            line = np.column_stack([np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)])
        except OverflowError:  # an integer too large for a float
            return None
        if not np.isfinite(line).all():
            return None
        lines.append(line)
    return lines


def load_ndjson(ref: str) -> list[Drawing]:
    """A QuickDraw simplified ``.ndjson`` file: one drawing per line, labelled with its ``word``. Lines that
    do not parse or hold bad data are skipped and counted, and so are drawings the game did not recognize
    (``"recognized": false``): the game's classifier did not read them as their word, so they would teach
    the class shapes that are not it."""
    name = Path(ref).name
    drawings, skipped = [], Counter()
    try:
        with open(ref, encoding="utf-8", errors="replace") as file:
            for line in file:
                if not line.strip():
                    continue
                drawing, reason = parse_quickdraw(line)
                if drawing is None:
                    skipped[reason] += 1
                else:
                    drawings.append(drawing)
    except OSError as exc:
        raise ComposerError(f"{name}: {exc.strerror or 'cannot read it'}") from None
    if not drawings:
        raise ComposerError(f"{name}: no usable QuickDraw drawing in it ({sum(skipped.values())} lines skipped)")
    warn_skipped(name, skipped, len(drawings) + sum(skipped.values()))
    return drawings


# ------------------------------------------------------------------------------------------ SVG


def load_svg(ref: str) -> list[Drawing]:
    """An SVG file as one drawing in its own coordinates, labelled with its ``<title>`` if it has one (the
    svg writer puts a drawing's label there)."""
    lines, title = read_svg(ref)
    return [Drawing(st.from_polylines(lines), label=title)]
