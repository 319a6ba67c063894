"""Batched autoregressive generation: the primer runs through the model once, then each step feeds one
token per row while carrying the recurrent state, so every new token costs O(1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from composer.api import ComposerError, Constraint, Encoder, Sampler


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
    sampler_options: dict | None = None,
) -> list[list[int]]:
    """Generate ``n`` sequences; each starts with the encoder's start token and ``primer`` and ends at the
    end token or after ``max_tokens`` new tokens. The same seed gives the same tokens."""
    device = torch.device(device)
    options = sampler_options or {}
    prefix = ([encoder.bos] if encoder.bos is not None else []) + list(primer)
    if not prefix:
        raise ComposerError("this encoder has no start token: give a primer to start from")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    model.eval()
    x = torch.tensor(prefix, dtype=torch.long, device=device).unsqueeze(0).repeat(n, 1)
    out = model(x)
    logits, state = out.output[:, -1], out.state
    if constraint is not None:
        constraint.start(n, device)
        # the primer's tokens are part of the history a constraint tracks (the start token is not)
        for t in prefix[1 if encoder.bos is not None else 0:]:
            constraint.advance(torch.full((n,), t, dtype=torch.long, device=device))
    eos = encoder.eos
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    chosen = []
    for i in range(max_tokens):
        logits = logits.float()
        if constraint is not None:
            allowed = constraint.allowed()
            if allowed is not None:
                logits = logits.masked_fill(~allowed.to(device), float("-inf"))
        # sampling draws on a CPU generator so that results do not depend on the device
        token = sampler.fn(logits.cpu(), generator, **options).to(device)
        if eos is not None:
            token = torch.where(finished, torch.full_like(token, eos), token)
        chosen.append(token)
        if constraint is not None:
            constraint.advance(token)
        if eos is not None:
            finished |= token == eos
            if i % 8 == 7 and bool(finished.all()):
                break
        if i + 1 < max_tokens:
            logits, state = model.step(token, state)
    rows = torch.stack(chosen, dim=1).tolist() if chosen else [[] for _ in range(n)]
    results = []
    for row in rows:
        if eos is not None and eos in row:
            row = row[: row.index(eos) + 1]
        results.append(prefix + row)
    return results
