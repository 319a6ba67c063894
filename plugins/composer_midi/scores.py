"""Conversion between music21 scores and PrettyMIDI. music21 is imported inside the functions: it takes
about a second to import and most commands never need it."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise
from typing import Any

import numpy as np
import pretty_midi
from composer_music21.scores import part_instruments

from composer_midi.notes import key_name, key_number, quarters, spelling

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


def midi_to_score(pm: pretty_midi.PrettyMIDI, title: str = "") -> Any:
    """A music21 score ready for a notation program: one part per instrument, notes on a grid of sixteenths
    and triplet eighths, overlapping notes of a part as chords, at the piece's first tempo.

    Titled ``title`` (the composer field says which style wrote it: "composer (style bach)"); in the piece's
    key (its key signature, else the key its notes suggest), every pitch spelled in that key (see
    :func:`~composer_midi.notes.spelling`); parts named and abbreviated on every system (S, A, T, B) with
    their clefs (the tenor in treble-8vb); leading silence shorter than a bar written as a pickup bar and
    the last chord held to the end of the bar that completes it (the pickup's complement, or a whole bar),
    with a fermata."""
    from music21 import expressions, instrument, key, metadata, meter, note, stream, tempo

    score = stream.Score()
    score.insert(0, metadata.Metadata(title=title, composer=f"composer (style {title})" if title else "composer"))
    _, tempi = pm.get_tempo_changes()
    first_ts = pm.time_signature_changes[0] if pm.time_signature_changes else pretty_midi.TimeSignature(4, 4, 0)
    bar = Fraction(first_ts.numerator * 4, first_ts.denominator)
    key_found = key_number(pm)
    names = spelling(key_found) if key_found is not None else None
    parts = [inst for inst in pm.instruments if inst.notes]
    timed = [_grid(pm, inst) for inst in parts]
    start = min(onset for notes in timed for onset, _, _ in notes) if timed else Fraction(0)
    shift = bar * (start // bar)  # whole bars of silence are left out
    lead = start - shift  # the silence before the first note in its bar: a pickup where > 0
    end = max(stop for notes in timed for _, stop, _ in notes) - shift if timed else Fraction(0)
    last_bar = bar * ((end - Fraction(1, 64)) // bar)
    closing = last_bar + (lead if lead and end - last_bar <= lead else bar)
    clefs = _clefs()
    for index, (inst, notes) in enumerate(zip(parts, timed, strict=True)):
        part = stream.Part(id=f"P{index + 1}")
        name = inst.name or ("Drums" if inst.is_drum else pretty_midi.program_to_instrument_name(inst.program))
        if inst.is_drum:
            played = instrument.UnpitchedPercussion()
        else:
            played = instrument.instrumentFromMidiProgram(inst.program)
        played.partId, played.instrumentId = part.id, f"{part.id}-I1"
        part.partName, part.partAbbreviation = name, _abbreviation(name, played)
        part.insert(0, played)
        part.insert(0, meter.TimeSignature(f"{first_ts.numerator}/{first_ts.denominator}"))
        if key_found is not None:
            part.insert(0, key.Key(*key_name(key_found).split()))
        if name in clefs:
            part.insert(0, clefs[name]())
        if index == 0 and len(tempi):
            part.insert(0, tempo.MetronomeMark(number=round(float(tempi[0]))))
        last_onset = max(onset for onset, _, _ in notes)
        for onset, stop, n in notes:
            if stop - shift == end or (onset == last_onset and stop - shift > last_bar):
                stop = closing + shift  # the last chord fills the last bar
            part.insert(onset - shift, _note(n, stop - onset, names))
        if part.highestTime < closing:
            part.insert(part.highestTime, note.Rest(quarterLength=closing - part.highestTime))
        if _overlaps(part):
            part = part.chordify()  # simultaneous notes as chords, held notes tied across others' onsets
        part.makeMeasures(inPlace=True)
        if lead:
            _make_pickup(part, lead)
        final = part.getElementsByClass(stream.Measure).last()
        final.paddingRight = float(last_bar + bar - closing)
        part.makeTies(inPlace=True)
        part.makeRests(fillGaps=True, timeRangeFromBarDuration=True, inPlace=True)  # shown, not hidden
        part.makeAccidentals(inPlace=True, cautionaryNotImmediateRepeat=False)  # F#, G, F#: one sharp in a bar
        for element in final.notes:
            if element.offset + element.quarterLength == final.highestTime:  # the last chord
                fermata = expressions.Fermata()
                fermata.type = "upright"
                element.expressions.append(fermata)
        score.insert(0, part)
    return score


VOICE_ABBREVIATIONS = {"Soprano": "S", "Alto": "A", "Tenor": "T", "Bass": "B"}


def _abbreviation(name: str, played: Any) -> str:
    """S, A, T, B for the four voices, V5 for "Voice 5", else the instrument's own abbreviation."""
    if name in VOICE_ABBREVIATIONS:
        return VOICE_ABBREVIATIONS[name]
    if name.startswith("Voice "):
        return "V" + name.split()[-1]
    return played.instrumentAbbreviation or name[:3]


def _clefs() -> dict[str, Any]:
    from music21 import clef

    return {"Soprano": clef.TrebleClef, "Alto": clef.TrebleClef, "Tenor": clef.Treble8vbClef, "Bass": clef.BassClef}


def _grid(pm: pretty_midi.PrettyMIDI, inst: pretty_midi.Instrument) -> list[tuple[Fraction, Fraction, Any]]:
    """The instrument's notes with their onsets and ends in quarters, snapped to the notation grid."""
    times = np.array([(n.start, n.end) for n in inst.notes], dtype=float)
    snapped = []
    for n, (start, end) in zip(inst.notes, quarters(pm, times), strict=True):
        onset = _snap(start)
        snapped.append((onset, onset + max(_snap(end) - onset, Fraction(1, 4)), n))
    return snapped


def _note(n: pretty_midi.Note, length: Fraction, names: list[tuple[str, int]] | None) -> Any:
    """A music21 note of ``length`` quarters, spelled as ``names`` (by pitch class) has it."""
    from music21 import note, pitch

    if names is None:
        played = note.Note(n.pitch, quarterLength=length)
    else:
        letter, alter = names[n.pitch % 12]
        written = pitch.Pitch(letter + {-1: "-", 0: "", 1: "#"}[alter], octave=(n.pitch - alter) // 12 - 1)
        played = note.Note(written, quarterLength=length)
    played.volume.velocity = n.velocity
    return played


def _make_pickup(part: Any, lead: Fraction) -> None:
    """Turn the first measure, silent for its first ``lead`` quarters, into a pickup bar numbered 0."""
    from music21 import note, stream

    measures = list(part.getElementsByClass(stream.Measure))
    first = measures[0]
    for rest in list(first.getElementsByClass(note.Rest)):
        first.remove(rest)
    for element in first.notesAndRests:
        first.coreSetElementOffset(element, element.offset - lead)
    first.coreElementsChanged()
    first.paddingLeft = float(lead)
    first.showNumber = stream.enums.ShowNumber.NEVER  # written implicit="yes": not counted as a bar
    for measure in measures:
        measure.number -= 1


def _snap(quarter: float) -> Fraction:
    """The nearest sixteenth or triplet eighth."""
    return min(Fraction(round(quarter * 4), 4), Fraction(round(quarter * 3), 3), key=lambda q: abs(q - quarter))


def _overlaps(part: Any) -> bool:
    notes = sorted(part.notes, key=lambda n: n.offset)
    return any(b.offset < a.offset + a.quarterLength for a, b in pairwise(notes))
