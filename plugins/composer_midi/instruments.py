"""Instruments and tempo chosen when generating: the MIDI encoders' ``-O program``, ``-O programs`` and
``-O tempo`` requests, read into keyword arguments for their ``decode``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pretty_midi

from composer import ComposerError

MIN_TEMPO, MAX_TEMPO = 20.0, 400.0  # quarter notes per minute
# Short names for the General MIDI programs most asked for; the full names (pretty_midi's) work too.
PROGRAM_WORDS = {
    "piano": 0, "harpsichord": 6, "organ": 19, "guitar": 24, "bass": 32, "violin": 40, "viola": 41, "cello": 42,
    "contrabass": 43, "strings": 48, "choir": 52, "voice": 53, "trumpet": 56, "trombone": 57, "tuba": 58,
    "horn": 60, "brass": 61, "oboe": 68, "bassoon": 70, "clarinet": 71, "flute": 73, "recorder": 74,
}
MOST_PROGRAMS = 16  # one per MIDI channel


def program_number(value: Any) -> int:
    """A General MIDI program, 0-127 as pretty_midi counts them (0 Acoustic Grand Piano, 52 Choir Aahs),
    from a number or a name in any case: a short one (piano, organ, strings, choir, ...) or a full General
    MIDI name ("Church Organ")."""
    text = str(value).strip()
    names = {name.lower(): number for number, name in enumerate(pretty_midi.constants.INSTRUMENT_MAP)}
    found = PROGRAM_WORDS.get(text.lower(), names.get(text.lower()))
    if found is not None:
        return found
    try:
        number = int(text)
    except ValueError:
        raise ComposerError(f"unknown instrument '{text}': give a General MIDI program 0..127 or a name "
                            f"({', '.join(PROGRAM_WORDS)}, or a General MIDI name such as 'Church Organ')") from None
    if not 0 <= number <= 127:
        raise ComposerError(f"a General MIDI program is 0..127, got {number}")
    return number


def decoding(tempo: Any = None, program: Any = None, programs: Any = None) -> dict[str, Any]:
    """Keyword arguments for a MIDI encoder's ``decode`` from the requests: ``tempo`` (quarter notes per
    minute, 20-400) and ``programs``, a tuple with one program per part from the top: ``programs`` itself
    (a list, or text such as "52,52,52,32" or "choir,choir,choir,cello"; parts beyond it take its last) or
    ``program`` for every part."""
    chosen: dict[str, Any] = {}
    if tempo is not None:
        try:
            bpm = float(tempo)
        except (TypeError, ValueError):
            raise ComposerError(f"tempo is a number of quarter notes per minute, got '{tempo}'") from None
        if not MIN_TEMPO <= bpm <= MAX_TEMPO:
            raise ComposerError(f"tempo must be between {MIN_TEMPO:g} and {MAX_TEMPO:g} quarter notes per minute, "
                                f"got {bpm:g}")
        chosen["tempo"] = bpm
    if program is not None and programs is not None:
        raise ComposerError("give program (one for every part) or programs (one per part), not both")
    if program is not None:
        chosen["programs"] = (program_number(program),)
    elif programs is not None:
        words = programs.split(",") if isinstance(programs, str) else programs
        if not isinstance(words, Sequence) or not 1 <= len(words) <= MOST_PROGRAMS:
            raise ComposerError(f"programs lists 1 to {MOST_PROGRAMS} instruments separated by commas, "
                                f"e.g. 52,52,52,32, got '{programs}'")
        chosen["programs"] = tuple(program_number(word) for word in words)
    return chosen


def part_program(programs: Sequence[int] | None, part: int, default: int) -> int:
    """The program of part ``part`` (0 = the top one): ``programs``' entry, its last one beyond its end, or
    ``default`` without programs."""
    return programs[min(part, len(programs) - 1)] if programs else default
