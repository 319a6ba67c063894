"""Generation constraints of the MIDI encoders: a length window, the polyphony grammar, harmonization.

torch is imported where it is used, so that importing the plugin stays cheap."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from composer import ComposerError, Constraint

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
    the melody's note of the step before (it could only be read back as the melody's own note)."""

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
    ) -> None:
        self.pitches, self.end, self.step_end, self.first_note = pitches, end, step_end, first_note
        self.vocab_size = first_note + 2 * pitches
        self.min_steps, self.max_steps = min_steps, max_steps
        self.soprano_tokens = list(soprano)
        # per step: the CONTINUED_NOTE of the melody's note in the step before, which lower voices must not use
        self.released = [-1] + [
            first_note + pitches + (t - first_note) % pitches if t >= first_note else -1
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
        mask[:, self.first_note : self.first_note + self.pitches] = below
        mask[:, self.first_note + self.pitches :] = below & self.previous
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
