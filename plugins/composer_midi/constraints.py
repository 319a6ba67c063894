"""Generation constraints of the MIDI encoders: a length window, the polyphony grammar, harmonization, chorales.

Their per-row state is numpy arrays on the host, whatever device generates: a step's rules are many small
operations, each far cheaper in numpy than in torch, and the step's mask goes to the device once (on a GPU the
chosen tokens come back once per step, a wait the rules had anyway). torch is imported where it is used, so that
importing the plugin stays cheap."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from composer import ComposerError, Constraint
from composer_midi.harmony import FIFTH, MAJOR_THIRD, MINOR_SEVENTH, MINOR_THIRD
from composer_midi.notes import KEY_PROFILES

if TYPE_CHECKING:
    import torch

DEFAULT_BARS = (8, 16)  # without --length a piece may end by itself within this many bars
# The longest piece or melody, in 4/4 bars: about 20 minutes of music, under a minute to generate on a laptop
# CPU (a progress bar shows). MAX_TOKENS would let a chorale model run for a quarter of an hour.
MAX_BARS = 512


def bar_window(length: float | None, bar_steps: int) -> tuple[int, int]:
    """(fewest, most) steps for a length in bars: the end may come within the last bar and is forced when
    it is full; without a length, between 8 and 16 bars."""
    if length is None:
        return DEFAULT_BARS[0] * bar_steps, DEFAULT_BARS[1] * bar_steps
    if not 0 < length < math.inf:
        raise ComposerError(f"length must be a finite number of bars > 0, got {length}")
    if length > MAX_BARS:
        raise ComposerError(f"length must be at most {MAX_BARS} bars, got {length:g}")
    most = round(length * bar_steps)
    if most < 1:
        raise ComposerError(f"length {length} bars is less than one step of the grid; the least is "
                            f"{1 / bar_steps:g} bars")
    return max(1, most - bar_steps), most


class HostConstraint(Constraint):
    """A constraint that keeps its per-row state (``row_state``) in numpy arrays on the host: subclasses implement
    :meth:`_start`, :meth:`_allowed` (a bool array [rows, vocab]) and :meth:`_advance` (tokens as an int array)."""

    def start(self, batch_size: int, device: Any) -> None:
        self.device = device
        self._start(batch_size)

    def allowed(self) -> torch.Tensor:
        import torch

        return torch.from_numpy(self._allowed()).to(self.device)

    def advance(self, tokens: torch.Tensor) -> None:
        self._advance(tokens.numpy(force=True))

    def select(self, index: torch.Tensor) -> None:
        rows = index.numpy(force=True)
        for name in self.row_state:
            setattr(self, name, getattr(self, name)[rows])

    def _start(self, batch_size: int) -> None:
        raise NotImplementedError

    def _allowed(self) -> np.ndarray:
        raise NotImplementedError

    def _advance(self, tokens: np.ndarray) -> None:
        raise NotImplementedError


class LengthConstraint(HostConstraint):
    """Forbids the end token before ``min_steps`` and forces it at ``max_steps``; each token advances time
    by its entry in ``step_sizes``. The start token is never chosen, and a finished row repeats the end."""

    row_state = ("steps", "done")

    def __init__(self, step_sizes: Sequence[int], bos: int, eos: int, min_steps: int, max_steps: int) -> None:
        self.sizes, self.bos, self.eos = np.array(step_sizes, dtype=np.int64), bos, eos
        self.min_steps, self.max_steps = min_steps, max_steps

    def _start(self, batch_size: int) -> None:
        self.steps = np.zeros(batch_size, dtype=np.int64)
        self.done = np.zeros(batch_size, dtype=bool)

    def _allowed(self) -> np.ndarray:
        mask = np.ones((len(self.steps), len(self.sizes)), dtype=bool)
        mask[:, self.bos] = False
        mask[:, self.eos] = self.steps >= self.min_steps
        return force(mask, self.done | (self.steps >= self.max_steps), self.eos)

    def _advance(self, tokens: np.ndarray) -> None:
        self.steps += self.sizes[tokens]
        self.done |= tokens == self.eos


class PolyphonyConstraint(HostConstraint):
    """The polyphony grammar, a length window and optionally a given soprano.

    Token layout (the polyphony encoder's): ``end``, ``step_end``, then ``pitches`` NEW_NOTE tokens from
    ``first_note`` in ascending pitch, then as many CONTINUED_NOTE tokens. Within a step the notes must
    descend strictly; a note may be continued only if it sounded in the step before; the end comes only
    between steps, not before ``min_steps`` steps, and is forced after ``max_steps``.

    ``soprano`` holds, for each step, the token that must open it (the melody's NEW_NOTE or
    CONTINUED_NOTE, or ``step_end`` where it rests); the other notes of the step, at most
    ``max_notes - 1``, lie below it, and the piece ends with the melody. A lower voice may not continue
    the melody's note of the step before (it could only be read back as the melody's own note).

    ``held_notes`` False: the vocabulary has no CONTINUED_NOTE tokens (re-struck data, where a NEW_NOTE of a
    pitch that sounded in the step before holds it); a rule's choice of holding a note is then that NEW_NOTE."""

    row_state = ("steps", "notes", "lowest", "sounding", "previous", "done")

    def __init__(
        self,
        pitches: int,
        end: int,
        step_end: int,
        first_note: int,
        min_steps: int,
        max_steps: int,
        soprano: Sequence[int] = (),
        max_notes: int | None = None,
        held_notes: bool = True,
    ) -> None:
        self.pitches, self.end, self.step_end, self.first_note = pitches, end, step_end, first_note
        self.restruck = not held_notes
        self.vocab_size = first_note + (1 if self.restruck else 2) * pitches
        self.new_notes = slice(first_note, first_note + pitches)  # the NEW_NOTE tokens, then the CONTINUED_NOTE
        # the tokens that hold a note: re-struck, a NEW_NOTE of a pitch that sounded in the step before holds it
        self.held_notes = self.new_notes if self.restruck else slice(first_note + pitches, self.vocab_size)
        self.min_steps, self.max_steps = min_steps, max_steps
        self.soprano_tokens = list(soprano)
        self.soprano = np.array(self.soprano_tokens or [step_end], dtype=np.int64)
        # per step: the CONTINUED_NOTE of the melody's note in the step before, which lower voices must not use
        self.released = np.array([-1] + [
            self.held_notes.start + (t - first_note) % pitches if t >= first_note else -1
            for t in self.soprano_tokens[:-1]
        ], dtype=np.int64)
        self.max_notes = max_notes or pitches
        self.pitch_index = np.arange(pitches)
        self.under = self.pitch_index[None, :] < np.arange(pitches + 1)[:, None]  # [lowest, pitch]: pitch < lowest

    def _start(self, batch_size: int) -> None:
        self.steps = np.zeros(batch_size, dtype=np.int64)
        self.notes = np.zeros(batch_size, dtype=np.int64)  # notes so far in the current step
        self.lowest = np.full(batch_size, self.pitches, dtype=np.int64)  # last note's pitch index
        self.sounding = np.zeros((batch_size, self.pitches), dtype=bool)  # in the current step
        self.previous = np.zeros((batch_size, self.pitches), dtype=bool)  # in the step before
        self.done = np.zeros(batch_size, dtype=bool)

    def _allowed(self) -> np.ndarray:
        below = self.under[self.lowest] & (self.notes < self.max_notes)[:, None]
        mask = np.zeros((len(self.steps), self.vocab_size), dtype=bool)
        mask[:, self.new_notes] = below
        mask[:, self.held_notes] |= below & self.previous
        mask[:, self.step_end] = True
        between_steps = self.notes == 0
        mask[:, self.end] = between_steps & (self.steps >= self.min_steps)
        if self.soprano_tokens:
            opening = between_steps & (self.steps < len(self.soprano_tokens))
            step = np.minimum(self.steps, len(self.soprano_tokens) - 1)
            mask[opening] = False
            mask[opening, self.soprano[step[opening]]] = True
            released = self.released[step]
            below_melody = ~between_steps & (self.steps < len(self.soprano_tokens)) & (released >= 0)
            mask[below_melody, released[below_melody]] = False
        return force(mask, self.done | (self.steps >= self.max_steps), self.end)

    def _advance(self, tokens: np.ndarray) -> None:
        is_note = tokens >= self.first_note
        pitch = (tokens - self.first_note) % self.pitches
        self.sounding[is_note, pitch[is_note]] = True
        self.notes += is_note
        self.lowest = np.where(is_note, pitch, self.lowest)
        step_end = tokens == self.step_end
        if step_end.any():
            self.previous[step_end] = self.sounding[step_end]
            self.sounding[step_end] = False
            self.notes[step_end] = 0
            self.lowest[step_end] = self.pitches
            self.steps += step_end
        self.done |= tokens == self.end


