"""Reading drum tracks from MIDI files and writing generated ones."""

from __future__ import annotations

import warnings
from pathlib import Path

import pretty_midi
from composer import ComposerError

from composer_drums.classes import drum_class

SUFFIXES = (".mid", ".midi")


def read_drum_file(path: str | Path) -> list[pretty_midi.PrettyMIDI]:
    """A MIDI file's drum tracks (``is_drum``: MIDI channel 10) as one piece; the pitched tracks are
    dropped. A file without a drum track, or whose drum notes are all outside the table, is refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ComposerError(f"not a readable MIDI file ({reason})") from exc
    drums = [inst for inst in pm.instruments if inst.is_drum and inst.notes]
    if not drums:
        raise ComposerError("no drum track (no notes on MIDI channel 10)")
    if not any(drum_class(note.pitch) is not None for inst in drums for note in inst.notes):
        raise ComposerError("drum track holds no General MIDI percussion pitch")
    pm.instruments = drums
    return [pm]


def write_mid(item: pretty_midi.PrettyMIDI, path: str | Path) -> None:
    """A Standard MIDI file; pretty_midi writes drum instruments on channel index 9 (MIDI channel 10)."""
    for inst in item.instruments:
        inst.is_drum = True
    item.write(str(path))
