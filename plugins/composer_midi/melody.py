"""Monophonic melodies in the manner of Magenta's Melody RNN."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pretty_midi

from composer import Categorical, ComposerError, Encoder, EncodeReport, GenerationPlan
from composer_midi import instruments
from composer_midi.constraints import LengthConstraint, bar_window
from composer_midi.examples import example_pieces
from composer_midi.notes import (
    Note,
    add_key_signature,
    describe,
    fit_range,
    new_midi,
    quantize,
    skyline,
    to_seconds,
    transpose_tokens,
)

NO_EVENT, NOTE_OFF, FIRST_PITCH = 0, 1, 2


class MelodyEncoder(Encoder):
    """One token per time step: NOTE_ON(pitch) strikes a note (ending the one before), NOTE_OFF ends it,
    NO_EVENT holds (or rests). Polyphonic pieces are reduced to their top line (the skyline).

    Token ids: 0 NO_EVENT, 1 NOTE_OFF, 2.. NOTE_ON(min_pitch..max_pitch), then START and END. ``steps``
    counts the step tokens; ``--length`` is in 4/4 bars."""

    name = "melody"
    modality = "midi"
    default_format = "mid"
    length_unit = "bars"
    generation_options = ("tempo", "program")
    description = "monophonic melody (Melody RNN): note-on / note-off / no-event per 16th step; top line"

    @dataclass
    class Options:
        steps_per_quarter: int = 4  # grid resolution: 4 = sixteenth notes
        min_pitch: int = 48  # lowest MIDI pitch in the vocabulary (C3)
        max_pitch: int = 84  # highest MIDI pitch in the vocabulary (C6)
        transpose: int = 6  # training augmentation: shift by up to this many semitones either way
        tempo: float = 120.0  # quarter notes per minute of decoded melodies
        program: int = 0  # General MIDI program of decoded melodies

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        opts = self.options
        if not 0 <= opts.min_pitch < opts.max_pitch <= 127:
            raise ComposerError(
                f"melody: need 0 <= min_pitch < max_pitch <= 127, got {opts.min_pitch}, {opts.max_pitch}"
            )
        if opts.steps_per_quarter < 1 or opts.tempo <= 0 or opts.transpose < 0:
            raise ComposerError("melody: steps_per_quarter and tempo must be positive, transpose not negative")
        self.pitches = opts.max_pitch - opts.min_pitch + 1
        self.bos = FIRST_PITCH + self.pitches
        self.eos = self.bos + 1
        self.bar_steps = 4 * opts.steps_per_quarter

    @property
    def head(self) -> Categorical:
        return Categorical(self.eos + 1)

    def encode(self, item: pretty_midi.PrettyMIDI) -> list[int]:
        return self.encode_checked(item)[0]

    def encode_checked(self, item: pretty_midi.PrettyMIDI) -> tuple[list[int], EncodeReport]:
        """Takes the top line, then transposes it by octaves into the pitch range where it fits, else drops
        the notes outside."""
        line = skyline(quantize(item, self.options.steps_per_quarter))
        line, report = fit_range(line, self.options.min_pitch, self.options.max_pitch)
        length = max((n.end for n in line), default=-1) + 1
        events = [NO_EVENT] * length
        for note in line:  # in time order, so a note struck where another ends replaces its NOTE_OFF
            events[note.end] = NOTE_OFF
            events[note.start] = FIRST_PITCH + note.pitch - self.options.min_pitch
        return [self.bos, *events, self.eos], report

    def notes(self, seq: Sequence[int]) -> list[Note]:
        """Grid notes of a token sequence (a note still sounding at the end lasts to the last step)."""
        notes: list[Note] = []
        pitch, start, step = None, 0, 0
        for token in seq:
            if token == self.eos:
                break
            if token == self.bos:
                continue
            if token != NO_EVENT and pitch is not None:
                notes.append(Note(pitch, start, step))
                pitch = None
            if token >= FIRST_PITCH:
                pitch, start = self.options.min_pitch + token - FIRST_PITCH, step
            step += 1
        if pitch is not None:
            notes.append(Note(pitch, start, step))
        return notes

    def decode(self, seq: Sequence[int], tempo: float | None = None,
               programs: Sequence[int] | None = None) -> pretty_midi.PrettyMIDI:
        """``tempo`` and ``programs`` (its first is the melody's) default to the options."""
        opts = self.options
        tempo = tempo or opts.tempo
        pm = new_midi(tempo)
        seconds_per_step = 60.0 / (tempo * opts.steps_per_quarter)
        program = instruments.part_program(programs, 0, opts.program)
        pm.instruments.append(to_seconds(self.notes(seq), seconds_per_step, program, "Melody"))
        return add_key_signature(pm)

    def steps(self, seq: Sequence[int]) -> int:
        return sum(1 for token in seq if token < self.bos)

    def augment(self, seq: list[int], rng: random.Random) -> list[int]:
        """Transpose by up to ``transpose`` semitones either way, keeping every note in range."""
        return transpose_tokens(seq, rng, self.options.transpose, range(FIRST_PITCH, self.bos), self.pitches)

    def generation_plan(self, length: float | None = None, *, tempo: Any = None, program: Any = None) -> GenerationPlan:
        """``length`` in 4/4 bars: the melody may end in its last bar and must end when it is full; without
        it, between 8 and 16 bars. ``tempo`` and ``program``: see :func:`composer_midi.instruments.decoding`."""
        least, most = bar_window(length, self.bar_steps)
        sizes = [1] * self.bos + [0, 0]
        return GenerationPlan(max_tokens=most + 1, constraint=LengthConstraint(sizes, self.bos, self.eos, least, most),
                              decoding=instruments.decoding(tempo, program))

    def summarize(self, item: pretty_midi.PrettyMIDI) -> str:
        return describe(item)

    def example_items(self) -> list[pretty_midi.PrettyMIDI]:
        return example_pieces()
