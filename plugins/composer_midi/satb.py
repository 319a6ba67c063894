"""Four-part chorales as four voices on a grid (DeepBach's representation), for bidirectional models that
regenerate chosen voices or bars of a chorale (``composer reharmonize``).

A sequence is START, then one frame per grid step: the soprano's, alto's, tenor's and bass's token, each
REST, HOLD (the voice's note goes on) or a pitch (a note struck here), then the step's position in its bar
(a token the model reads and never predicts)."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pretty_midi

from composer import Categorical, ComposerError, Constraint, Encoder, EncodeReport, GenerationPlan, Regeneration
from composer_midi import stats
from composer_midi.examples import example_pieces
from composer_midi.notes import (
    Note,
    describe,
    fit_range,
    merge_restrikes,
    quarters,
    quarters_per_bar,
    to_seconds,
    transpose_tokens,
)
from composer_midi.voices import assign_voices

START, REST, HOLD, FIRST_PITCH = 0, 1, 2, 3
VOICES = ("soprano", "alto", "tenor", "bass")
VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
# Where a regenerated voice may sing (MIDI pitches, both ends included): the chorales' ranges, a little wider
RANGES = ((58, 81), (52, 74), (45, 69), (36, 64))
FRAME = len(VOICES) + 1  # tokens per step: the four voices, then the position in the bar
BAR_POSITIONS = 48  # position tokens: steps within a bar up to 12 quarters of sixteenths (longer bars wrap)


class SatbEncoder(Encoder):
    """Soprano, alto, tenor and bass on a grid of ``steps_per_quarter`` steps per quarter note.

    Token ids: 0 START, 1 REST, 2 HOLD, 3.. a note struck at pitch ``min_pitch..max_pitch``, then
    ``BAR_POSITIONS`` position-in-bar tokens. A piece is read as four voices when it has four parts (named
    Soprano/Alto/Tenor/Bass, else ordered by their mean pitch) or when its notes split into four voices
    that never cross; anything else is not a chorale and is refused. A voice's overlapping notes are made
    consecutive. ``steps`` counts grid steps; ``--length`` is in bars."""

    name = "satb"
    modality = "midi"
    default_format = "mid"
    length_unit = "bars"
    regeneration_options = ("keep", "bars")
    description = "four-part chorales as four voices on a 16th-note grid (DeepBach's layout); reharmonize"

    @dataclass
    class Options:
        steps_per_quarter: int = 4  # grid resolution: 4 = sixteenth notes
        min_pitch: int = 28  # lowest pitch in the vocabulary (E1)
        max_pitch: int = 93  # highest pitch in the vocabulary (A6)
        transpose: int = 6  # training augmentation: shift by up to this many semitones either way
        tempo: float = 90.0  # quarter notes per minute of decoded pieces
        program: int = 52  # General MIDI program of the voice tracks (52: Choir Aahs)
        max_length: int = 0  # corpus pieces longer than this many steps are left out (0: none); whole pieces train

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        opts = self.options
        if not 0 <= opts.min_pitch < opts.max_pitch <= 127:
            raise ComposerError(f"satb: need 0 <= min_pitch < max_pitch <= 127, got {opts.min_pitch}, {opts.max_pitch}")
        if opts.steps_per_quarter < 1 or opts.tempo <= 0 or opts.transpose < 0:
            raise ComposerError("satb: steps_per_quarter and tempo must be positive, transpose not negative")
        self.pitches = opts.max_pitch - opts.min_pitch + 1
        self.first_position = FIRST_PITCH + self.pitches
        self.bos = START

    @property
    def head(self) -> Categorical:
        return Categorical(self.first_position + BAR_POSITIONS, frame=FRAME, predicted=len(VOICES))

    # -- voices and frames
    def voices(self, item: pretty_midi.PrettyMIDI) -> tuple[list[list[Note]], int]:
        """The piece's four voices (soprano first) as grid notes, and its bar length in steps."""
        spq = self.options.steps_per_quarter
        bar_steps = max(1, round(quarters_per_bar(item) * spq))
        parts = [inst for inst in item.instruments if not inst.is_drum]
        if not any(inst.notes for inst in parts):
            raise ComposerError("no notes: a chorale needs four voices")
        if len(parts) == len(VOICES):
            voices = [_on_grid(item, inst.notes, spq) for inst in parts]
            named = [inst.name.strip().lower() for inst in parts]
            if sorted(named) == sorted(VOICES):
                order = [named.index(v) for v in VOICES]
            else:
                order = sorted(range(4), key=lambda v: -np.mean([n.pitch for n in voices[v]] or [0]))
            voices = [voices[v] for v in order]
        else:
            notes = merge_restrikes(_on_grid(item, [n for inst in parts for n in inst.notes], spq))
            voice_of = assign_voices(notes, len(VOICES))
            used = len(set(voice_of)) if voice_of is not None else 0
            if used != len(VOICES):
                found = f"{len(parts)} part(s)" + (" with more than four notes at once" if voice_of is None
                                                   else f" singing {used} voice(s)")
                raise ComposerError(f"not a four-part chorale: {found}; give four voices (soprano, alto, tenor, bass)")
            voices = [[n for n, v in zip(notes, voice_of, strict=True) if v == voice] for voice in range(4)]
        start = min(n.start for voice in voices for n in voice)
        offset = (start // bar_steps) * bar_steps  # whole bars of silence at the start are dropped
        return [_monophonic([n._replace(start=n.start - offset, end=n.end - offset) for n in voice])
                for voice in voices], bar_steps

    def frames(self, voices: Sequence[Sequence[Note]], bar_steps: int) -> np.ndarray:
        """The grid [steps, FRAME] of four voices' notes (pitches inside the vocabulary)."""
        length = max((n.end for voice in voices for n in voice), default=0)
        grid = np.full((length, FRAME), REST, dtype=np.int64)
        for v, voice in enumerate(voices):
            for note in voice:
                grid[note.start, v] = FIRST_PITCH + note.pitch - self.options.min_pitch
                grid[note.start + 1: note.end, v] = HOLD
        grid[:, -1] = self.first_position + np.arange(length) % bar_steps % BAR_POSITIONS
        return grid

    def _notes(self, column: Sequence[int]) -> list[Note]:
        """Grid notes of one voice's tokens: a HOLD after a rest (or first) is a rest."""
        notes: list[Note] = []
        for step, token in enumerate(column):
            if FIRST_PITCH <= token < self.first_position:
                notes.append(Note(self.options.min_pitch + token - FIRST_PITCH, step, step + 1))
            elif token == HOLD and notes and notes[-1].end == step:
                notes[-1] = notes[-1]._replace(end=step + 1)
        return notes

    # -- encoder interface
    def encode(self, item: pretty_midi.PrettyMIDI) -> list[int]:
        return self.encode_checked(item)[0]

    def encode_checked(self, item: pretty_midi.PrettyMIDI) -> tuple[list[int], EncodeReport]:
        """Transposes a chorale by octaves into the pitch range where it fits, else drops the notes outside."""
        voices, bar_steps = self.voices(item)
        length = max((n.end for voice in voices for n in voice), default=0)
        if self.options.max_length and length > self.options.max_length:
            raise ComposerError(f"{length} steps, longer than max_length {self.options.max_length}")
        notes = [n for voice in voices for n in voice]
        fitted, report = fit_range(notes, self.options.min_pitch, self.options.max_pitch)
        shift = fitted[0].pitch - notes[0].pitch if report.transposed else 0  # by octaves, every voice alike
        lo, hi = self.options.min_pitch, self.options.max_pitch
        voices = [[n._replace(pitch=n.pitch + shift) for n in voice if lo <= n.pitch + shift <= hi] for voice in voices]
        return [START, *self.frames(voices, bar_steps).reshape(-1).tolist()], report

    def decode(self, seq: Sequence[int]) -> pretty_midi.PrettyMIDI:
        """Four tracks, Soprano to Bass (empty ones too, so that the piece reads back as four voices); the
        meter from the position tokens (4/4 where they give none)."""
        body = [int(t) for t in seq[1:]] if len(seq) and seq[0] == START else [int(t) for t in seq]
        grid = np.asarray(body[: len(body) // FRAME * FRAME], dtype=np.int64).reshape(-1, FRAME)
        positions = grid[:, -1] - self.first_position
        positions = positions[(positions >= 0) & (positions < BAR_POSITIONS)]
        spq = self.options.steps_per_quarter
        bar_steps = int(positions.max()) + 1 if len(positions) and positions.max() > 0 else 4 * spq
        pm = pretty_midi.PrettyMIDI(initial_tempo=self.options.tempo)
        quarters_in_bar = bar_steps / spq
        if float(quarters_in_bar).is_integer():
            pm.time_signature_changes.append(pretty_midi.TimeSignature(int(quarters_in_bar), 4, 0.0))
        else:
            pm.time_signature_changes.append(pretty_midi.TimeSignature(round(2 * quarters_in_bar), 8, 0.0))
        seconds_per_step = 60.0 / (self.options.tempo * spq)
        for v, name in enumerate(VOICE_NAMES):
            pm.instruments.append(to_seconds(self._notes(grid[:, v]), seconds_per_step, self.options.program, name))
        return pm

    def steps(self, seq: Sequence[int]) -> int:
        return (len(seq) - 1) // FRAME

    def augment(self, seq: Sequence[int], rng: random.Random) -> Sequence[int]:
        """Transpose by up to ``transpose`` semitones either way, keeping every note in range."""
        notes = range(FIRST_PITCH, self.first_position)
        return transpose_tokens(seq, rng, self.options.transpose, notes, self.pitches)

    def generation_plan(self, length: float | None = None, **request: Any) -> GenerationPlan:
        """``length`` bars of 4/4 (default 8), frame by frame: voice tokens in the voice slots, the position
        in the bar forced in its slot."""
        bars = 8 if length is None else length
        if bars <= 0:
            raise ComposerError(f"length must be a positive number of bars, got {length}")
        bar_steps = 4 * self.options.steps_per_quarter
        steps = max(1, round(bars * bar_steps))
        return GenerationPlan(max_tokens=steps * FRAME, constraint=FrameConstraint(self, bar_steps))

    def regeneration(self, item: pretty_midi.PrettyMIDI, keep: Any = None, bars: Any = None) -> Regeneration:
        """What to regenerate of a chorale: the voices not in ``keep`` (names or initials, a list or a
        comma-separated string), within ``bars`` ("5-8", "5", or (first, last), counted from 1 at the
        piece's first bar, a pickup bar being bar 1), or everywhere. With bars, a note that sounds across
        their edge is kept whole. A regenerated voice sings within its chorale range and never holds a
        kept note longer."""
        if keep is None and bars is None:
            raise ComposerError("say what to regenerate: voices to keep (--keep soprano,bass) and/or --bars 5-8")
        kept_voices = _voice_numbers(keep)
        voices, bar_steps = self.voices(item)
        sequence, _ = self.encode_checked(item)
        grid = np.asarray(sequence[1:], dtype=np.int64).reshape(-1, FRAME)
        length = len(grid)
        free = np.zeros_like(grid, dtype=bool)
        free[:, : len(VOICES)] = True
        free[:, list(kept_voices)] = False
        if bars is not None:
            first, last = _bar_range(bars, math.ceil(length / bar_steps))
            lo, hi = (first - 1) * bar_steps, min(last * bar_steps, length)
            free[:lo] = free[hi:] = False
            for v, voice in enumerate(voices):
                for note in voice:
                    if note.start < hi and note.end > lo and (note.start < lo or note.end > hi):
                        free[note.start: note.end, v] = False  # sounds across the edge: kept whole
        if not free.any():
            raise ComposerError("nothing to regenerate: every voice is kept")
        allowed = np.zeros((length, FRAME, self.head.vocab_size), dtype=bool)
        for v, (low, high) in enumerate(RANGES):
            allowed[:, v, REST] = True
            allowed[:, v, FIRST_PITCH + max(low, self.options.min_pitch) - self.options.min_pitch:
                    FIRST_PITCH + min(high, self.options.max_pitch) - self.options.min_pitch + 1] = True
            allowed[1:, v, HOLD] = free[:-1, v]  # a regenerated note may go on, a kept one may not
        return Regeneration(tokens=sequence, free=np.concatenate([[False], free.reshape(-1)]),
                            allowed=np.concatenate([np.ones((1, allowed.shape[-1]), bool),
                                                    allowed.reshape(-1, allowed.shape[-1])]))

    def statistics(self, items: list[Any], reference: list[Any] | None = None) -> dict[str, float | str]:
        spq = self.options.steps_per_quarter
        return stats.statistics(items, spq, 4 * spq, reference)

    def summarize(self, item: pretty_midi.PrettyMIDI) -> str:
        return describe(item)

    def example_items(self) -> list[pretty_midi.PrettyMIDI]:
        return [example_pieces()[1]]


class FrameConstraint(Constraint):
    """Free generation in the satb layout: each voice slot takes a voice token (REST, HOLD or a pitch), each
    position slot the step's position in a bar of ``bar_steps``."""

    row_state = ("count",)

    def __init__(self, encoder: SatbEncoder, bar_steps: int) -> None:
        self.encoder, self.bar_steps = encoder, bar_steps

    def start(self, batch_size: int, device: Any) -> None:
        import torch

        vocab = self.encoder.head.vocab_size
        self.voice = torch.zeros(vocab, dtype=torch.bool, device=device)
        self.voice[REST: self.encoder.first_position] = True
        self.count = torch.zeros(batch_size, dtype=torch.long, device=device)

    def allowed(self) -> Any:
        slot, step = self.count % FRAME, self.count // FRAME
        mask = self.voice.expand(len(self.count), -1).clone()
        position = self.encoder.first_position + step % self.bar_steps % BAR_POSITIONS
        last = slot == FRAME - 1
        mask[last] = False
        mask[last, position[last]] = True
        return mask

    def advance(self, tokens: Any) -> None:
        self.count += 1


def _on_grid(pm: pretty_midi.PrettyMIDI, notes: Sequence[pretty_midi.Note], spq: int) -> list[Note]:
    """Notes on the grid, from the piece's start (every note at least one step long)."""
    if not notes:
        return []
    times = np.array([(n.start, n.end) for n in notes], dtype=float)
    steps = np.rint(quarters(pm, times) * spq).astype(int)
    steps[:, 1] = np.maximum(steps[:, 1], steps[:, 0] + 1)
    return [Note(n.pitch, int(s), int(e)) for n, (s, e) in zip(notes, steps, strict=True)]


def _monophonic(notes: Sequence[Note]) -> list[Note]:
    """One line: of notes struck together the highest, each ending where the next begins at the latest."""
    line: list[Note] = []
    for note in sorted(notes, key=lambda n: (n.start, -n.pitch)):
        if line and note.start == line[-1].start:
            continue
        if line and line[-1].end > note.start:
            line[-1] = line[-1]._replace(end=note.start)
        line.append(note)
    return line


def _voice_numbers(keep: Any) -> set[int]:
    """Voice numbers (0 = soprano) from names or initials: "soprano,bass", "s,b", ["alto"]."""
    if keep is None:
        return set()
    words = re.split(r"[,\s]+", keep.strip()) if isinstance(keep, str) else [str(w) for w in keep]
    numbers = set()
    for word in filter(None, (w.strip().lower() for w in words)):
        matches = [v for v, name in enumerate(VOICES) if name == word or name[0] == word]
        if not matches:
            raise ComposerError(f"unknown voice '{word}' to keep (voices: {', '.join(VOICES)}, or s, a, t, b)")
        numbers.add(matches[0])
    return numbers


def _bar_range(bars: Any, count: int) -> tuple[int, int]:
    """(first, last) bar, counted from 1, from "5-8", "5", 5 or (5, 8); inside a piece of ``count`` bars."""
    if isinstance(bars, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", bars)
        if not match:
            raise ComposerError(f"cannot read bars '{bars}': give a bar or a range such as 5-8")
        first, last = int(match[1]), int(match[2] or match[1])
    elif isinstance(bars, int):
        first = last = bars
    else:
        first, last = (int(b) for b in bars)
    if not 1 <= first <= last:
        raise ComposerError(f"bars {first}-{last}: the first bar is 1 and a range goes forwards")
    if last > count:
        raise ComposerError(f"bars {first}-{last} are outside the piece: it has {count} bar(s)")
    return first, last
