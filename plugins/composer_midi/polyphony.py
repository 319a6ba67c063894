"""Quantized polyphony in the manner of Magenta's Polyphony RNN, with voices and harmonization."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi

from composer import MAX_TOKENS, Categorical, ComposerError, Encoder, EncodeReport, GenerationPlan
from composer_midi import instruments, stats
from composer_midi.constraints import MAX_BARS, ChoraleConstraint, PolyphonyConstraint, bar_window, cadence_window
from composer_midi.corpora import read_file
from composer_midi.examples import example_pieces
from composer_midi.harmony import SATB_RANGES, chord_root, final_chord
from composer_midi.notes import (
    Note,
    add_key_signature,
    describe,
    fit_range,
    key_number,
    new_midi,
    quantize,
    skyline,
    to_seconds,
    transpose_tokens,
)
from composer_midi.voices import VOICE_NAMES, split_voices, voice_names

START, END, STEP_END, FIRST_NOTE = 0, 1, 2, 3
PIANO = 0
TOKENS_PER_STEP = 6  # token budget per step when generating freely (chorales use about five)
CADENCES = ("auto", "none")  # -O cadence: end at a cadence on the tonic, or wherever the model ends
VOICINGS = ("satb", "free")  # -O voicing: four voices in SATB ranges without parallels, or any notes


class PolyphonyEncoder(Encoder):
    """Each time step lists the notes sounding in it, highest first, as NEW_NOTE(pitch) (struck here) or
    CONTINUED_NOTE(pitch) (held from the step before), then STEP_END. Sequences run START ... END.

    Token ids: 0 START, 1 END, 2 STEP_END, 3.. NEW_NOTE(min_pitch..max_pitch), then
    CONTINUED_NOTE(min_pitch..max_pitch). ``steps`` counts STEP_END tokens; ``--length`` is in 4/4 bars.

    With the option ``held_notes`` off ("re-struck" data, a piano roll as the JSB Chorales benchmark counts
    frames) the vocabulary has no CONTINUED_NOTE tokens: every sounding note is written at every step as a
    NEW_NOTE, and decoding reads a pitch sounding at consecutive steps as one held note (so a note repeated
    on the next step is merged with it, as in any piano roll).
    Decoding writes one track per voice (Soprano, Alto, Tenor, Bass for four; Voice 1, Voice 2, ... where
    more notes than ``voices`` sound at once, up to eight), else a single piano track, with the key
    signature the notes suggest."""

    name = "polyphony"
    modality = "midi"
    default_format = "mid"
    length_unit = "bars"
    generation_options = ("melody", "tempo", "program", "programs", "cadence", "voicing")
    description = "quantized polyphony (Polyphony RNN): notes per 16th step, highest first; SATB voices"

    @dataclass
    class Options:
        steps_per_quarter: int = 4  # grid resolution: 4 = sixteenth notes
        min_pitch: int = 21  # lowest MIDI pitch in the vocabulary (A0)
        max_pitch: int = 108  # highest MIDI pitch in the vocabulary (C8)
        transpose: int = 6  # training augmentation: shift by up to this many semitones either way
        tempo: float = 90.0  # quarter notes per minute of decoded pieces
        voices: int = 4  # decode into this many voice tracks where possible (0: always one piano track)
        program: int = 52  # General MIDI program of the voice tracks (52: Choir Aahs)
        held_notes: bool = True  # CONTINUED_NOTE tokens for held notes; False: re-strike them (a piano roll)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        opts = self.options
        if not 0 <= opts.min_pitch < opts.max_pitch <= 127:
            raise ComposerError(
                f"polyphony: need 0 <= min_pitch < max_pitch <= 127, got {opts.min_pitch}, {opts.max_pitch}"
            )
        if opts.steps_per_quarter < 1 or opts.tempo <= 0 or opts.voices < 0 or opts.transpose < 0:
            raise ComposerError(
                "polyphony: steps_per_quarter and tempo must be positive, voices and transpose not negative"
            )
        self.pitches = opts.max_pitch - opts.min_pitch + 1
        self.bos, self.eos = START, END
        self.bar_steps = 4 * opts.steps_per_quarter

    @property
    def head(self) -> Categorical:
        return Categorical(FIRST_NOTE + self.note_blocks * self.pitches)

    @property
    def note_blocks(self) -> int:
        """How many blocks of ``pitches`` note tokens the vocabulary has: NEW_NOTE, and CONTINUED_NOTE unless
        held notes are re-struck."""
        return 2 if self.options.held_notes else 1

    # -- tokens
    def new_note(self, pitch: int) -> int:
        return FIRST_NOTE + pitch - self.options.min_pitch

    def continued_note(self, pitch: int) -> int:
        """The token of ``pitch`` held from the step before: its NEW_NOTE where held notes are re-struck."""
        return FIRST_NOTE + (self.note_blocks - 1) * self.pitches + pitch - self.options.min_pitch

    def tokens(self, notes: Sequence[Note]) -> list[int]:
        """START, the steps of non-overlapping (per pitch) grid notes, END."""
        length = max((n.end for n in notes), default=0)
        steps: list[list[tuple[int, bool]]] = [[] for _ in range(length)]
        for note in notes:
            steps[note.start].append((note.pitch, True))
            for step in range(note.start + 1, note.end):
                steps[step].append((note.pitch, False))
        seq = [START]
        for sounding in steps:
            for pitch, struck in sorted(sounding, reverse=True):
                seq.append(self.new_note(pitch) if struck else self.continued_note(pitch))
            seq.append(STEP_END)
        seq.append(END)
        return seq

    def notes(self, seq: Sequence[int]) -> list[Note]:
        """Grid notes of a token sequence. Notes missing from a step end there; CONTINUED_NOTE of a pitch
        that is not held strikes it; tokens after the last STEP_END (an unfinished step) are ignored. Where
        held notes are re-struck, a pitch sounding at consecutive steps is one note."""
        held: dict[int, int] = {}  # pitch -> start step
        notes: list[Note] = []
        step, current = 0, []
        for token in seq:
            if token == END:
                break
            if token >= FIRST_NOTE:
                current.append(token)
            elif token == STEP_END:
                mentioned = {self._pitch(t) for t in current}
                for pitch in [p for p in held if p not in mentioned]:
                    notes.append(Note(pitch, held.pop(pitch), step))
                for note_token in current:
                    pitch = self._pitch(note_token)
                    struck = self.options.held_notes and note_token < FIRST_NOTE + self.pitches
                    if pitch in held and struck and held[pitch] < step:
                        notes.append(Note(pitch, held.pop(pitch), step))
                    held.setdefault(pitch, step)
                step, current = step + 1, []
        notes.extend(Note(pitch, start, step) for pitch, start in held.items())
        return sorted(notes, key=lambda n: (n.start, -n.pitch))

    def _pitch(self, token: int) -> int:
        return self.options.min_pitch + (token - FIRST_NOTE) % self.pitches

    # -- encoder interface
    def encode(self, item: pretty_midi.PrettyMIDI) -> list[int]:
        return self.encode_checked(item)[0]

    def encode_checked(self, item: pretty_midi.PrettyMIDI) -> tuple[list[int], EncodeReport]:
        """Transposes a piece by octaves into the pitch range where it fits, else drops the notes outside."""
        notes, report = fit_range(
            quantize(item, self.options.steps_per_quarter), self.options.min_pitch, self.options.max_pitch
        )
        return self.tokens(notes), report

    def decode(self, seq: Sequence[int], tempo: float | None = None,
               programs: Sequence[int] | None = None) -> pretty_midi.PrettyMIDI:
        """``tempo`` (default: the ``tempo`` option) and ``programs``, one per voice from the top (parts
        beyond take the last; default: the ``program`` option, or a piano for a single track)."""
        opts = self.options
        tempo = tempo or opts.tempo
        notes = self.notes(seq)
        pm = new_midi(tempo)
        seconds_per_step = 60.0 / (tempo * opts.steps_per_quarter)
        voices = split_voices(notes, opts.voices) if opts.voices else None
        if voices is None:
            program = instruments.part_program(programs, 0, PIANO)
            pm.instruments.append(to_seconds(notes, seconds_per_step, program, "Piano"))
        else:
            for index, (name, part) in enumerate(zip(voice_names(len(voices)), voices, strict=True)):
                if part:
                    program = instruments.part_program(programs, index, opts.program)
                    pm.instruments.append(to_seconds(part, seconds_per_step, program, name))
        return add_key_signature(pm)

    def steps(self, seq: Sequence[int]) -> int:
        return sum(1 for token in seq if token == STEP_END)

    def augment(self, seq: list[int], rng: random.Random) -> list[int]:
        """Transpose by up to ``transpose`` semitones either way, keeping every note in range."""
        notes = range(FIRST_NOTE, self.head.vocab_size)  # NEW_NOTE and CONTINUED_NOTE tokens
        return transpose_tokens(seq, rng, self.options.transpose, notes, self.pitches)

    def generation_plan(self, length: float | None = None, *, melody: Any = None, tempo: Any = None,
                        program: Any = None, programs: Any = None, cadence: str = "auto",
                        voicing: str = "free") -> GenerationPlan:
        """``length`` in 4/4 bars. With ``cadence`` "auto" (the default) the piece ends at a cadence on the
        tonic, held for a half or whole note, after ``length - 1`` to ``length`` bars (without a length, 8 to
        16), see :class:`ChoraleConstraint`; with "none" it may end anywhere in its last bar and must end when
        it is full. ``voicing`` "satb" writes four voices in their ranges (soprano C4-G5, alto G3-D5, tenor
        C3-G4, bass E2-C4) without parallel fifths or octaves; "free" (the default; the ``bach`` style asks for
        "satb") any notes. With ``melody`` (see :meth:`harmonization`) the melody sets the length and ending.
        ``tempo``, ``program`` and ``programs`` choose the tempo and instruments of the pieces (see
        :func:`composer_midi.instruments.decoding`)."""
        if cadence not in CADENCES or voicing not in VOICINGS:
            raise ComposerError(f"cadence must be one of {', '.join(CADENCES)} and voicing one of "
                                f"{', '.join(VOICINGS)}; got cadence {cadence!r}, voicing {voicing!r}")
        decoding = instruments.decoding(tempo, program, programs)
        if melody is not None:
            constraint = self.harmonization(melody)
            return GenerationPlan(max_tokens=constraint.max_steps * (self.max_voices + 1) + 1, constraint=constraint,
                                  decoding=decoding)
        least, most = bar_window(length, self.bar_steps)
        if cadence == "none" and voicing == "free":
            constraint = PolyphonyConstraint(self.pitches, END, STEP_END, FIRST_NOTE, least, most,
                                             held_notes=self.options.held_notes)
        else:
            low = self.options.min_pitch
            ranges = [(max(0, a - low), min(self.pitches - 1, b - low)) for a, b in SATB_RANGES]
            constraint = ChoraleConstraint(
                self.pitches, END, STEP_END, FIRST_NOTE, lowest_pitch=low, bar_steps=self.bar_steps,
                min_steps=least, max_steps=most, satb=voicing == "satb", ranges=ranges if voicing == "satb" else (),
                cadence=cadence_window(length, self.bar_steps) if cadence == "auto" else None,
                held_notes=self.options.held_notes)
        return GenerationPlan(max_tokens=constraint.max_steps * TOKENS_PER_STEP + 1, constraint=constraint,
                              decoding=decoding)

    @property
    def max_voices(self) -> int:
        return self.options.voices or len(VOICE_NAMES)

    def harmonization(
        self, melody: str | Path | pretty_midi.PrettyMIDI | Sequence[tuple[int, int, int]]
    ) -> PolyphonyConstraint:
        """A constraint that keeps ``melody`` as the top voice and ends with it.

        ``melody`` is a piece, or a MIDI or score file (its first piece), whose top line is taken on this
        encoder's grid; or notes ``(pitch, start_step, end_step)`` on the grid, ends exclusive, not
        overlapping; or text such as ``"67 67 69:2 r 71:0.5"`` (see :func:`parse_melody`). Every step opens
        with the melody's note (or ends at once where it rests); at most ``voices - 1`` lower notes join it.
        A melody outside the pitch range moves by octaves; one too wide for the range is an error, and so is
        one longer than the most a piece may hold (``MAX_BARS`` bars). A str that reads as
        melody text is the melody, else the name of a file where one exists, else a melody that is wrong."""
        # steps: each holds up to max_voices notes and its end
        most = min(MAX_BARS * self.bar_steps, (MAX_TOKENS - 1) // (self.max_voices + 1))
        if isinstance(melody, str) and (is_melody_text(melody) or not names_file(melody)):
            melody = parse_melody(melody, self.options.steps_per_quarter, most)
        elif isinstance(melody, str | Path):
            melody = read_file(melody)[0]
        if isinstance(melody, pretty_midi.PrettyMIDI):
            line = skyline(quantize(melody, self.options.steps_per_quarter))
        else:
            try:
                line = sorted((Note(*map(int, note)) for note in melody), key=lambda n: n.start)
            except (TypeError, ValueError, OverflowError):
                raise ComposerError("a melody is text, a file, a PrettyMIDI or notes (pitch, start_step, "
                                    f"end_step); got {type(melody).__name__}") from None
            if any(n.start < 0 or n.end <= n.start for n in line) or any(a.end > b.start for a, b in pairwise(line)):
                raise ComposerError("melody notes need 0 <= start < end and must not overlap")
        if not line:
            raise ComposerError("the melody to harmonize has no notes")
        if line[-1].end > most:
            raise ComposerError(too_long(line[-1].end, most, self.options.steps_per_quarter))
        line, report = fit_range(line, self.options.min_pitch, self.options.max_pitch)
        if report.dropped:
            raise ComposerError(
                f"the melody spans more than the pitch range {self.options.min_pitch}..{self.options.max_pitch}"
            )
        opening = [STEP_END] * line[-1].end
        for note in line:
            opening[note.start] = self.new_note(note.pitch)
            for step in range(note.start + 1, note.end):
                opening[step] = self.continued_note(note.pitch)
        return PolyphonyConstraint(
            self.pitches,
            END,
            STEP_END,
            FIRST_NOTE,
            len(opening),
            len(opening),
            soprano=opening,
            max_notes=self.max_voices,
            held_notes=self.options.held_notes,
        )

    def statistics(self, items: list[Any], reference: list[Any] | None = None) -> dict[str, float | str]:
        return stats.statistics(items, self.options.steps_per_quarter, self.bar_steps, reference)

    def summarize(self, item: pretty_midi.PrettyMIDI) -> str:
        """E.g. "4 parts, 12 bars, A major, ends on the tonic" (or "off the tonic")."""
        key = key_number(item)
        if key is None:
            return describe(item)
        root = chord_root(final_chord(quantize(item, self.options.steps_per_quarter)))
        return f"{describe(item)}, ends {'on' if root == key % 12 else 'off'} the tonic"

    def example_items(self) -> list[pretty_midi.PrettyMIDI]:
        return example_pieces()

    # -- looking inside a model
    def _step_of(self, tokens: Sequence[int]) -> list[int]:
        """The time step each token is part of: a STEP_END closes its step and belongs to it; START to step 0."""
        steps, step = [], 0
        for token in tokens:
            steps.append(step)
            step += token == STEP_END
        return steps

    def properties(self, tokens: Sequence[int]) -> dict[str, np.ndarray]:
        """Per token, of the time step it is part of: ``position in bar`` (the step within a 4/4 bar, as
        ``--length`` counts bars: a piece in another meter drifts across it), ``on a beat`` (1 on the
        quarter-note grid), ``soprano pitch`` and ``bass pitch`` (the step's highest and lowest notes; NaN
        in a silent step); and of the token itself: ``step end`` (1 for STEP_END),
        ``note number in step`` (1 for the step's first, highest note, 2 for the next; 0 for other
        tokens), ``pitch`` and ``held note`` (1 for a held note, 0 for a struck one; both NaN for other
        tokens)."""
        steps = self._step_of(tokens)
        holds = self._holds(tokens)
        top: dict[int, int] = {}
        bottom: dict[int, int] = {}
        pitch = np.full(len(tokens), np.nan)
        held = np.full(len(tokens), np.nan)
        number = np.zeros(len(tokens))
        count = 0
        for t, (token, step) in enumerate(zip(tokens, steps)):
            if token >= FIRST_NOTE:
                pitch[t] = self._pitch(token)
                held[t] = float(holds[t])
                top[step] = max(top.get(step, 0), int(pitch[t]))
                bottom[step] = min(bottom.get(step, 127), int(pitch[t]))
                count += 1
                number[t] = count
            else:
                count = 0
        return {
            "position in bar": np.array([step % self.bar_steps for step in steps], dtype=float),
            "on a beat": np.array([step % self.options.steps_per_quarter == 0 for step in steps], dtype=float),
            "step end": np.array([token == STEP_END for token in tokens], dtype=float),
            "note number in step": number,
            "soprano pitch": np.array([top.get(step, np.nan) for step in steps], dtype=float),
            "bass pitch": np.array([bottom.get(step, np.nan) for step in steps], dtype=float),
            "pitch": pitch,
            "held note": held,
        }

    def token_labels(self, tokens: Sequence[int]) -> list[str]:
        """Note names (``C4``; ``C4~`` for a held note), ``|`` for STEP_END, ``start`` and ``end``."""
        names = {START: "start", END: "end", STEP_END: "|"}
        return [names[t] if t in names else pretty_midi.note_number_to_name(self._pitch(t)) + ("~" if held else "")
                for t, held in zip(tokens, self._holds(tokens), strict=True)]

    def _holds(self, tokens: Sequence[int]) -> list[bool]:
        """Per token, whether it holds a note: a CONTINUED_NOTE, or where held notes are re-struck a NEW_NOTE of
        a pitch that sounded in the step before."""
        if self.options.held_notes:
            return [t >= FIRST_NOTE + self.pitches for t in tokens]
        holds, before, now = [], set(), set()
        for token in tokens:
            holds.append(token >= FIRST_NOTE and self._pitch(token) in before)
            if token >= FIRST_NOTE:
                now.add(self._pitch(token))
            elif token == STEP_END:
                before, now = now, set()
        return holds

    def time_marks(self, tokens: Sequence[int]) -> dict[int, str]:
        """The first token of every 4/4 bar: ``bar 1``, ``bar 2``, ..."""
        marks, last = {}, -1
        for t, step in enumerate(self._step_of(tokens)):
            if step % self.bar_steps == 0 and step != last:
                marks[t] = f"bar {step // self.bar_steps + 1}"
            last = step
        return marks


MELODY_WORD = re.compile(r"(?:[rR]|\d+)(?::\S*)?")


def is_melody_text(text: str) -> bool:
    """Whether ``text`` is written as a melody: words of a pitch or ``r``, each with an optional ``:length``."""
    words = text.replace(",", " ").split()
    return bool(words) and all(MELODY_WORD.fullmatch(word) for word in words)


def names_file(text: str) -> bool:
    """Whether ``text`` names an existing file, asked only of a name a file system takes (no NUL, at most 255
    bytes a part and 4,095 in all), so that long melody text is never an OSError."""
    raw = text.encode("utf-8", "surrogateescape")
    if not raw or b"\0" in raw or len(raw) > 4095 or any(len(part) > 255 for part in raw.split(b"/")):
        return False
    return Path(text).is_file()


def too_long(steps: int, most: int, steps_per_quarter: int) -> str:
    return (f"the melody lasts {steps:,} steps; the most a piece may hold is {most:,} steps "
            f"({most / steps_per_quarter:,.0f} quarter notes)")


def parse_melody(text: str, steps_per_quarter: int, max_steps: int | None = None) -> list[tuple[int, int, int]]:
    """Notes ``(pitch, start_step, end_step)`` from text: MIDI pitches separated by spaces, each with an
    optional length in quarter notes after a colon (default 1); ``r`` is a rest. A melody longer than
    ``max_steps`` is an error as soon as it is found, before anything is made of it."""
    notes, step = [], 0
    for word in text.replace(",", " ").split():
        name, _, length = word.partition(":")
        try:
            quarters = float(length or 1)
            pitch = None if name.lower() == "r" else int(name)
        except ValueError:
            raise ComposerError(
                f"cannot read '{word}' in the melody: use MIDI pitches like 67 or 67:2, r for a rest"
            ) from None
        if not math.isfinite(quarters):
            raise ComposerError(f"'{word}' in the melody: a length must be a finite number of quarter notes")
        steps = round(quarters * steps_per_quarter)
        if max_steps is not None and step + steps > max_steps:
            raise ComposerError(too_long(step + steps, max_steps, steps_per_quarter))
        if steps < 1 or (pitch is not None and not 0 <= pitch <= 127):
            raise ComposerError(f"'{word}' in the melody: pitch 0..127 and a length of at least one grid step")
        if pitch is not None:
            notes.append((pitch, step, step + steps))
        step += steps
    if not notes:
        raise ComposerError("the melody has no notes")
    return notes
