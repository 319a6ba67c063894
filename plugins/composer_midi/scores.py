"""Conversion between music21 scores and PrettyMIDI. music21 is imported inside the functions: it takes
about a second to import and most commands never need it."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise
from typing import Any

import numpy as np
import pretty_midi
from composer_music21.scores import part_instruments

from composer_midi.notes import key_name, key_number, quarters

DEFAULT_TEMPO = 100.0  # quarter notes per minute where a score gives none


def score_to_midi(score: Any) -> pretty_midi.PrettyMIDI:
    """A music21 score as PrettyMIDI: one instrument per part, ties merged, grace notes left out, repeats
    played once, at the score's first tempo mark (or 100 quarters per minute) throughout. A pickup bar
    is padded with silence so that bar lines fall on whole bars. Strips the score's ties."""
    from music21 import key, meter, stream, tempo

    marks = list(score.recurse().getElementsByClass(tempo.MetronomeMark))
    bpm = next((m.getQuarterBPM() for m in marks if m.getQuarterBPM()), DEFAULT_TEMPO)
    seconds = 60.0 / bpm
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    parts = list(score.parts) or [score]
    first_measure = parts[0].getElementsByClass(stream.Measure).first()
    pickup = float(first_measure.paddingLeft) if first_measure is not None else 0.0

    def signature_time(offset: float) -> float:
        """Seconds at which a meter or key at a flat offset applies: from the start for the first ones."""
        return (float(offset) + pickup) * seconds if offset else 0.0

    pm.instruments = part_instruments(score, seconds, pickup)
    flat = parts[0].flatten()
    for ts in flat.getElementsByClass(meter.TimeSignature):
        pm.time_signature_changes.append(
            pretty_midi.TimeSignature(ts.numerator, ts.denominator, signature_time(ts.offset))
        )
    for ks in flat.getElementsByClass(key.KeySignature):
        found_key = ks if isinstance(ks, key.Key) and ks.mode in ("major", "minor") else ks.asKey("major")
        number = found_key.tonic.pitchClass + (12 if found_key.mode == "minor" else 0)
        pm.key_signature_changes.append(pretty_midi.KeySignature(number, signature_time(ks.offset)))
    return pm


def midi_to_score(pm: pretty_midi.PrettyMIDI) -> Any:
    """A music21 score with one part per instrument, its notes on a grid of sixteenths and triplet
    eighths, overlapping notes of a part written as chords, at the piece's first tempo."""
    from music21 import instrument, key, meter, note, stream, tempo

    score = stream.Score()
    _, tempi = pm.get_tempo_changes()
    first_ts = pm.time_signature_changes[0] if pm.time_signature_changes else pretty_midi.TimeSignature(4, 4, 0)
    key_found = key_number(pm)
    for index, inst in enumerate(i for i in pm.instruments if i.notes):
        part = stream.Part()
        part.partName = inst.name or ("Drums" if inst.is_drum else pretty_midi.program_to_instrument_name(inst.program))
        if inst.is_drum:
            part.insert(0, instrument.UnpitchedPercussion())
        else:
            part.insert(0, instrument.instrumentFromMidiProgram(inst.program))
        part.insert(0, meter.TimeSignature(f"{first_ts.numerator}/{first_ts.denominator}"))
        if key_found is not None:
            part.insert(0, key.Key(*key_name(key_found).split()))
        if index == 0 and len(tempi):
            part.insert(0, tempo.MetronomeMark(number=round(float(tempi[0]))))
        times = np.array([(n.start, n.end) for n in inst.notes], dtype=float)
        for n, (start, end) in zip(inst.notes, quarters(pm, times), strict=True):
            onset = _snap(start)
            played = note.Note(n.pitch, quarterLength=max(_snap(end) - onset, Fraction(1, 4)))
            played.volume.velocity = n.velocity
            part.insert(onset, played)
        if _overlaps(part):
            part = part.chordify()  # simultaneous notes as chords, held notes tied across others' onsets
        score.insert(0, part)
    return score


def _snap(quarter: float) -> Fraction:
    """The nearest sixteenth or triplet eighth."""
    return min(Fraction(round(quarter * 4), 4), Fraction(round(quarter * 3), 3), key=lambda q: abs(q - quarter))


def _overlaps(part: Any) -> bool:
    notes = sorted(part.notes, key=lambda n: n.offset)
    return any(b.offset < a.offset + a.quarterLength for a, b in pairwise(notes))
