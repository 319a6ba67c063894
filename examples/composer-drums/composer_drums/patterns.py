"""Hand-made one-bar drum patterns (16th-note grids) and a builder that turns them into PrettyMIDI."""

from __future__ import annotations

import random

import pretty_midi

from composer_drums.classes import CLASS_NAMES, REPRESENTATIVE

# class name -> 16 steps ("x" hit, "." rest)
ROCK = {
    "kick": "x.......x.x.....",
    "snare": "....x.......x...",
    "closed hi-hat": "x.x.x.x.x.x.x.x.",
}
FOUR_ON_THE_FLOOR = {
    "kick": "x...x...x...x...",
    "snare": "....x.......x...",
    "closed hi-hat": "x...x...x...x...",
    "open hi-hat": "..x...x...x...x.",
}
BREAKBEAT = {
    "kick": "x.x.......xx....",
    "snare": "....x..x.x..x..x",
    "closed hi-hat": "x.x.x.x.x.x.x.x.",
}
FILL = {
    "snare": "x.x.x.x.........",
    "high tom": "........xx......",
    "mid tom": "..........xx....",
    "low tom": "............xx..",
    "crash": "..............x.",
}
PATTERNS: dict[str, dict[str, str]] = {
    "rock": ROCK,
    "four-on-the-floor": FOUR_ON_THE_FLOOR,
    "breakbeat": BREAKBEAT,
    "fill": FILL,
}


def pattern_to_midi(
    bars: list[dict[str, str]], tempo: float = 120.0, steps_per_quarter: int = 4, velocity: int = 100
) -> pretty_midi.PrettyMIDI:
    """A PrettyMIDI with one drum instrument playing the given bars, one 16th-note grid per bar."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="Drums")
    step_seconds = 60.0 / tempo / steps_per_quarter
    offset = 0
    for bar in bars:
        length = max(len(row) for row in bar.values())
        for name, row in bar.items():
            pitch = REPRESENTATIVE[CLASS_NAMES.index(name)]
            for i, mark in enumerate(row):
                if mark == "x":
                    start = (offset + i) * step_seconds
                    drums.notes.append(pretty_midi.Note(velocity, pitch, start, start + step_seconds))
        offset += length
    drums.notes.sort(key=lambda n: (n.start, n.pitch))
    pm.instruments.append(drums)
    return pm


def vary(bar: dict[str, str], rng: random.Random, amount: float = 0.1) -> dict[str, str]:
    """A copy of a bar with about ``amount`` of its kick/snare steps flipped (ghost notes, dropped hits)."""
    out = {}
    for name, row in bar.items():
        if name in ("kick", "snare"):
            row = "".join(("." if c == "x" else "x") if rng.random() < amount else c for c in row)
        out[name] = row
    return out


def example_pieces() -> list[pretty_midi.PrettyMIDI]:
    """Two small pieces: two bars of a rock beat, and a bar of four-on-the-floor then a fill."""
    return [pattern_to_midi([ROCK, ROCK]), pattern_to_midi([FOUR_ON_THE_FLOOR, FILL], tempo=100.0)]
