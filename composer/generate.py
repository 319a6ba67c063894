"""Generation: a :class:`Decoding` is one request as a sampler (a generation strategy) sees it, with the
steps every strategy needs; :func:`generate` hands it to a sampler.

The primer runs through the model in windows of ``PRIME_WINDOW`` steps, carrying the state; then each step
feeds one token per row while carrying the recurrent state, so every new token costs O(1). Random draws
come from a generator seeded with the request's seed: the same seed gives the same result on the CPU, and
on a GPU the draws stay on the device, so that no step waits for the host.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor

from composer.api import ComposerError, Constraint, Encoder, Generated, Sampler
from composer.heads import draw_index, last_step
from composer.model import State, select_state

PRIME_WINDOW = 4096  # prefix steps run through the model in one call


class Decoding:
    """One generation request: ``n`` sequences continuing ``prefix`` (the start token or row and the primer)
    for at most ``max_tokens`` new steps, under ``constraint``, drawn with ``generator`` (seeded).

    ``inputs`` are per-row conditioning tensors the model takes at every step: ``cond`` (class ids) and,
    for a model with a latent code, ``latent``; each has one row (shared by all rows) or ``n`` rows (one
    per sequence). A categorical head gives logits that samplers filter; any other head is drawn from
    with ``head.sample`` (see :meth:`draw`)."""

    def __init__(self, model: Any, prefix: Any, *, n: int, max_tokens: int, eos: int | None,
                 constraint: Constraint | None, seed: int, device: torch.device, history_from: int,
                 inputs: dict[str, Tensor] | None = None, progress: Callable[[int, int], None] | None = None) -> None:
        self.model, self.n, self.max_tokens = model, n, max_tokens
        self.progress, self.steps = progress, 0  # progress(steps, max_tokens) after each step, for a front end
        self.eos, self.constraint, self.seed, self.device = eos, constraint, seed, device
        self.head = getattr(model, "head", None)  # a model without one gives logits (a categorical head)
        self.categorical = self.head is None or bool(getattr(self.head, "categorical", False))
        self.prefix = list(prefix) if self.categorical else np.asarray(prefix, dtype=np.float32)
        self.history_from = history_from  # prefix[history_from:] is history a constraint tracks
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        # on a GPU, a generator there too (seeded alike), so that drawing never copies to the host
        self.device_generator = (self.generator if self.device.type == "cpu"
                                 else torch.Generator(device=self.device).manual_seed(seed))
        self.given = {k: v for k, v in (inputs or {}).items() if v is not None}
        self.inputs: dict[str, Tensor] = {}
        if constraint is not None and not self.categorical:
            raise ComposerError("constraints choose tokens; this model's head draws other values")

    def _row_inputs(self, rows: int) -> dict[str, Tensor]:
        out = {}
        for key, value in self.given.items():
            value = value.to(self.device)
            if value.shape[0] == 1:
                value = value.expand(rows, *value.shape[1:])
            elif value.shape[0] != rows:
                raise ComposerError(f"this strategy runs {rows} rows for {self.n} sequences, so it needs one "
                                    f"{key} shared by all of them, not one per sequence")
            out[key] = value
        return out

    def start(self, rows: int) -> tuple[Any, State]:
        """Run the prefix through the model for ``rows`` rows and start the constraint over the primer:
        (the last step's output: logits [rows, vocab] as float32 for a categorical head, state). A long
        prefix runs in windows of ``PRIME_WINDOW`` steps carrying the state, so that memory stays that of
        one window (the result equals one call's within float rounding)."""
        self.inputs = self._row_inputs(rows)
        state = None
        for first in range(0, len(self.prefix), PRIME_WINDOW):
            window = self.prefix[first: first + PRIME_WINDOW]
            if self.categorical:
                x = torch.tensor(window, dtype=torch.long, device=self.device).unsqueeze(0).expand(rows, -1)
            else:
                x = torch.from_numpy(window).to(self.device).unsqueeze(0).expand(rows, -1, -1)
            carried = {} if state is None else {"state": state}
            out = self.model(x, **carried, **self.inputs)
            state, output = out.state, last_step(out.output)
            del out
        if self.constraint is not None:
            self.constraint.start(rows, self.device)
            for t in self.prefix[self.history_from:]:
                self.constraint.advance(torch.full((rows,), t, dtype=torch.long, device=self.device))
        return self._float(output), state

    def _float(self, output: Any) -> Any:
        return output.float() if self.categorical else output

    def step(self, tokens: Tensor, state: State) -> tuple[Any, State]:
        """Feed the tokens [rows] (or rows [rows, D]) just chosen: the constraint advances and the model takes
        one step."""
        if self.constraint is not None:
            self.constraint.advance(tokens)
        output, state = self.model.step(tokens, state, **self.inputs)
        self.steps += 1
        if self.progress is not None:
            self.progress(self.steps, self.max_tokens)
        return self._float(output), state

    def sample_index(self, probs: Tensor) -> Tensor:
        """One index per row of ``probs`` [rows, k] (e.g. a softmax over filtered logits), drawn with the
        run's seeded generator, on the probabilities' device: on the CPU ``torch.multinomial`` with
        ``generator``; on a GPU without waiting for the host (:func:`composer.heads.draw_index`)."""
        return draw_index(probs, self.device_generator).to(probs.device)

    def draw(self, output: Any, temperature: float) -> tuple[Tensor, Tensor]:
        """For a head that is not categorical: the next value per row, drawn by the head at ``temperature``,
        and its log-likelihood under the unscaled output [rows] (float64)."""
        value = self.head.sample(output, self.device_generator, temperature)
        return value, self.head.log_prob(output, value).double()

    def ends(self, value: Tensor) -> Tensor | None:
        """Which rows' just-drawn value ends the sequence (the end token, or what the head says), or None."""
        if self.categorical:
            return None if self.eos is None else value == self.eos
        return self.head.ends(value)

    def mask(self, logits: Tensor) -> Tensor:
        """The logits with what the constraint forbids at -inf."""
        if self.constraint is None:
            return logits
        allowed = self.constraint.allowed()
        return logits if allowed is None else logits.masked_fill(~allowed.to(logits.device), float("-inf"))

    def select(self, state: State, index: Tensor) -> State:
        """Keep rows ``index`` (they may repeat) of the model state, the conditioning and the constraint."""
        if self.constraint is not None:
            self.constraint.select(index)
        self.inputs = {k: v.index_select(0, index) for k, v in self.inputs.items()}
        return select_state(state, index)

    def finish(self, rows: Tensor, log_likelihood: Tensor) -> list[Generated]:
        """The results from new tokens [n, T] (or rows [n, T, D]; cut after the end) and their
        log-likelihoods [n]."""
        results = []
        if not self.categorical:
            values = rows.float().cpu().numpy()
            ended = self.head.ends(rows)
            for k, ll in enumerate(log_likelihood.tolist()):
                hits = torch.nonzero(ended[k]).flatten() if ended is not None else torch.empty(0)
                cut = int(hits[0]) + 1 if len(hits) else values.shape[1]
                results.append(Generated(np.concatenate([self.prefix, values[k, :cut]]), float(ll), cut))
            return results
        for row, ll in zip(rows.tolist(), log_likelihood.tolist()):
            if self.eos is not None and self.eos in row:
                row = row[: row.index(self.eos) + 1]
            results.append(Generated(self.prefix + row, float(ll), len(row)))
        return results


BIG_BATCH = 16  # rows per step from which a step's matrices are large enough for threads to share


@contextmanager
def generation_threads(device: torch.device, rows: int = 1) -> Iterator[None]:
    """The threads generation runs on, on the CPU, unless the user chose (``COMPOSER_THREADS=N``, or
    ``OMP_NUM_THREADS``). A step of a few rows multiplies small matrices: one thread, since threads that wait
    for each other turn a busy machine's share of a core into seconds (measured: 64 chorales beside one
    busy process, 9.3 s on one thread against 23.6 s on two). From ``BIG_BATCH`` rows a step has work to
    share: as many threads as the cores other work leaves free (64 chorales on an idle
    2-core machine, 6.7 s on two threads against 9.1 s on one, the same files)."""
    chosen = os.environ.get("COMPOSER_THREADS", "").strip()
    if device.type != "cpu" or (not chosen and os.environ.get("OMP_NUM_THREADS")):
        yield
        return
    before = torch.get_num_threads()
    if chosen.isdigit() and int(chosen) > 0:
        threads = int(chosen)
    elif rows >= BIG_BATCH:
        threads = max(1, min(before, int((os.cpu_count() or 1) - _busy_cores() + 0.5)))
    else:
        threads = 1
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _busy_cores(interval: float = 0.05) -> float:
    """How many cores other work keeps busy now: from the kernel's CPU counters over ``interval`` seconds
    (this process sleeps meanwhile), where it has them (Linux); elsewhere the one-minute load average, which
    lags (it still counts work that ended a minute ago)."""
    def counters() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        return sum(values), values[3] + values[4]  # all, idle + waiting for I/O

    try:
        total0, idle0 = counters()
        time.sleep(interval)
        total1, idle1 = counters()
        if total1 > total0:
            return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))
    except (OSError, ValueError):
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


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
    inputs: dict[str, Tensor] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Generated]:
    """Generate ``n`` sequences with ``sampler``; each starts with the encoder's start token (or row) and
    ``primer`` and ends at the end (token or head's end) or after ``max_tokens`` new steps. ``inputs``:
    conditioning the model takes at every step (``cond``: class ids; ``latent``: codes), one row or ``n``.
    ``progress(steps, max_tokens)`` is called after every model step (a front end's progress display; beam
    search may take more steps than ``max_tokens``). The same seed gives the same result."""
    prefix = ([encoder.bos] if encoder.bos is not None else []) + [row for row in primer]
    if not len(prefix):
        raise ComposerError("this encoder has no start token: give a primer to start from")
    if n < 1 or max_tokens < 1:
        raise ComposerError(f"need at least one output and one token to generate (got n={n}, max_tokens={max_tokens})")
    model.eval()
    run = Decoding(model, prefix, n=n, max_tokens=max_tokens, eos=encoder.eos, constraint=constraint, seed=seed,
                   device=torch.device(device), history_from=1 if encoder.bos is not None else 0,
                   inputs=inputs, progress=progress)
    with generation_threads(run.device, n):
        results = sampler.generate(run, options if options is not None else sampler.options())
    if len(results) != n:
        raise ComposerError(f"sampler '{sampler.name}' returned {len(results)} sequences instead of {n}")
    return results
