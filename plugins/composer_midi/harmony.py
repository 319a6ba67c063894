"""Keys, chords and voice ranges of four-part pieces: what ``composer evaluate`` measures and what the
chorale constraint (:mod:`composer_midi.chorale`) steers toward.

Keys are estimated from duration-weighted pitch classes with the Aarden-Essen profiles that
:func:`composer_midi.notes.key_number` uses; key numbers are pretty_midi's (0-11 major, 12-23 minor).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from composer_midi.notes import Note, best_key

# Voice ranges (MIDI pitches, inclusive), top voice first: soprano C4-G5, alto G3-D5, tenor C3-G4, bass E2-C4.
SATB_RANGES = ((60, 79), (55, 74), (48, 67), (40, 60))
MAJOR_THIRD, MINOR_THIRD, FIFTH, MINOR_SEVENTH = 4, 3, 7, 10
# Chords as intervals above their root: triads, seventh chords, a bare fifth, a lone root.
CHORDS = ({0, 4, 7}, {0, 3, 7}, {0, 3, 6}, {0, 4, 8}, {0, 4, 7, 10}, {0, 3, 7, 10}, {0, 3, 6, 10}, {0, 4, 7, 11},
          {0, 3, 6, 9}, {0, 7}, {0})


def key_of(notes: Sequence[Note]) -> int:
    """The key number that best fits the notes' duration-weighted pitch classes."""
    histogram = np.zeros(12)
    for note in notes:
        histogram[note.pitch % 12] += note.end - note.start
    return int(best_key(histogram))


def chord_root(pitches: Sequence[int]) -> int | None:
    """The root's pitch class of the chord that ``pitches`` sound, or None for silence.

    The root is the note above which the other pitch classes form the most complete chord in :data:`CHORDS`
    (the fewest chord tones missing); ties go to the bass, then to the lowest other note. Where no note fits,
    the bass is the root."""
    if not len(pitches):
        return None
    ordered = sorted(pitches)
    classes = {p % 12 for p in ordered}
    best: tuple[int, int] | None = None  # (missing chord tones, position in the chord from the bass)
    root = ordered[0] % 12
    for position, pitch in enumerate(ordered):
        intervals = {(c - pitch) % 12 for c in classes}
        missing = [len(chord - intervals) for chord in CHORDS if intervals <= chord]
        if missing and (best is None or (min(missing), position) < best):
            best, root = (min(missing), position), pitch % 12
    return root


def final_chord(notes: Sequence[Note]) -> list[int]:
    """The pitches sounding at the piece's last step."""
    last = max((n.end for n in notes), default=0) - 1
    return [n.pitch for n in notes if n.start <= last < n.end]


def ends_on_tonic(notes: Sequence[Note]) -> bool:
    """Whether the last sonority's root is the tonic of the key estimated from the whole piece."""
    root = chord_root(final_chord(notes))
    return root is not None and root == key_of(notes) % 12


def in_range(parts: Sequence[Sequence[Note]]) -> np.ndarray:
    """[voices, 2]: per voice (soprano first), how many of its notes lie in its SATB range, and how many it has."""
    counts = np.zeros((len(SATB_RANGES), 2), dtype=np.int64)
    for voice, (part, (low, high)) in enumerate(zip(parts, SATB_RANGES)):
        counts[voice] = sum(low <= n.pitch <= high for n in part), len(part)
    return counts
