"""The ``drums`` encoder: Magenta Drums RNN's encoding of drum tracks.

Time is cut into steps (``steps_per_quarter`` per quarter note, 16th notes by default); each step is the
set of drum classes struck in it (9 classes, see :mod:`composer_drums.classes`), and each of the 2^9
possible sets is one token. Token ids: 0 start, 1 end, ``2 + mask`` for the set whose bit ``c`` says
class ``c`` was hit. The vocabulary is fixed, so nothing is fitted. Bars are 4/4; a piece is padded with
empty steps to whole bars."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pretty_midi
from composer import Categorical, ComposerError, Encoder, GenerationPlan

from composer_drums.classes import NUM_CLASSES, REPRESENTATIVE, drum_class
from composer_drums.patterns import example_pieces

BOS, EOS, FIRST_SET = 0, 1, 2
SETS = 1 << NUM_CLASSES  # 512
DEFAULT_BARS = 4


def drum_notes(pm: pretty_midi.PrettyMIDI) -> list[pretty_midi.Note]:
    return [note for inst in pm.instruments if inst.is_drum for note in inst.notes]


class DrumsEncoder(Encoder):
    name = "drums"
    modality = "drums"
    description = "drum tracks as Magenta's Drums RNN: one token per 16th-note step, the set of 9 drum classes hit"
    needs_fit = False
    default_format = "mid"
    length_unit = "bars"
    bos, eos = BOS, EOS

    @dataclass
    class Options:
        steps_per_quarter: int = 4  # steps per quarter note (4: 16th notes)
        tempo: float = 120.0  # tempo of decoded pieces, in quarter notes per minute
        velocity: int = 100  # velocity of decoded hits

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options.steps_per_quarter < 1:
            raise ComposerError(f"steps_per_quarter must be at least 1, got {self.options.steps_per_quarter}")
        if self.options.tempo <= 0:
            raise ComposerError(f"tempo must be positive, got {self.options.tempo}")
        if not 1 <= self.options.velocity <= 127:
            raise ComposerError(f"velocity must be within 1..127, got {self.options.velocity}")

    @property
    def bar_steps(self) -> int:
        return 4 * self.options.steps_per_quarter

    @property
    def step_seconds(self) -> float:
        return 60.0 / self.options.tempo / self.options.steps_per_quarter

    @property
    def head(self) -> Categorical:
        return Categorical(FIRST_SET + SETS)

    # -- data
    def masks(self, pm: pretty_midi.PrettyMIDI) -> list[int]:
        """The class set of every step (as a bit mask), padded to whole bars; notes whose pitch is outside
        the table are dropped."""
        hits: dict[int, int] = {}
        per_tick = self.options.steps_per_quarter / pm.resolution
        for note in drum_notes(pm):
            cls = drum_class(note.pitch)
            if cls is None:
                continue
            step = round(pm.time_to_tick(note.start) * per_tick)
            hits[step] = hits.get(step, 0) | (1 << cls)
        if not hits:
            raise ComposerError("no drum notes (is_drum tracks, MIDI channel 10) with a General MIDI percussion pitch")
        steps = math.ceil((max(hits) + 1) / self.bar_steps) * self.bar_steps
        return [hits.get(i, 0) for i in range(steps)]

    def encode(self, item: pretty_midi.PrettyMIDI) -> list[int]:
        return [BOS] + [FIRST_SET + mask for mask in self.masks(item)] + [EOS]

    def decode(self, seq: Sequence[int]) -> pretty_midi.PrettyMIDI:
        pm = pretty_midi.PrettyMIDI(initial_tempo=self.options.tempo)
        drums = pretty_midi.Instrument(program=0, is_drum=True, name="Drums")
        step = 0
        for token in seq:
            token = int(token)
            if token == BOS:
                continue
            if token == EOS:
                break
            mask = token - FIRST_SET
            start = step * self.step_seconds
            for cls in range(NUM_CLASSES):
                if mask >> cls & 1:
                    drums.notes.append(
                        pretty_midi.Note(self.options.velocity, REPRESENTATIVE[cls], start, start + self.step_seconds)
                    )
            step += 1
        pm.instruments.append(drums)
        return pm

    # -- generation
    def generation_plan(self, length: float | None = None, **request: Any) -> GenerationPlan:
        """``length`` in 4/4 bars (default 4): exactly that many steps, then the end token."""
        from composer_midi.constraints import LengthConstraint

        bars = DEFAULT_BARS if length is None else length
        if bars <= 0:
            raise ComposerError(f"length must be a positive number of bars, got {length}")
        steps = max(1, round(bars * self.bar_steps))
        sizes = [0, 0] + [1] * SETS
        return GenerationPlan(max_tokens=steps + 1, constraint=LengthConstraint(sizes, BOS, EOS, steps, steps))

    def steps(self, seq: Sequence[int]) -> int:
        return sum(1 for t in seq if int(t) >= FIRST_SET)

    def summarize(self, item: pretty_midi.PrettyMIDI) -> str:
        notes = drum_notes(item)
        try:
            bars = len(self.masks(item)) // self.bar_steps
        except ComposerError:
            bars = 0
        return f"{bars} bar{'s' * (bars != 1)}, {len(notes)} hit{'s' * (len(notes) != 1)}"

    def statistics(self, items: list[Any], reference: list[Any] | None = None) -> dict[str, float]:
        """Hits per bar, the share of empty steps and how often each class is hit (per step)."""
        counts = [0] * NUM_CLASSES
        total_steps = empty = 0
        for item in items:
            try:
                masks = self.masks(item)
            except ComposerError:
                continue
            total_steps += len(masks)
            empty += sum(1 for m in masks if m == 0)
            for m in masks:
                for cls in range(NUM_CLASSES):
                    counts[cls] += m >> cls & 1
        if not total_steps:
            return {}
        from composer_drums.classes import CLASS_NAMES

        stats = {
            "hits_per_bar": sum(counts) / total_steps * self.bar_steps,
            "empty_step_fraction": empty / total_steps,
        }
        for name, count in zip(CLASS_NAMES, counts):
            stats[f"{name.replace(' ', '_').replace('-', '')}_rate"] = count / total_steps
        return stats

    def example_items(self) -> list[pretty_midi.PrettyMIDI]:
        return example_pieces()
