"""Generation constraints of the MIDI encoders: a length window, the polyphony grammar, harmonization.

torch is imported where it is used, so that importing the plugin stays cheap."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from composer import ComposerError, Constraint
from composer_midi.harmony import FIFTH, MAJOR_THIRD, MINOR_SEVENTH, MINOR_THIRD
from composer_midi.notes import KEY_PROFILES

if TYPE_CHECKING:
    import torch

DEFAULT_BARS = (8, 16)  # without --length a piece may end by itself within this many bars


def bar_window(length: float | None, bar_steps: int) -> tuple[int, int]:
    """(fewest, most) steps for a length in bars: the end may come within the last bar and is forced when
    it is full; without a length, between 8 and 16 bars."""
    if length is None:
        return DEFAULT_BARS[0] * bar_steps, DEFAULT_BARS[1] * bar_steps
    if not 0 < length < math.inf:
        raise ComposerError(f"length must be a finite number of bars > 0, got {length}")
    most = round(length * bar_steps)
    if most < 1:
        raise ComposerError(f"length {length} bars is less than one step of the grid; the least is "
                            f"{1 / bar_steps:g} bars")
    return max(1, most - bar_steps), most


class LengthConstraint(Constraint):
    """Forbids the end token before ``min_steps`` and forces it at ``max_steps``; each token advances time
    by its entry in ``step_sizes``. The start token is never chosen, and a finished row repeats the end."""

    row_state = ("steps", "done")

    def __init__(self, step_sizes: Sequence[int], bos: int, eos: int, min_steps: int, max_steps: int) -> None:
        self.step_sizes, self.bos, self.eos = list(step_sizes), bos, eos
        self.min_steps, self.max_steps = min_steps, max_steps

    def start(self, batch_size: int, device: Any) -> None:
        import torch

        self.sizes = torch.tensor(self.step_sizes, device=device)
        self.steps = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.done = torch.zeros(batch_size, dtype=torch.bool, device=device)

    def allowed(self) -> torch.Tensor:
        import torch

        mask = torch.ones(len(self.steps), len(self.step_sizes), dtype=torch.bool, device=self.steps.device)
        mask[:, self.bos] = False
        mask[:, self.eos] = self.steps >= self.min_steps
        return force(mask, self.done | (self.steps >= self.max_steps), self.eos)

    def advance(self, tokens: torch.Tensor) -> None:
        self.steps += self.sizes[tokens]
        self.done |= tokens == self.eos


class PolyphonyConstraint(Constraint):
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
        self.held_notes = held_notes
        self.vocab_size = first_note + (2 if held_notes else 1) * pitches
        continued = first_note + (pitches if held_notes else 0)  # the first token that holds a note
        self.min_steps, self.max_steps = min_steps, max_steps
        self.soprano_tokens = list(soprano)
        # per step: the CONTINUED_NOTE of the melody's note in the step before, which lower voices must not use
        self.released = [-1] + [
            continued + (t - first_note) % pitches if t >= first_note else -1
            for t in self.soprano_tokens[:-1]
        ]
        self.max_notes = max_notes or pitches

    def start(self, batch_size: int, device: Any) -> None:
        import torch

        def zeros(*shape: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, device=device)

        self.steps = zeros(batch_size)
        self.notes = zeros(batch_size)  # notes so far in the current step
        self.lowest = torch.full((batch_size,), self.pitches, device=device)  # last note's pitch index
        self.sounding = zeros(batch_size, self.pitches, dtype=torch.bool)  # in the current step
        self.previous = zeros(batch_size, self.pitches, dtype=torch.bool)  # in the step before
        self.done = zeros(batch_size, dtype=torch.bool)
        self.soprano = torch.tensor(self.soprano_tokens or [self.step_end], device=device)
        self.released_tokens = torch.tensor(self.released, device=device)
        self.pitch_index = torch.arange(self.pitches, device=device)

    def allowed(self) -> torch.Tensor:
        import torch

        batch = len(self.steps)
        below = (self.pitch_index[None, :] < self.lowest[:, None]) & (self.notes < self.max_notes)[:, None]
        mask = torch.zeros(batch, self.vocab_size, dtype=torch.bool, device=self.steps.device)
        mask[:, self.first_note :] = self.note_tokens(below, below & self.previous)
        mask[:, self.step_end] = True
        between_steps = self.notes == 0
        mask[:, self.end] = between_steps & (self.steps >= self.min_steps)
        if self.soprano_tokens:
            opening = between_steps & (self.steps < len(self.soprano_tokens))
            step = self.steps.clamp(max=len(self.soprano_tokens) - 1)
            mask[opening] = False
            mask[opening, self.soprano[step[opening]]] = True
            released = self.released_tokens[step]
            below_melody = ~between_steps & (self.steps < len(self.soprano_tokens)) & (released >= 0)
            mask[below_melody, released[below_melody]] = False
        return force(mask, self.done | (self.steps >= self.max_steps), self.end)

    def note_tokens(self, new: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
        """[rows, note tokens] from the pitches a row may strike and those it may hold ([rows, pitches] each):
        NEW_NOTE then CONTINUED_NOTE tokens, or, where held notes are re-struck, NEW_NOTE for either."""
        import torch

        return torch.cat([new, held], 1) if self.held_notes else new | held

    def advance(self, tokens: torch.Tensor) -> None:
        import torch

        is_note = tokens >= self.first_note
        pitch = (tokens - self.first_note).clamp(min=0) % self.pitches
        struck = is_note[:, None] & (self.pitch_index[None, :] == pitch[:, None])
        self.sounding |= struck
        self.notes += is_note.long()
        self.lowest = torch.where(is_note, pitch, self.lowest)
        step_end = tokens == self.step_end
        self.previous = torch.where(step_end[:, None], self.sounding, self.previous)
        self.sounding &= ~step_end[:, None]
        self.notes = torch.where(step_end, 0, self.notes)
        self.lowest = torch.where(step_end, self.pitches, self.lowest)
        self.steps += step_end.long()
        self.done |= tokens == self.end


def force(mask: torch.Tensor, rows: torch.Tensor, token: int) -> torch.Tensor:
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

    def start(self, batch_size: int, device: Any) -> None:
        import torch

        super().start(batch_size, device)
        pitch_class = (self.pitch_index + self.lowest_pitch) % 12
        self.pitch_class = pitch_class
        self.class_of = torch.nn.functional.one_hot(pitch_class, 12).float()  # [pitches, 12]
        self.profiles = torch.tensor(KEY_PROFILES, dtype=torch.float32, device=device)
        keys = torch.arange(24, device=device)
        tonic, third = keys % 12, torch.where(keys >= 12, MINOR_THIRD, MAJOR_THIRD)
        self.tonic_chord = self._chords(tonic, [0, third, FIFTH])  # [24 keys, 12 pitch classes]
        dominant = (tonic + FIFTH) % 12
        self.dominant_chord = self._chords(dominant, [0, MAJOR_THIRD, FIFTH, MINOR_SEVENTH])
        self.dominant_basses = torch.stack([dominant, (dominant + MAJOR_THIRD) % 12], 1)  # root or leading tone
        ranges = self.satb_ranges or [(0, self.pitches - 1)] * 4
        self.ranges = ranges
        self.in_range = torch.stack([(self.pitch_index >= low) & (self.pitch_index <= high) for low, high in ranges])
        bass_low = ranges[-1][0]
        # per pitch class, the lowest pitch index of that class in the bass's range
        self.bass_floor = torch.stack([((pitch_class == c) & (self.pitch_index >= bass_low)).int().argmax()
                                       for c in range(12)])
        self.voice_index = torch.arange(4, device=device)[None, :]
        self.voice = torch.full((batch_size, 4), -1, device=device)  # pitch index per voice in this step
        self.before = torch.full((batch_size, 4), -1, device=device)  # ... in the step before
        self.histogram = torch.zeros(batch_size, 12, device=device)  # steps each pitch class sounded
        self.key = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.phase = torch.full((batch_size,), FREE, device=device)
        if self.cadence is not None:
            self._enter_phases()

    def _chords(self, roots: torch.Tensor, intervals: list[Any]) -> torch.Tensor:
        """[len(roots), 12]: the pitch classes of a chord of ``intervals`` (ints, or one per root) on each root."""
        import torch

        chords = torch.zeros(len(roots), 12, dtype=torch.bool, device=roots.device)
        for interval in intervals:
            chords[torch.arange(len(roots)), (roots + interval) % 12] = True
        return chords

    def _enter_phases(self) -> None:
        """Move rows into the forced dominant and tonic when the steps reach them."""
        import torch

        latest = self.cadence[1]
        dominant_from = max(0, latest - self.bar_steps // 4)
        self.phase = torch.where((self.phase == FREE) & (self.steps >= dominant_from), DOMINANT, self.phase)
        self.phase = torch.where((self.phase == DOMINANT) & (self.steps >= latest), TONIC, self.phase)

    def allowed(self) -> torch.Tensor:
        import torch

        ending = self.done | (self.steps >= self.max_steps)
        if self.cadence is not None:
            ending |= (self.phase == HOLD) & (self.notes == 0) & (self.steps % self.bar_steps == 0)
        if self.satb and bool(((self.notes >= 4) | ending).all()):  # four notes each: the steps end
            mask = torch.zeros(len(self.notes), self.vocab_size, dtype=torch.bool, device=self.notes.device)
            mask[:, self.step_end] = True
            return force(mask, ending, self.end)
        # in four parts every step has four notes, so all rows still writing are at the same voice
        k = min(3, int(self.notes.max())) if self.satb else 0
        chord = self._cadence_masks(k) if self.cadence is not None and bool((self.phase != FREE).any()) else None
        grammar = self._voicing(k) if self.satb else super().allowed()
        mask = grammar if chord is None else self._within(grammar, *chord)
        if not bool(mask.any(1).all()):  # the rules give way in turn: parallels, the cadence's chord, ranges
            plain = super().allowed()
            fallbacks = [plain]
            if chord is not None:
                fallbacks.insert(0, self._within(plain, *chord))
            if self.satb:
                ranges = self._voicing(k, parallels=False)
                fallbacks[:0] = [ranges] if chord is None else [self._within(ranges, *chord), ranges]
            for relaxed in fallbacks:
                mask = torch.where(mask.any(1, keepdim=True), mask, relaxed)
        return force(mask, ending, self.end)

    def _voicing(self, k: int, parallels: bool = True) -> torch.Tensor:
        """The grammar of four voices, for rows whose next note is voice ``k``'s: it strikes a note in its range,
        below the voice above and (alto, tenor) within an octave of it, without parallels (unless
        ``parallels`` is False); or it holds its own note. Four notes end a step (see :meth:`allowed`)."""
        import torch

        rows = len(self.notes)
        own = self.before[:, k]  # this voice's pitch in the step before
        low, high = self.ranges[k]
        if k == 0:
            new = self.in_range[0].expand(rows, -1)
            held = self.pitch_index == own[:, None]
        else:
            above = self.voice[:, k - 1]
            floor = (above - 12).clamp(min=low) if k in (1, 2) else torch.full_like(above, low)
            new = (self.pitch_index >= floor[:, None]) & (self.pitch_index < above.clamp(max=high + 1)[:, None])
            if parallels:
                new = new & ~self._parallels(k, own)
            held = (self.pitch_index == own[:, None]) & (own < above)[:, None]
        if not self.held_notes:  # a pitch struck again holds the note: only the voice that sang it may
            new = new & ~self.previous
        specials = torch.zeros(rows, self.first_note, dtype=torch.bool, device=own.device)
        if k == 0:
            specials[:, self.end] = self.steps >= self.min_steps
        return torch.cat([specials, self.note_tokens(new, held)], 1)

    def _within(self, mask: torch.Tensor, new: torch.Tensor, held: torch.Tensor,
                step_end: torch.Tensor) -> torch.Tensor:
        """``mask`` less the NEW_NOTE and CONTINUED_NOTE pitches and step ends that are not allowed [rows, ...]."""
        mask = mask.clone()
        mask[:, self.first_note:] &= self.note_tokens(new, held)
        mask[:, self.step_end] &= step_end
        return mask

    def _parallels(self, k: int, own: torch.Tensor) -> torch.Tensor:
        """[rows, pitches]: new notes for voice ``k`` that would move in parallel fifths or octaves with a
        voice above it (whose note in this step is chosen already)."""
        import torch

        now, then = self.voice[:, :k], self.before[:, :k]
        interval = (then - own[:, None]) % 12
        perfect = ((interval == 0) | (interval == FIFTH)) & (then >= 0) & (own >= 0)[:, None]
        way = torch.sign(now - then)  # 0 where the voice above holds or repeats its note
        target = (now + self.lowest_pitch - interval) % 12  # the pitch class that would repeat the interval
        side = torch.sign(self.pitch_index[None, :] - own[:, None])[:, None, :]
        return ((perfect & (way != 0))[:, :, None] & (self.pitch_class[None, None, :] == target[:, :, None])
                & (side == way[:, :, None])).any(1)

    def _cadence_masks(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(NEW_NOTE pitches, CONTINUED_NOTE pitches, step end) allowed by the cadence: in the forced dominant
        and tonic, notes of the chord with its root in the bass; while holding, the notes of the step before."""
        import torch

        dominant, tonic, hold = self.phase == DOMINANT, self.phase == TONIC, self.phase == HOLD
        chord = torch.where(dominant[:, None], self.dominant_chord[self.key], self.tonic_chord[self.key])
        root = torch.where(dominant, (self.key + FIFTH) % 12, self.key % 12)
        pitch_class = self.pitch_class[None, :]
        in_chord = chord[:, self.pitch_class] | ~(dominant | tonic)[:, None]
        lowest = self.pitch_class[self.lowest.clamp(max=self.pitches - 1)]
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
            moving_bass = perfect & (self.pitch_class[bass.clamp(min=0)] != root[:, None])
            misplaced = misplaced | (moving_bass & ((pitch_class - root[:, None]) % 12 == interval)
                                     & (self.pitch_index != own))
        in_chord = in_chord & ~((dominant | tonic)[:, None] & misplaced)
        remaining = self.previous & (self.pitch_index[None, :] < self.lowest[:, None])
        top = torch.nn.functional.one_hot((remaining * (self.pitch_index + 1)).argmax(1), self.pitches).bool()
        holding = hold[:, None]
        new = in_chord & ~holding
        held = torch.where(holding, top & remaining, in_chord)
        step_end = torch.where(hold, ~remaining.any(1), step_end)
        return new, held, step_end

    def advance(self, tokens: torch.Tensor) -> None:
        import torch

        is_note = tokens >= self.first_note
        if bool(is_note.any()):
            pitch = (tokens - self.first_note) % self.pitches
            which = self.voice_index == self.notes.clamp(max=3)[:, None]
            self.voice = torch.where((is_note & (self.notes < 4))[:, None] & which, pitch[:, None], self.voice)
        step_end = tokens == self.step_end
        ends_a_step = bool(step_end.any())
        if self.cadence is not None and ends_a_step:
            self._detect_cadence(step_end)
        super().advance(tokens)
        if ends_a_step:
            self.before = torch.where(step_end[:, None], self.voice, self.before)
            self.voice = torch.where(step_end[:, None], -1, self.voice)
            if self.cadence is not None:
                self._enter_phases()

    def _detect_cadence(self, step_end: torch.Tensor) -> None:
        """At the end of a step: count its pitch classes and follow the key while the music is free; a dominant
        chord just before a strong beat in the window calls for the tonic there; a tonic chord is then held."""
        import torch

        sounding = self.sounding.float() @ self.class_of  # [rows, 12]
        self.histogram += sounding * step_end[:, None]
        free = self.phase == FREE
        self.key = torch.where(free & step_end, (self.histogram @ self.profiles).argmax(1), self.key)
        bass = self.pitch_class[self.lowest.clamp(max=self.pitches - 1)]
        dominant = (((sounding > 0) & ~self.dominant_chord[self.key]).sum(1).eq(0) & (self.notes > 0)
                    & (self.dominant_basses[self.key] == bass[:, None]).any(1))
        following = self.steps + 1
        strong = following % (self.bar_steps // 2) == 0
        found = free & step_end & (following >= self.cadence[0]) & strong & dominant
        held = (self.phase == TONIC) & step_end
        self.phase = torch.where(held, HOLD, torch.where(found, TONIC, self.phase))