def force(mask: np.ndarray, rows: np.ndarray, token: int) -> np.ndarray:
    """``mask`` with ``token`` as the only choice in the selected rows."""
    mask[rows] = False
    mask[rows, token] = True
    return mask


def cadence_window(length: float | None, bar_steps: int) -> tuple[int, int]:
    """(earliest, latest) step at which a piece's final tonic chord may begin: within the last bar of
    ``length`` bars (so the piece ends after ``length - 1`` to ``length`` bars), or without a length within
    bars 8 to 16, as :func:`bar_window`."""
    least, most = bar_window(length, bar_steps)
    return max(0, least - bar_steps), max(0, most - bar_steps)


FREE, DOMINANT, TONIC, HOLD = range(4)  # where a row stands on its way to the final cadence


class ChoraleConstraint(PolyphonyConstraint):
    """The polyphony grammar with an ending at a cadence and, with ``satb``, four-part voice leading.

    ``cadence`` (``(earliest, latest)`` steps, see :func:`cadence_window`; None: the length window of
    :class:`PolyphonyConstraint`): the model writes freely, without ending, until it writes a dominant chord
    (notes of the key's V7, its root or third in the bass; the key estimated from the notes so far) just before
    a strong beat (beat 1 or 3 of a 4/4 bar) from ``earliest`` on. That beat then sounds the tonic triad, root
    in the bass, held to the end of its bar (a half or whole note), and the piece ends. Where no dominant has
    come by ``latest``, the beat before ``latest`` is held to the dominant seventh chord (root in the bass)
    and ``latest`` sounds the tonic.

    ``satb``: every step sounds four notes, the k-th highest being voice k (soprano, alto, tenor, bass); a
    voice strikes notes only within its range (``ranges``: pitch indices, inclusive), holds only its own note,
    stays within an octave of the voice above (alto and tenor), and no two voices move the same way from a
    perfect fifth or octave (compound intervals too) to the same interval again. Where the rules leave a row
    no token they give way in turn: first the parallels, then the cadence's chord (a voice's range never). Where
    held notes are re-struck (``held_notes`` False) a voice strikes no pitch another voice sang in the step
    before, which would be read back as that voice's note, held.

    ``lowest_pitch``: the MIDI pitch of the first NEW_NOTE token; ``bar_steps``: steps per 4/4 bar."""

    row_state = (*PolyphonyConstraint.row_state, "voice", "before", "histogram", "phase", "key")

    def __init__(self, pitches: int, end: int, step_end: int, first_note: int, *, lowest_pitch: int,
                 bar_steps: int, min_steps: int, max_steps: int, cadence: tuple[int, int] | None = None,
                 satb: bool = False, ranges: Sequence[tuple[int, int]] = (), held_notes: bool = True) -> None:
        if cadence is not None:  # the end comes from the cadence; the last bar of the window is a safety cap
            min_steps = max_steps = cadence[1] + bar_steps
        super().__init__(pitches, end, step_end, first_note, min_steps, max_steps, max_notes=4 if satb else None,
                         held_notes=held_notes)
        self.lowest_pitch, self.bar_steps, self.cadence, self.satb = lowest_pitch, bar_steps, cadence, satb
        self.satb_ranges = list(ranges)
        self.pitch_class = (self.pitch_index + lowest_pitch) % 12
        # pitch indices laid out on whole octaves from a C: [rows, octaves, 12] sums pitch classes
        self.from_c = lowest_pitch % 12
        self.octaves = -(-(self.from_c + pitches) // 12)
        keys = np.arange(24)
        tonic, third = keys % 12, np.where(keys >= 12, MINOR_THIRD, MAJOR_THIRD)
        self.tonic_chord = chords(tonic, [0, third, FIFTH])  # [24 keys, 12 pitch classes]
        dominant = (tonic + FIFTH) % 12
        self.dominant_chord = chords(dominant, [0, MAJOR_THIRD, FIFTH, MINOR_SEVENTH])
        self.dominant_basses = np.stack([dominant, (dominant + MAJOR_THIRD) % 12], 1)  # root or leading tone
        self.ranges = self.satb_ranges or [(0, self.pitches - 1)] * 4
        self.in_range = np.stack([(self.pitch_index >= low) & (self.pitch_index <= high) for low, high in self.ranges])
        # [moving up, own pitch, pitch class, pitch]: the pitches of a class on that side of a voice's own note
        sides = np.stack([self.pitch_index[None, :] < self.pitch_index[:, None],
                          self.pitch_index[None, :] > self.pitch_index[:, None]])
        self.side_class = sides[:, :, None, :] & (self.pitch_class == np.arange(12)[:, None])[None, None]
        bass_low = self.ranges[-1][0]
        # per pitch class, the lowest pitch index of that class in the bass's range
        self.bass_floor = np.array([((self.pitch_class == c) & (self.pitch_index >= bass_low)).argmax()
                                    for c in range(12)])

    def _start(self, batch_size: int) -> None:
        import torch

        super()._start(batch_size)
        self.profiles = torch.tensor(KEY_PROFILES, dtype=torch.float32)
        self.voice = np.full((batch_size, 4), -1, dtype=np.int64)  # pitch index per voice in this step
        self.before = np.full((batch_size, 4), -1, dtype=np.int64)  # ... in the step before
        self.histogram = np.zeros((batch_size, 12), dtype=np.float32)  # steps each pitch class sounded
        self.key = np.zeros(batch_size, dtype=np.int64)
        self.phase = np.full(batch_size, FREE, dtype=np.int64)
        if self.cadence is not None:
            self._enter_phases()

    def _enter_phases(self) -> None:
        """Move rows into the forced dominant and tonic when the steps reach them."""
        latest = self.cadence[1]
        dominant_from = max(0, latest - self.bar_steps // 4)
        self.phase[(self.phase == FREE) & (self.steps >= dominant_from)] = DOMINANT
        self.phase[(self.phase == DOMINANT) & (self.steps >= latest)] = TONIC

    def _allowed(self) -> np.ndarray:
        ending = self.done | (self.steps >= self.max_steps)
        if self.cadence is not None:
            ending |= (self.phase == HOLD) & (self.notes == 0) & (self.steps % self.bar_steps == 0)
        if self.satb and ((self.notes >= 4) | ending).all():  # four notes each: the steps end
            mask = np.zeros((len(self.notes), self.vocab_size), dtype=bool)
            mask[:, self.step_end] = True
            return force(mask, ending, self.end)
        # in four parts every step has four notes, so all rows still writing are at the same voice
        k = min(3, int(self.notes.max())) if self.satb else 0
        # the cadence's masks where a row still writing is in it (an ending row is forced to the end below)
        cadence = self.cadence is not None and ((self.phase != FREE) & ~ending).any()
        chord = self._cadence_masks(k) if cadence else None
        grammar = self._voicing(k) if self.satb else super()._allowed()
        mask = grammar if chord is None else self._within(grammar, *chord)
        if not mask.any(1).all():  # the rules give way in turn: parallels, the cadence's chord, ranges
            plain = super()._allowed()
            fallbacks = [plain]
            if chord is not None:
                fallbacks.insert(0, self._within(plain, *chord))
            if self.satb:
                ranges = self._voicing(k, parallels=False)
                fallbacks[:0] = [ranges] if chord is None else [self._within(ranges, *chord), ranges]
            for relaxed in fallbacks:
                mask = np.where(mask.any(1, keepdims=True), mask, relaxed)
        return force(mask, ending, self.end)

    def _voicing(self, k: int, parallels: bool = True) -> np.ndarray:
        """The grammar of four voices, for rows whose next note is voice ``k``'s: it strikes a note in its range,
        below the voice above and (alto, tenor) within an octave of it, without parallels (unless
        ``parallels`` is False); or it holds its own note. Four notes end a step (see :meth:`_allowed`)."""
        own = self.before[:, k]  # this voice's pitch in the step before
        low, high = self.ranges[k]
        mask = np.zeros((len(self.notes), self.vocab_size), dtype=bool)
        # re-struck, a pitch struck again holds the note: only the voice that sang it may
        taken = self.previous if self.restruck else np.zeros_like(self.previous)
        if k == 0:
            mask[:, self.new_notes] = self.in_range[0] & ~taken
            mask[:, self.held_notes] |= self.pitch_index == own[:, None]
            mask[:, self.end] = self.steps >= self.min_steps
            return mask
        above = self.voice[:, k - 1]
        floor = np.maximum(above - 12, low) if k in (1, 2) else np.full_like(above, low)
        new = (self.pitch_index >= floor[:, None]) & (self.pitch_index < np.minimum(above, high + 1)[:, None])
        mask[:, self.new_notes] = (new & ~self._parallels(k, own) if parallels else new) & ~taken
        mask[:, self.held_notes] |= (self.pitch_index == own[:, None]) & (own < above)[:, None]
        return mask

    def _within(self, mask: np.ndarray, new: np.ndarray, held: np.ndarray, step_end: np.ndarray) -> np.ndarray:
        """``mask`` less the NEW_NOTE and CONTINUED_NOTE pitches and step ends that are not allowed [rows, ...]."""
        mask = mask.copy()
        if self.restruck:
            mask[:, self.new_notes] &= new | held
        else:
            mask[:, self.new_notes] &= new
            mask[:, self.held_notes] &= held
        mask[:, self.step_end] &= step_end
        return mask

    def _parallels(self, k: int, own: np.ndarray) -> np.ndarray:
        """[rows, pitches]: new notes for voice ``k`` that would move in parallel fifths or octaves with a
        voice above it (whose note in this step is chosen already)."""
        now, then = self.voice[:, :k], self.before[:, :k]
        interval = (then - own[:, None]) % 12
        moves = now - then  # 0 where the voice above holds or repeats its note
        parallel = ((interval == 0) | (interval == FIFTH)) & (then >= 0) & (own >= 0)[:, None] & (moves != 0)
        target = (now + self.lowest_pitch - interval) % 12  # the pitch class that would repeat the interval
        side = self.side_class[(moves > 0).astype(np.intp), np.maximum(own, 0)[:, None], target]  # [rows, k, pitches]
        return (side & parallel[:, :, None]).any(1)

    def _cadence_masks(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(NEW_NOTE pitches, CONTINUED_NOTE pitches, step end) allowed by the cadence: in the forced dominant
        and tonic, notes of the chord with its root in the bass; while holding, the notes of the step before."""
        dominant, tonic, hold = self.phase == DOMINANT, self.phase == TONIC, self.phase == HOLD
        chord = np.where(dominant[:, None], self.dominant_chord[self.key], self.tonic_chord[self.key])
        root = np.where(dominant, (self.key + FIFTH) % 12, self.key % 12)
        pitch_class = self.pitch_class[None, :]
        in_chord = chord[:, self.pitch_class] | ~(dominant | tonic)[:, None]
        lowest = self.pitch_class[np.minimum(self.lowest, self.pitches - 1)]
        step_end = ~(dominant | tonic) | (self.notes > 0) & (lowest == root)
        # the root must stay reachable below: other notes (in four parts, the upper voices) lie above its lowest
        # place in the bass's range; in four parts the bass sings it
        not_root = pitch_class != root[:, None]
        below_floor = self.pitch_index[None, :] <= self.bass_floor[root][:, None]
        if not self.satb:
            misplaced = not_root & below_floor
        elif k == 3:
            misplaced = not_root
        else:
            misplaced = below_floor
            if k == 0:  # the final soprano sings the root or the third (a perfect authentic cadence)
                misplaced = misplaced | tonic[:, None] & (pitch_class == (root[:, None] + FIFTH) % 12)
            # where the bass must move to the root, an upper voice that moves keeps no fifth or octave with it
            own, bass = self.before[:, k:k + 1], self.before[:, 3:]
            interval = (own - bass) % 12
            perfect = (own >= 0) & (bass >= 0) & ((interval == 0) | (interval == FIFTH))
            moving_bass = perfect & (self.pitch_class[np.maximum(bass, 0)] != root[:, None])
            misplaced = misplaced | (moving_bass & ((pitch_class - root[:, None]) % 12 == interval)
                                     & (self.pitch_index != own))
        in_chord = in_chord & ~((dominant | tonic)[:, None] & misplaced)
        remaining = self.previous & (self.pitch_index[None, :] < self.lowest[:, None])
        top = self.pitch_index == (remaining * (self.pitch_index + 1)).argmax(1)[:, None]
        holding = hold[:, None]
        new = in_chord & ~holding
        held = np.where(holding, top & remaining, in_chord)
        step_end = np.where(hold, ~remaining.any(1), step_end)
        return new, held, step_end

    def _advance(self, tokens: np.ndarray) -> None:
        writing = (tokens >= self.first_note) & (self.notes < 4)
        self.voice[writing, self.notes[writing]] = (tokens[writing] - self.first_note) % self.pitches
        step_end = tokens == self.step_end
        ends_a_step = step_end.any()
        if self.cadence is not None and ends_a_step:
            self._detect_cadence(step_end)
        super()._advance(tokens)
        if ends_a_step:
            self.before[step_end] = self.voice[step_end]
            self.voice[step_end] = -1
            if self.cadence is not None:
                self._enter_phases()

    def _detect_cadence(self, step_end: np.ndarray) -> None:
        """At the end of a step: count its pitch classes and follow the key while the music is free; a dominant
        chord just before a strong beat in the window calls for the tonic there; a tonic chord is then held.
        The key's scores are torch's float32 products, as they always were (a near tie decides alike)."""
        import torch

        octaves = np.zeros((len(self.sounding), self.octaves * 12), dtype=np.float32)
        octaves[:, self.from_c:self.from_c + self.pitches] = self.sounding
        sounding = octaves.reshape(len(octaves), self.octaves, 12).sum(1)  # [rows, 12]: notes of each pitch class
        self.histogram += sounding * step_end[:, None]
        free = self.phase == FREE
        tracking = free & step_end
        if tracking.any():
            best = (torch.from_numpy(self.histogram) @ self.profiles).argmax(1).numpy()
            self.key = np.where(tracking, best, self.key)
        bass = self.pitch_class[np.minimum(self.lowest, self.pitches - 1)]
        dominant = ((((sounding > 0) & ~self.dominant_chord[self.key]).sum(1) == 0) & (self.notes > 0)
                    & (self.dominant_basses[self.key] == bass[:, None]).any(1))
        next_step = self.steps + 1
        strong = next_step % (self.bar_steps // 2) == 0
        found = free & step_end & (next_step >= self.cadence[0]) & strong & dominant
        held = (self.phase == TONIC) & step_end
        self.phase = np.where(held, HOLD, np.where(found, TONIC, self.phase))


def chords(roots: np.ndarray, intervals: list[Any]) -> np.ndarray:
    """[len(roots), 12]: the pitch classes of a chord of ``intervals`` (ints, or one per root) on each root."""
    found = np.zeros((len(roots), 12), dtype=bool)
    for interval in intervals:
        found[np.arange(len(roots)), (roots + interval) % 12] = True
    return found
