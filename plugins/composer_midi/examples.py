"""Small pieces built in code, for the encoders' ``example_items``."""

from __future__ import annotations

import pretty_midi

TEMPO = 100.0
BEAT = 60.0 / TEMPO


def example_pieces() -> list[pretty_midi.PrettyMIDI]:
    """A scale (one part), a four-part cadence (SATB) and an unquantized piano phrase with dynamics."""
    return [_scale(), _cadence(), _phrase()]


def _piece(parts: dict[str, list[tuple[int, float, float, int]]], program: int) -> pretty_midi.PrettyMIDI:
    """A 4/4 piece from parts of (pitch, start beat, end beat, velocity)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=TEMPO)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    for name, notes in parts.items():
        inst = pretty_midi.Instrument(program=program, name=name)
        inst.notes = [pretty_midi.Note(v, p, s * BEAT, e * BEAT) for p, s, e, v in notes]
        pm.instruments.append(inst)
    return pm


def _scale() -> pretty_midi.PrettyMIDI:
    pitches = [60, 62, 64, 65, 67, 69, 71, 72, 72, 71, 69, 67, 65, 64, 62, 60]
    notes = [(p, i / 2, i / 2 + 0.5, 80) for i, p in enumerate(pitches[:-1])] + [(60, 7.5, 9.0, 80)]
    return _piece({"Melody": notes}, program=73)


def _cadence() -> pretty_midi.PrettyMIDI:
    chords = [(72, 64, 55, 48), (72, 65, 57, 41), (71, 62, 55, 43), (72, 64, 52, 36)]
    voices = ("Soprano", "Alto", "Tenor", "Bass")
    parts = {
        name: [(chord[v], 2.0 * i, 2.0 * i + (4.0 if i == 3 else 2.0), 80) for i, chord in enumerate(chords)]
        for v, name in enumerate(voices)
    }
    return _piece(parts, program=52)


def _phrase() -> pretty_midi.PrettyMIDI:
    arpeggio = [
        (48, 0.00, 1.93, 52),
        (55, 0.26, 1.91, 61),
        (64, 0.51, 1.95, 70),
        (67, 0.77, 1.30, 83),
        (72, 1.02, 1.98, 96),
        (71, 1.37, 1.99, 77),
        (53, 2.03, 3.87, 49),
        (60, 2.29, 3.90, 58),
        (69, 2.55, 3.02, 66),
        (65, 2.80, 3.85, 63),
        (72, 3.04, 3.92, 71),
        (76, 3.31, 4.60, 88),
    ]
    return _piece({"Piano": arpeggio}, program=0)
