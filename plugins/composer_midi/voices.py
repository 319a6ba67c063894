"""Split polyphonic grid notes into voices (soprano, alto, ...) so that notation programs show parts."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from composer_midi.notes import Note

TOP_REGISTER, REGISTER_STEP = 72, 7  # where voices are assumed to sing before their first note (C5, F4, ...)
VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
MOST_VOICES = 8  # more notes at once than this is a keyboard texture: one track, not voices


def split_voices(notes: Sequence[Note], count: int) -> list[list[Note]] | None:
    """The notes as ``count`` voices, top first (see :func:`assign_voices`), or as many more as sound at once
    somewhere, up to :data:`MOST_VOICES`; None where even more sound at once. A voice may be empty."""
    most = max(count, most_at_once(notes))
    voice_of = assign_voices(notes, most) if most <= MOST_VOICES else None
    if voice_of is None:
        return None
    return [[n for n, v in zip(notes, voice_of, strict=True) if v == voice] for voice in range(most)]


def voice_names(count: int) -> list[str]:
    """Soprano, Alto, Tenor and Bass for four voices, else Voice 1, Voice 2, ... from the top."""
    return list(VOICE_NAMES) if count == len(VOICE_NAMES) else [f"Voice {v + 1}" for v in range(count)]


def most_at_once(notes: Sequence[Note]) -> int:
    """The most notes sounding at one time."""
    events = sorted([(n.start, 1) for n in notes] + [(n.end, -1) for n in notes])  # ends before starts
    sounding = most = 0
    for _, change in events:
        sounding += change
        most = max(most, sounding)
    return most


def assign_voices(notes: Sequence[Note], count: int) -> list[int] | None:
    """A voice number (0 = top) for every note, or None where more than ``count`` notes sound at once.

    A note keeps its voice while it sounds. At each onset the sounding notes are ordered by pitch and the
    new ones take free voices in that order, so voices do not cross: the top note goes to voice 0, any
    other new note to the free voice, among those that keep the order, whose last pitch is nearest.
    Where held notes leave no room in order, new notes take the free voices top down."""
    voice_of: dict[int, int] = {}
    last_pitch = {v: TOP_REGISTER - REGISTER_STEP * v for v in range(count)}  # until a voice has sung
    active: list[int] = []
    order = sorted(range(len(notes)), key=lambda i: notes[i].start)
    for start, group in groupby(order, key=lambda i: notes[i].start):
        active = [i for i in active if notes[i].end > start]
        new = list(group)
        sounding = sorted(active + new, key=lambda i: -notes[i].pitch)
        if len(sounding) > count:
            return None
        chosen = _in_order(sounding, voice_of, last_pitch, notes, count)
        if chosen is None:
            held = {voice_of[i] for i in active}
            free = [v for v in range(count) if v not in held]
            chosen = dict(zip(sorted(new, key=lambda i: -notes[i].pitch), free[: len(new)], strict=True))
        for i, voice in chosen.items():
            voice_of[i] = voice
            last_pitch[voice] = notes[i].pitch
        active += new
    return [voice_of[i] for i in range(len(notes))]


def _in_order(
    sounding: list[int], voice_of: dict[int, int], last_pitch: dict[int, int], notes: Sequence[Note], count: int
) -> dict[int, int] | None:
    """Voices for the new notes among ``sounding`` (pitch descending) keeping voice order, or None."""
    chosen: dict[int, int] = {}
    lowest_free = 0
    for rank, i in enumerate(sounding):
        if i in voice_of:
            if voice_of[i] < lowest_free:
                return None
            lowest_free = voice_of[i] + 1
            continue
        # Leave one voice for every note between this one and the next held note (or the bottom).
        highest = count - (len(sounding) - rank)
        for later, j in enumerate(sounding[rank + 1 :], start=rank + 1):
            if j in voice_of:
                highest = voice_of[j] - (later - rank)
                break
        if highest < lowest_free:
            return None
        if rank == 0:
            voice = lowest_free
        else:
            voice = min(range(lowest_free, highest + 1), key=lambda v: abs(last_pitch[v] - notes[i].pitch))
        chosen[i] = voice
        lowest_free = voice + 1
    return chosen
