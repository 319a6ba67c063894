"""The built-in strokes plugin: pen drawings in the manner of Sketch-RNN (Ha & Eck 2017).

Items are :class:`Drawing` objects (stroke-3 rows, y down, with an optional ``label`` and ``split``).
Encoder: ``strokes`` (stroke-5 rows for a mixture-density model). Corpora: ``hershey:NAME`` (the Hershey
vector fonts, one drawing per printable ASCII character; ``hershey:all`` is the Latin-alphabet fonts),
Sketch-RNN / QuickDraw ``.npz`` files (read without unpickling anything but numpy arrays), QuickDraw
simplified ``.ndjson`` files and ``.svg`` files. Formats: ``svg`` and ``png`` (matplotlib), one drawing per
file or all of a run on one contact sheet.

Importing the plugin is cheap: matplotlib and hershey-fonts are imported where they are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from composer import CorpusSource, Writer, hookimpl
from composer_strokes import corpora, writers
from composer_strokes.drawing import Drawing
from composer_strokes.encoder import StrokeEncoder

__all__ = ["Drawing", "StrokeEncoder"]

MODALITY = "strokes"


@hookimpl
def register_encoders(register: Callable[[Any], None]) -> None:
    register(StrokeEncoder)


@hookimpl
def register_corpora(register: Callable[[Any], None]) -> None:
    register(
        CorpusSource(
            name=corpora.HERSHEY,
            modality=MODALITY,
            load=corpora.load_hershey,
            list=corpora.list_hershey,
            description="the Hershey vector fonts, one drawing per printable ASCII character labelled with it: "
            "hershey:futural, hershey:timesr, ...; hershey:all is the 18 Latin-alphabet fonts",
        )
    )
    register(
        CorpusSource(
            name="quickdraw-npz",
            modality=MODALITY,
            load=corpora.load_npz,
            suffixes=corpora.NPZ_SUFFIXES,
            description="Sketch-RNN / QuickDraw .npz files (train, valid, test arrays of stroke-3 drawings; "
            "the split is kept, the label is the file's name)",
        )
    )
    register(
        CorpusSource(
            name="quickdraw-ndjson",
            modality=MODALITY,
            load=corpora.load_ndjson,
            suffixes=corpora.NDJSON_SUFFIXES,
            description="QuickDraw simplified .ndjson files, one drawing per line labelled with its word "
            "(unrecognized drawings are skipped)",
        )
    )
    register(
        CorpusSource(
            name="svg-files",
            modality=MODALITY,
            load=corpora.load_svg,
            suffixes=corpora.SVG_SUFFIXES,
            description="SVG files, one drawing per file from its paths, polylines, polygons, lines and shapes",
        )
    )


@hookimpl
def register_writers(register: Callable[[Any], None]) -> None:
    register(Writer("svg", MODALITY, ".svg", writers.write_svg, description="the drawing as SVG polylines",
                    write_grid=writers.write_svg_grid))
    register(Writer("png", MODALITY, ".png", writers.write_png, available=writers.png_available,
                    description="the drawing as a PNG image (matplotlib)", write_grid=writers.write_png_grid))
