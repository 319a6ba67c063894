"""The nine drum classes and the General MIDI percussion pitches that fall into each.

The grouping follows the one Magenta's Drums RNN uses (its default drum-type table): every pitch of
the General MIDI percussion map (35-81) and a few common extensions (22-34, 82-87) belongs to exactly
one class. Decoding plays each class on its first (representative) pitch."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "kick",
    "snare",
    "closed hi-hat",
    "open hi-hat",
    "low tom",
    "mid tom",
    "high tom",
    "crash",
    "ride",
)

# class -> pitches; the first pitch is the one decode() writes
CLASS_PITCHES: tuple[tuple[int, ...], ...] = (
    (36, 35),  # kick: bass drum 1, acoustic bass drum
    (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85),  # snare, side stick, clap, cowbell, timbales...
    (42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22),  # closed hi-hat, pedal hi-hat, tambourine, shakers...
    (46, 67, 72, 74, 79, 81, 26),  # open hi-hat, long whistle/guiro, open triangle...
    (45, 29, 41, 43, 61, 64, 84),  # low tom, low floor tom, high floor tom, low bongo/conga...
    (48, 47, 60, 63, 77, 86, 87),  # hi-mid tom, low-mid tom, high bongo, open high conga...
    (50, 30, 62, 76, 83),  # high tom, muted high conga, high wood block...
    (49, 52, 55, 57, 58),  # crash 1 and 2, Chinese cymbal, splash, vibraslap
    (51, 53, 59, 82),  # ride 1 and 2, ride bell, shaker
)

NUM_CLASSES = len(CLASS_NAMES)
REPRESENTATIVE: tuple[int, ...] = tuple(pitches[0] for pitches in CLASS_PITCHES)
PITCH_TO_CLASS: dict[int, int] = {pitch: cls for cls, pitches in enumerate(CLASS_PITCHES) for pitch in pitches}


def drum_class(pitch: int) -> int | None:
    """The class index of a percussion pitch, or None for a pitch outside the table."""
    return PITCH_TO_CLASS.get(int(pitch))


def table() -> str:
    """The table as text, one line per class (for the README and `--help`-style listings)."""
    return "\n".join(
        f"{name:14s} {REPRESENTATIVE[i]:3d}  <- {', '.join(map(str, sorted(CLASS_PITCHES[i])))}"
        for i, name in enumerate(CLASS_NAMES)
    )
