"""Generation: a :class:`Decoding` is one request as a sampler (a generation strategy) sees it, with the
steps every strategy needs; :func:`generate` hands it to a sampler.

The primer runs through the model once; then each step feeds one token per row while carrying the
recurrent state, so every new token costs O(1). Random draws use a CPU generator, so results do not
depend on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from composer.api import ComposerError, Constraint, Encoder, Generated, Sampler
from composer.model import State, select_state


class Decoding:
    """One generation request: ``n`` sequences continuing ``prefix`` (the start token and the primer) for
    at most ``max_tokens`` new tokens, under ``constraint``, drawn with ``generator`` (seeded)."""

    def __init__(self, model: Any, prefix: Sequence[int], *, n: int, max_tokens: int, eos: int | None,
                 constraint: Constraint | None, seed: int, device: torch.device, history_from: int) -> None:
        self.model, self.prefix, self.n, self.max_tokens = model, list(prefix), n, max_tokens
        self.eos, self.constraint, self.seed, self.device = eos, constraint, seed, device
        self.history_from = history_from  # prefix[history_from:] is history a constraint tracks
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def start(self, rows: int) -> tuple[Tensor, State]:
        """Run the prefix through the model for ``rows`` rows and start the constraint over the primer:
        (logits [rows, vocab] as float32, state)."""
        x = torch.tensor(self.prefix, dtype=torch.long, device=self.device).unsqueeze(0).repeat(rows, 1)
        out = self.model(x)
        if self.constraint is not None:
            self.constraint.start(rows, self.device)
            for t in self.prefix[self.history_from:]:
                self.constraint.advance(torch.full((rows,), t, dtype=torch.long, device=self.device))
        return out.output[:, -1].float(), out.state

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Feed the tokens [rows] just chosen: the constraint advances and the model takes one step."""
        if self.constraint is not None:
            self.constraint.advance(tokens)
        logits, state = self.model.step(tokens, state)
        return logits.float(), state

    def mask(self, logits: Tensor) -> Tensor:
        """The logits with what the constraint forbids at -inf."""
        if self.constraint is None:
            return logits
        allowed = self.constraint.allowed()
        return logits if allowed is None else logits.masked_fill(~allowed.to(logits.device), float("-inf"))

    def select(self, state: State, index: Tensor) -> State:
        """Keep rows ``index`` (they may repeat) of the model state and of the constraint."""
        if self.constraint is not None:
            self.constraint.select(index)
        return select_state(state, index)

    def finish(self, rows: Tensor, log_likelihood: Tensor) -> list[Generated]:
        """The results from new tokens [n, T] (cut after the end token) and their log-likelihoods [n]."""
        results = []
        for row, ll in zip(rows.tolist(), log_likelihood.tolist()):
            if self.eos is not None and self.eos in row:
                row = row[: row.index(self.eos) + 1]
            results.append(Generated(self.prefix + row, float(ll), len(row)))
        return results


@torch.no_grad()
def generate(
    model: Any,
    encoder: Encoder,
    sampler: Sampler,
    *,
    n: int = 1,
    max_tokens: int = 512,
    primer: Sequence[int] = (),
    constraint: Constraint | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    options: Any = None,
) -> list[Generated]:
    """Generate ``n`` sequences with ``sampler``; each starts with the encoder's start token and ``primer``
    and ends at the end token or after ``max_tokens`` new tokens. The same seed gives the same tokens."""
    prefix = ([encoder.bos] if encoder.bos is not None else []) + list(primer)
    if not prefix:
        raise ComposerError("this encoder has no start token: give a primer to start from")
    if n < 1 or max_tokens < 1:
        raise ComposerError(f"need at least one output and one token to generate (got n={n}, max_tokens={max_tokens})")
    model.eval()
    run = Decoding(model, prefix, n=n, max_tokens=max_tokens, eos=encoder.eos, constraint=constraint, seed=seed,
                   device=torch.device(device), history_from=1 if encoder.bos is not None else 0)
    results = sampler.generate(run, options if options is not None else sampler.options())
    if len(results) != n:
        raise ComposerError(f"sampler '{sampler.name}' returned {len(results)} sequences instead of {n}")
    return results
