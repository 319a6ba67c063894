"""Output formats for text: the text itself (``txt``, ``abc``) and ABC tunes rendered through music21
(``mid``, ``musicxml``).

A tune that music21 cannot read is not written as MIDI or MusicXML: the writer says so in one line on
stderr and returns, so that one bad tune among many does not stop the command (the summary line of the
tune says "does not parse" too)."""

from __future__ import annotations

import sys
from pathlib import Path

from composer_text.tunes import TuneError, rendered


def write_text(item: str, path: Path) -> None:
    Path(path).write_text(item if item.endswith("\n") else item + "\n", encoding="utf-8")


def write_mid(item: str, path: Path) -> None:
    """A Standard MIDI file of an ABC tune; nothing (and a warning) when the tune does not parse."""
    try:
        Path(path).write_bytes(rendered(item).midi)
    except TuneError as exc:
        _skipped(path, exc)


def write_musicxml(item: str, path: Path) -> None:
    """A MusicXML score of an ABC tune; nothing (and a warning) when the tune does not parse."""
    try:
        rendered(item).score.write("musicxml", fp=str(path))
    except TuneError as exc:
        _skipped(path, exc)


def _skipped(path: Path, exc: TuneError) -> None:
    print(f"warning: not writing {Path(path).name}: {exc}", file=sys.stderr)
