"""Notes on a grid of time steps: the common ground of the MIDI encoders, plus a piece's description."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pretty_midi

from composer import EncodeReport

MAJOR_KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # tonics as usually spelled
MINOR_KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
LETTERS, NATURALS = "CDEFGAB", (0, 2, 4, 5, 7, 9, 11)
# The scale degree (0 = the tonic's letter) each semitone above the tonic is written as: the scale, with
# the chromatic notes of tonal music as their usual alterations: in major #1 b3 #4 #5 b7 (secondary leading
# tones, mixture, the subdominant's b7); in minor b2 (Neapolitan), the raised 3 (Picardy third), #4 and the
# melodic minor's raised 6 and 7.
MAJOR_DEGREES = (0, 0, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6)
MINOR_DEGREES = (0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6)
# Aarden-Essen key profiles (Aarden 2003), the weights music21's key analysis uses by default, so the
# key we report is the one music21 finds from the same duration-weighted pitch classes.
MAJOR_PROFILE = np.array([17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624,
                          8.15494, 0.232998, 4.95122])
MINOR_PROFILE = np.array([18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621,
                          1.93186, 7.37619, 1.75623])


class Note(NamedTuple):
    """A note on the step grid; ``end`` is exclusive."""

    pitch: int
    start: int
    end: int


def pitched_notes(pm: pretty_midi.PrettyMIDI) -> list[pretty_midi.Note]:
    """Every note of every instrument except drums."""
    return [note for inst in pm.instruments if not inst.is_drum for note in inst.notes]


def quarters(pm: pretty_midi.PrettyMIDI, times: np.ndarray) -> np.ndarray:
    """Positions in quarter notes of times in seconds, following the piece's tempo changes."""
    change_times, tempi = pm.get_tempo_changes()  # never empty: a piece starts with a tempo
    # Quarters elapsed at each tempo change, then a linear stretch within each segment.
    elapsed = np.concatenate([[0.0], np.cumsum(np.diff(change_times) * tempi[:-1] / 60.0)])
    segment = np.clip(np.searchsorted(change_times, times, side="right") - 1, 0, None)
    return elapsed[segment] + (times - change_times[segment]) * tempi[segment] / 60.0


def quarters_per_bar(pm: pretty_midi.PrettyMIDI) -> float:
    """Bar length in quarters of the first time signature (4/4 when there is none)."""
    if not pm.time_signature_changes:
        return 4.0
    ts = pm.time_signature_changes[0]
    return ts.numerator * 4.0 / ts.denominator


