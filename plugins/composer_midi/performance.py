"""Expressive, unquantized piano playing in the manner of Magenta's Performance RNN."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pretty_midi

from composer import Categorical, ComposerError, Encoder, GenerationPlan
from composer_midi import instruments
from composer_midi.constraints import LengthConstraint
from composer_midi.examples import example_pieces
from composer_midi.notes import Note, key_name, key_number, merge_restrikes, pitched_notes, transpose_tokens

NOTE_ON, NOTE_OFF, TIME_SHIFT = 0, 128, 256
MAX_SHIFT = 100  # TIME_SHIFT tokens move 1..100 ticks of 10 ms
TICKS_PER_SECOND = 100
DEFAULT_SECONDS = 30.0
TOKENS_PER_SECOND = 80  # token budget when generating (dense piano playing uses about 50)


class PerformanceEncoder(Encoder):
    """MIDI events in time order: NOTE_ON(pitch), NOTE_OFF(pitch), TIME_SHIFT(10 ms..1 s), VELOCITY(bin).

    Token ids: 0-127 NOTE_ON, 128-255 NOTE_OFF, 256-355 TIME_SHIFT(1..100 ticks of 10 ms), then
    ``velocity_bins`` VELOCITY tokens (sent before a NOTE_ON whose velocity bin differs from the last),
    then START and END. ``steps`` is the duration in 10 ms ticks; ``--length`` is in seconds. Silence
    before the first note is dropped and drums are ignored."""

    name = "performance"
    modality = "midi"
    default_format = "mid"
    length_unit = "seconds"
    generation_options = ("program",)
    description = "expressive MIDI (Performance RNN): note-on/off, 10 ms time shifts, 32 velocity bins"

    @dataclass
    class Options:
        velocity_bins: int = 32  # loudness levels
        transpose: int = 3  # training augmentation: shift by up to this many semitones either way
        program: int = 0  # General MIDI program of decoded performances

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not 1 <= self.options.velocity_bins <= 127 or self.options.transpose < 0:
            raise ComposerError("performance: velocity_bins must be in 1..127 and transpose not negative")
        self.velocity = TIME_SHIFT + MAX_SHIFT
        self.bos = self.velocity + self.options.velocity_bins
        self.eos = self.bos + 1
        self.bin_size = math.ceil(127 / self.options.velocity_bins)

    @property
    def head(self) -> Categorical:
        return Categorical(self.eos + 1)

    def velocity_bin(self, velocity: int) -> int:
        return min((max(velocity, 1) - 1) // self.bin_size, self.options.velocity_bins - 1)

    def bin_velocity(self, index: int) -> int:
        return min(1 + index * self.bin_size + self.bin_size // 2, 127)

    def encode(self, item: pretty_midi.PrettyMIDI) -> list[int]:
        source = pitched_notes(item)
        velocity: dict[tuple[int, int], int] = {}
        ticks = []
        for note in source:
            start = round(note.start * TICKS_PER_SECOND)
            end = max(round(note.end * TICKS_PER_SECOND), start + 1)
            ticks.append(Note(note.pitch, start, end))
            velocity[note.pitch, start] = max(velocity.get((note.pitch, start), 0), note.velocity)
        notes = merge_restrikes(ticks)
        offset = min((n.start for n in notes), default=0)
        # (tick, offs before ons, pitch, token)
        events = [(n.end - offset, 0, n.pitch, NOTE_OFF + n.pitch) for n in notes]
        events += [(n.start - offset, 1, n.pitch, NOTE_ON + n.pitch) for n in notes]
        seq, now, level = [self.bos], 0, None
        for tick, is_on, pitch, token in sorted(events):
            while tick > now:
                shift = min(tick - now, MAX_SHIFT)
                seq.append(TIME_SHIFT + shift - 1)
                now += shift
            if is_on:
                wanted = self.velocity_bin(velocity[pitch, tick + offset])
                if wanted != level:
                    seq.append(self.velocity + wanted)
                    level = wanted
            seq.append(token)
        seq.append(self.eos)
        return seq

    def decode(self, seq: Sequence[int], programs: Sequence[int] | None = None) -> pretty_midi.PrettyMIDI:
        """Notes still sounding at the end stop there; notes of no duration are left out. ``programs``: the
        instrument asked for at sampling time (``-O program``), else the encoder's ``program`` option."""
        pm = pretty_midi.PrettyMIDI()
        program = instruments.part_program(programs, 0, self.options.program)
        name = "Piano" if program == 0 else pretty_midi.program_to_instrument_name(program)
        inst = pretty_midi.Instrument(program=program, name=name)
        sounding: dict[int, tuple[int, int]] = {}  # pitch -> (start tick, velocity)
        now, level = 0, self.velocity_bin(64)

        def stop(pitch: int) -> None:
            start, velocity = sounding.pop(pitch)
            if now > start:
                inst.notes.append(pretty_midi.Note(velocity, pitch, start / TICKS_PER_SECOND, now / TICKS_PER_SECOND))

        for token in seq:
            if token == self.eos:
                break
            if NOTE_ON <= token < NOTE_OFF:
                if token in sounding:
                    stop(token)
                sounding[token] = (now, self.bin_velocity(level))
            elif NOTE_OFF <= token < TIME_SHIFT and token - NOTE_OFF in sounding:
                stop(token - NOTE_OFF)
            elif TIME_SHIFT <= token < self.velocity:
                now += token - TIME_SHIFT + 1
            elif self.velocity <= token < self.bos:
                level = token - self.velocity
        for pitch in list(sounding):
            stop(pitch)
        inst.notes.sort(key=lambda n: (n.start, n.pitch))
        pm.instruments.append(inst)
        return pm

    def steps(self, seq: Sequence[int]) -> int:
        return sum(token - TIME_SHIFT + 1 for token in seq if TIME_SHIFT <= token < self.velocity)

    def augment(self, seq: list[int], rng: random.Random) -> list[int]:
        """Transpose by up to ``transpose`` semitones either way, keeping pitches in 0..127."""
        return transpose_tokens(seq, rng, self.options.transpose, range(NOTE_ON, TIME_SHIFT), 128)

    def generation_plan(self, length: float | None = None, *, program: Any = None) -> GenerationPlan:
        """``length`` in seconds (default 30): the performance may end in its last tenth and must end when
        it is reached. ``program``: the instrument (see :func:`composer_midi.instruments.decoding`)."""
        seconds = DEFAULT_SECONDS if length is None else length
        if not 0 < seconds < math.inf:
            raise ComposerError(f"length must be a finite number of seconds > 0, got {length}")
        most = round(seconds * TICKS_PER_SECOND)
        if most < 1:
            raise ComposerError(f"length {length} seconds is less than one tick; the least is "
                                f"{1 / TICKS_PER_SECOND:g} seconds")
        sizes = [0] * TIME_SHIFT + list(range(1, MAX_SHIFT + 1)) + [0] * (self.eos + 1 - self.velocity)
        constraint = LengthConstraint(sizes, self.bos, self.eos, round(most * 0.9), most)
        return GenerationPlan(max_tokens=math.ceil(seconds * TOKENS_PER_SECOND) + 1, constraint=constraint,
                              decoding=instruments.decoding(program=program))

    def summarize(self, item: pretty_midi.PrettyMIDI) -> str:
        notes = len(pitched_notes(item))
        words = [f"{notes} note{'s' if notes != 1 else ''}", f"{item.get_end_time():.1f} seconds"]
        key = key_number(item)
        if key is not None:
            words.append(key_name(key))
        return ", ".join(words)

    def example_items(self) -> list[pretty_midi.PrettyMIDI]:
        return example_pieces()
