"""Output formats for text: the text itself (``txt``, ``abc``) and ABC tunes rendered through music21
(``mid``, ``musicxml``).

A tune that music21 cannot read is not written as MIDI or MusicXML: the writer raises ``WriteSkipped``,
so that one bad tune among many does not stop the command, which counts it in its summary (the tune's
own line says "does not parse" too)."""

from __future__ import annotations

from pathlib import Path

from composer import WriteSkipped
from composer_text.tunes import TuneError, rendered


def write_text(item: str, path: Path) -> None:
    Path(path).write_text(item if item.endswith("\n") else item + "\n", encoding="utf-8")


def write_mid(item: str, path: Path) -> None:
    """A Standard MIDI file of an ABC tune; WriteSkipped when the tune does not parse."""
    try:
        Path(path).write_bytes(rendered(item).midi)
    except TuneError as exc:
        raise WriteSkipped(str(exc)) from None


def write_musicxml(item: str, path: Path) -> None:
    """A MusicXML score of an ABC tune; WriteSkipped when the tune does not parse or music21 cannot lay it
    out as a score."""
    try:
        score = rendered(item).score
    except TuneError as exc:
        raise WriteSkipped(str(exc)) from None
    try:
        score.write("musicxml", fp=str(path))
    except Exception as exc:  # music21's notation code fails on some irregular tunes that it reads
        raise WriteSkipped(f"music21 cannot write it as MusicXML: {type(exc).__name__}") from None