def quantize(pm: pretty_midi.PrettyMIDI, steps_per_quarter: int) -> list[Note]:
    """The piece's pitched notes on a grid of ``steps_per_quarter`` steps per quarter note.

    Every note lasts at least one step; whole bars of silence at the start are dropped; a note that is
    struck again while it sounds ends there and the new one lasts as long as both would have."""
    source = pitched_notes(pm)
    if not source:
        return []
    times = np.array([(n.start, n.end) for n in source], dtype=float)
    steps = np.rint(quarters(pm, times) * steps_per_quarter).astype(int)
    steps[:, 1] = np.maximum(steps[:, 1], steps[:, 0] + 1)
    bar_steps = max(1, round(quarters_per_bar(pm) * steps_per_quarter))
    offset = (int(steps[:, 0].min()) // bar_steps) * bar_steps
    notes = [Note(n.pitch, int(s) - offset, int(e) - offset) for n, (s, e) in zip(source, steps, strict=True)]
    return merge_restrikes(notes)


def merge_restrikes(notes: Iterable[Note]) -> list[Note]:
    """Make notes of equal pitch disjoint: a re-struck note cuts the one sounding and lasts as long as
    both would have. Sorted by start, then by pitch descending."""
    by_pitch: dict[int, list[Note]] = defaultdict(list)
    for note in notes:
        by_pitch[note.pitch].append(note)
    merged = []
    for group in by_pitch.values():
        group.sort(key=lambda n: (n.start, -n.end))
        kept: list[Note] = []
        for note in group:
            if kept and note.start == kept[-1].start:
                continue  # the longer of two notes struck together is already kept
            if kept and note.start < kept[-1].end:
                held_until = kept[-1].end
                kept[-1] = kept[-1]._replace(end=note.start)
                note = note._replace(end=max(note.end, held_until))
            kept.append(note)
        merged.extend(kept)
    return sorted(merged, key=lambda n: (n.start, -n.pitch))


def skyline(notes: Sequence[Note]) -> list[Note]:
    """The top line: at every step the highest sounding note. A note that surfaces when a higher one
    ends starts anew there."""
    if not notes:
        return []
    length = max(n.end for n in notes)
    top = np.full(length, -1)
    onset = np.zeros(length, dtype=bool)
    for note in notes:
        higher = top[note.start : note.end] < note.pitch
        top[note.start : note.end][higher] = note.pitch
    for note in notes:
        if top[note.start] == note.pitch:
            onset[note.start] = True
    line = []
    for step in range(length):
        pitch = int(top[step])
        if pitch < 0:
            continue
        if line and line[-1].end == step and line[-1].pitch == pitch and not onset[step]:
            line[-1] = line[-1]._replace(end=step + 1)
        else:
            line.append(Note(pitch, step, step + 1))
    return line


def fit_range(notes: Sequence[Note], low: int, high: int) -> tuple[list[Note], EncodeReport]:
    """Fit notes into ``low..high``: transpose the whole piece by the fewest octaves that make it fit, or,
    where its span is too wide, drop the notes outside. Counts notes transposed and dropped."""
    if not notes:
        return [], EncodeReport()
    lowest, highest = min(n.pitch for n in notes), max(n.pitch for n in notes)
    if low <= lowest and highest <= high:
        return list(notes), EncodeReport()
    octaves = [k for k in range(-10, 11) if low <= lowest + 12 * k and highest + 12 * k <= high]
    if octaves:
        shift = 12 * min(octaves, key=abs)
        return [n._replace(pitch=n.pitch + shift) for n in notes], EncodeReport(transposed=len(notes))
    kept = [n for n in notes if low <= n.pitch <= high]
    return kept, EncodeReport(dropped=len(notes) - len(kept))


def transpose_tokens(seq: Sequence[int], rng: random.Random, most: int, notes: range, pitches: int) -> Sequence[int]:
    """The encoders' training augmentation: ``seq`` with its note tokens (those in ``notes``, each standing
    for the pitch ``(token - notes.start) % pitches`` of a range of ``pitches``) moved by one random shift in
    -most..+most semitones, drawn among the shifts that keep every note in the range. ``seq`` itself, and
    nothing drawn, when it has no note. A list gives a list; an array (maybe a read-only view) a new array."""
    tokens = np.asarray(seq)
    is_note = (tokens >= notes.start) & (tokens < notes.stop)
    if not is_note.any():
        return seq
    indices = (tokens[is_note].astype(np.int64) - notes.start) % pitches
    shift = rng.randint(-min(most, int(indices.min())), min(most, pitches - 1 - int(indices.max())))
    out = np.where(is_note, tokens + np.asarray(shift, dtype=tokens.dtype), tokens)  # a new array: seq is untouched
    return out.tolist() if isinstance(seq, list) else out


def to_seconds(notes: Iterable[Note], seconds_per_step: float, program: int, name: str) -> pretty_midi.Instrument:
    """An instrument playing grid notes at a fixed tempo."""
    inst = pretty_midi.Instrument(program=program, name=name)
    inst.notes = [
        pretty_midi.Note(velocity=80, pitch=n.pitch, start=n.start * seconds_per_step, end=n.end * seconds_per_step)
        for n in notes
    ]
    return inst


def new_midi(tempo: float) -> pretty_midi.PrettyMIDI:
    """An empty 4/4 piece at ``tempo`` quarter notes per minute, with an empty ``title`` (which
    :meth:`composer.Session.generate` sets to the style's name, and the MusicXML writer shows)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    pm.title = ""
    return pm


def key_number(pm: pretty_midi.PrettyMIDI) -> int | None:
    """The piece's key as a pretty_midi key number (0-11 major, 12-23 minor): its first key signature, or
    the best Aarden-Essen match of its duration-weighted pitch classes; None without notes."""
    if pm.key_signature_changes:
        return pm.key_signature_changes[0].key_number
    if not pitched_notes(pm):
        return None
    return int(best_key(pm.get_pitch_class_histogram(use_duration=True)))


def _key_profiles() -> np.ndarray:
    """[12, 24]: the profiles rotated to every tonic (major keys, then minor), centred and scaled to unit length,
    so that a histogram's product with a column ranks keys as its correlation with that profile does."""
    columns = [np.roll(profile, tonic) for profile in (MAJOR_PROFILE, MINOR_PROFILE) for tonic in range(12)]
    centred = np.array(columns).T - np.array(columns).T.mean(axis=0)
    return centred / np.linalg.norm(centred, axis=0)


KEY_PROFILES = _key_profiles()


def best_key(histogram: np.ndarray) -> np.ndarray:
    """The key number (0-11 major, 12-23 minor) whose profile best correlates with a pitch-class histogram
    [..., 12] (a duration-weighted count of each pitch class)."""
    return np.argmax(np.asarray(histogram, dtype=float) @ KEY_PROFILES, axis=-1)


def key_name(number: int) -> str:
    """A pretty_midi key number as words, e.g. "F# minor"."""
    return f"{MINOR_KEYS[number % 12]} minor" if number >= 12 else f"{MAJOR_KEYS[number]} major"


def spelling(number: int) -> list[tuple[str, int]]:
    """How each pitch class (0 = C) is written in a pretty_midi key (0-11 major, 12-23 minor): a letter and
    its alteration in semitones, e.g. ("D", -1) for pitch class 1 in A-flat major and ("C", 1) in D major.
    Where a degree would need a double sharp or flat, the plain sharp or flat of the key's signature is used."""
    minor = number >= 12
    tonic = number % 12
    tonic_letter = LETTERS.index((MINOR_KEYS if minor else MAJOR_KEYS)[tonic][0])
    degrees = MINOR_DEGREES if minor else MAJOR_DEGREES
    written = []
    for pc in range(12):
        letter = (tonic_letter + degrees[(pc - tonic) % 12]) % 7
        written.append((letter, (pc - NATURALS[letter] + 6) % 12 - 6))
    scale = (0, 2, 3, 5, 7, 8, 10) if minor else (0, 2, 4, 5, 7, 9, 11)
    plain = -1 if any(written[(tonic + step) % 12][1] < 0 for step in scale) else 1  # flats or sharps
    names = []
    for pc, (letter, alter) in enumerate(written):
        if abs(alter) > 1:
            letter = NATURALS.index(pc) if pc in NATURALS else NATURALS.index((pc - plain) % 12)
            alter = 0 if pc in NATURALS else plain
        names.append((LETTERS[letter], alter))
    return names


def add_key_signature(pm: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    """``pm`` with a key signature at the start, the key :func:`key_number` finds, where it has none."""
    number = key_number(pm)
    if number is not None and not pm.key_signature_changes:
        pm.key_signature_changes.append(pretty_midi.KeySignature(number, 0.0))
    return pm


def describe(pm: pretty_midi.PrettyMIDI) -> str:
    """E.g. "4 parts, 12 bars, A major"."""
    parts = sum(1 for inst in pm.instruments if inst.notes)
    end = pm.get_end_time()
    bars = math.ceil(float(quarters(pm, np.array([end]))[0]) / quarters_per_bar(pm) - 1e-6) if end else 0
    words = [f"{parts} part{'s' if parts != 1 else ''}", f"{bars} bar{'s' if bars != 1 else ''}"]
    key = key_number(pm)
    if key is not None:
        words.append(key_name(key))
    return ", ".join(words)
