"""Objective statistics of polyphonic pieces, for ``composer evaluate``: generated pieces beside the corpus.

Pieces are read on the step grid and split into voices (top voice first) the same way decoding does,
so a corpus piece and a generated one are measured alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pretty_midi

from composer_midi.harmony import SATB_RANGES, ends_on_tonic, in_range
from composer_midi.notes import Note, quantize
from composer_midi.voices import assign_voices

VOICE_NAMES = ("soprano", "alto", "tenor", "bass")
SCALES = [np.roll([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], k) for k in range(12)] + [  # major, natural minor
    np.roll([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], k) for k in range(12)
]


def grid(pm: pretty_midi.PrettyMIDI, steps_per_quarter: int) -> list[Note]:
    return quantize(pm, steps_per_quarter) if any(i.notes for i in pm.instruments) else []


def pitch_class_histogram(pieces: Sequence[list[Note]]) -> np.ndarray:
    counts = np.zeros(12)
    for notes in pieces:
        for note in notes:
            counts[note.pitch % 12] += note.end - note.start
    return counts / max(counts.sum(), 1)


def scale_consistency(notes: list[Note]) -> float:
    """The largest share of notes that fall in one major or natural-minor scale (MusPy's definition)."""
    if not notes:
        return 0.0
    classes = np.bincount([n.pitch % 12 for n in notes], minlength=12)
    return float(max(classes @ scale for scale in SCALES) / len(notes))


def voices(notes: list[Note], count: int = 4) -> list[list[Note]] | None:
    voice_of = assign_voices(notes, count)
    if voice_of is None:
        return None
    parts: list[list[Note]] = [[] for _ in range(count)]
    for note, voice in zip(notes, voice_of, strict=True):
        parts[voice].append(note)
    return parts


def parallels(parts: list[list[Note]]) -> tuple[int, int, int]:
    """(parallel fifths, parallel octaves or unisons, voice-leading steps) between every pair of voices.

    A voice-leading step is a move from one onset to the next in which at least one voice takes a new
    note; a parallel is two voices that both move, in the same direction, from a perfect fifth (or
    octave/unison, compound intervals included) to another."""
    length = max((n.end for p in parts for n in p), default=0)
    sounding = np.full((len(parts), length), -1)
    onset = np.zeros(length, dtype=bool)
    for v, part in enumerate(parts):
        for note in part:
            sounding[v, note.start:note.end] = note.pitch
            onset[note.start] = True
    times = np.flatnonzero(onset)
    fifths = octaves = moves = 0
    for a, b in zip(times[:-1], times[1:]):
        before, after = sounding[:, a], sounding[:, b]
        moving = (before >= 0) & (after >= 0) & (before != after)
        if not moving.any():
            continue
        moves += 1
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                if not (moving[i] and moving[j]) or np.sign(after[i] - before[i]) != np.sign(after[j] - before[j]):
                    continue
                first, second = (before[i] - before[j]) % 12, (after[i] - after[j]) % 12
                fifths += int(first == 7 and second == 7)
                octaves += int(first == 0 and second == 0)
    return fifths, octaves, moves


def statistics(items: Sequence[pretty_midi.PrettyMIDI], steps_per_quarter: int, bar_steps: int,
               reference: Sequence[pretty_midi.PrettyMIDI] | None = None) -> dict[str, float | str]:
    pieces = [grid(pm, steps_per_quarter) for pm in items]
    pieces = [p for p in pieces if p]
    if not pieces:
        return {"pieces": 0}
    stats: dict[str, float | str] = {"pieces": len(pieces)}
    lengths = [max(n.end for n in p) for p in pieces]
    stats["bars"] = float(np.mean(lengths)) / bar_steps
    stats["notes per bar"] = float(np.mean([len(p) / (n / bar_steps) for p, n in zip(pieces, lengths)]))
    poly = []
    for p, n in zip(pieces, lengths):
        per_step = np.zeros(n)
        for note in p:
            per_step[note.start:note.end] += 1
        poly.append(per_step[per_step > 0].mean())
    stats["polyphony"] = float(np.mean(poly))
    stats["scale consistency"] = float(np.mean([scale_consistency(p) for p in pieces]))
    stats["ending on the tonic"] = float(np.mean([ends_on_tonic(p) for p in pieces]))
    if reference is not None:
        ref = [grid(pm, steps_per_quarter) for pm in reference]
        distance = np.abs(pitch_class_histogram(pieces) - pitch_class_histogram([r for r in ref if r])).sum() / 2
        stats["pitch-class histogram distance"] = float(distance)
    split = [v for v in (voices(p) for p in pieces) if v is not None]
    stats["pieces in 4 voices"] = len(split) / len(pieces)
    if split:
        for k, name in enumerate(VOICE_NAMES):
            pitches = [n.pitch for parts in split for n in parts[k]]
            if pitches:
                low, high = np.percentile(pitches, [5, 95])
                stats[f"{name} range (5-95%)"] = f"{_name(int(low))}-{_name(int(high))}"
        inside = np.sum([in_range(parts) for parts in split], axis=0)
        for name, (low, high), (count, total) in zip(VOICE_NAMES, SATB_RANGES, inside):
            stats[f"{name} notes in {_name(low)}-{_name(high)}"] = count / max(total, 1)
        counts = np.array([parallels(parts) for parts in split]).sum(axis=0)
        stats["parallel 5ths per 100 steps"] = 100 * counts[0] / max(counts[2], 1)
        stats["parallel 8ves per 100 steps"] = 100 * counts[1] / max(counts[2], 1)
    return stats


def _name(pitch: int) -> str:
    return pretty_midi.note_number_to_name(pitch)
