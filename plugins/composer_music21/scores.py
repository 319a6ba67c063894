"""The parts of music21 scores as PrettyMIDI instruments. music21 is imported inside the function: it
takes about a second to import and most commands never need it."""

from __future__ import annotations

from typing import Any

import pretty_midi

DEFAULT_VELOCITY = 80


def part_instruments(
    score: Any, seconds_per_quarter: float, pickup: float = 0.0, velocity: int = DEFAULT_VELOCITY
) -> list[pretty_midi.Instrument]:
    """One instrument per part of a music21 score (its program, drums or not, and name), playing the part's
    notes ``pickup`` quarters later than written: ties merged, grace notes left out, repeats played once,
    notes without a velocity of their own at ``velocity``. Strips the ties of the score itself (a copy
    would take most of the time): pass one that may change."""
    from music21 import instrument

    instruments = []
    for part in list(score.parts) or [score]:
        found = part.getInstrument(returnDefault=False)
        is_drum = isinstance(found, instrument.UnpitchedPercussion)
        program = found.midiProgram if found is not None and found.midiProgram is not None else 0
        name = part.partName or (found.instrumentName if found is not None else None) or ""
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum, name=name)
        part.stripTies(inPlace=True)
        for element in part.flatten().notes:
            if element.duration.isGrace or element.quarterLength <= 0:
                continue
            start = (float(element.offset) + pickup) * seconds_per_quarter
            end = start + float(element.quarterLength) * seconds_per_quarter
            loudness = element.volume.velocity or velocity
            for pitch in element.pitches:
                if 0 <= pitch.midi <= 127:
                    inst.notes.append(pretty_midi.Note(loudness, pitch.midi, start, end))
        instruments.append(inst)
    return instruments
