"""Built-in samplers (generation strategies): ancestral sampling with temperature, top-k and top-p as
composable filters (``ancestral``; ``temperature``, ``top-k`` and ``top-p`` take one filter each, as they
always have), greedy decoding, and beam search with Magenta's branch factor and steps per iteration.

Every strategy scores what it generates with the model's own log-probabilities (unfiltered, at
temperature 1), so their results can be compared."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from composer import MAX_TOKENS, ComposerError, Generated, Sampler, hookimpl
from composer.heads import draw_index


def filtered(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """The logits [rows, vocab] cut to the ``top_k`` most likely tokens (0: all), divided by ``temperature``
    (> 0), then cut to the smallest set holding ``top_p`` of the probability (1: all); cut tokens get -inf.
    The most likely token always stays."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    scaled = logits / temperature if temperature != 1 else logits
    if top_p < 1.0:
        sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already cover top_p of the mass
        drop = (probs.cumsum(-1) - probs) >= top_p
        drop[..., 0] = False  # the most likely token stays, even for a top_p float32 rounds to 0
        kept = sorted_logits.masked_fill(drop, float("-inf"))
        scaled = torch.full_like(scaled, float("-inf")).scatter(-1, order, kept)
    return scaled


def draw(logits: Tensor, generator: torch.Generator, temperature: float, top_k: int, top_p: float) -> Tensor:
    """One token per row from the filtered distribution, drawn on the generator's device (the run's
    ``device_generator``: the CPU's for a model on the CPU); temperature 0 takes the most likely token."""
    if temperature == 0:
        return logits.argmax(-1)
    where = generator.device
    if where != logits.device:
        return draw(logits.to(where), generator, temperature, top_k, top_p).to(logits.device)
    return draw_index(torch.softmax(filtered(logits, temperature, top_k, top_p), dim=-1), generator)


def picked(log_probs: Tensor, tokens: Tensor) -> Tensor:
    """The log-probabilities [rows] (or [rows, T]) of ``tokens`` under ``log_probs`` [rows, (T,) vocab]."""
    return log_probs.gather(-1, tokens[..., None]).squeeze(-1)


def scored(gains: Tensor, tokens: Tensor, eos: int | None) -> Tensor:
    """Each row's log-likelihood [rows] (float64) from the per-step gains [rows, T]: the steps up to and
    including its first end token count."""
    gains = gains.double()
    if eos is not None:
        ends = (tokens == eos).long()
        gains = torch.where(ends.cumsum(1) - ends > 0, 0.0, gains)  # after the first end
    return gains.sum(1)


def draw_values(run, temperature: float) -> list[Generated]:
    """Ancestral sampling for a head that is not categorical (a mixture density over pen offsets): each step
    the head draws the next input at ``temperature`` (0: its most likely value) until it draws an end."""
    output, state = run.start(run.n)
    finished = torch.zeros(run.n, dtype=torch.bool, device=run.device)
    ll = torch.zeros(run.n, dtype=torch.float64, device=run.device)
    values = []
    for i in range(run.max_tokens):
        value, gain = run.draw(output, temperature)
        ll += torch.where(finished, 0.0, gain.to(ll.device))
        ends = run.ends(value)
        if ends is not None:
            finished |= ends.to(finished.device)
        values.append(value)
        # every 8th step: on a GPU each look at the flags waits for the device (finish() cuts after the end)
        if (i % 8 == 7 and bool(finished.all())) or i + 1 == run.max_tokens:
            break
        output, state = run.step(value, state)
    return run.finish(torch.stack(values, dim=1), ll)


TEMPERATURES = (1e-3, 1e3)  # beyond these the draws are the most likely token's, or uniform (and float32 overflows)


def _check_filters(temperature: float, top_k: int, top_p: float) -> None:
    """Refuse what no filter can mean, naming the option and its range (nan fails every comparison here)."""
    if not (temperature == 0 or TEMPERATURES[0] <= temperature <= TEMPERATURES[1]):
        raise ComposerError(f"temperature must be 0 (always the most likely token) or from {TEMPERATURES[0]:g} to "
                            f"{TEMPERATURES[1]:g}, got {temperature}")
    if top_k < 0:
        raise ComposerError(f"top_k must be a whole number >= 0 (0: no cut), got {top_k}")
    if not 0 < top_p <= 1:
        raise ComposerError(f"top_p must be in (0, 1], got {top_p}")


class Ancestral(Sampler):
    name = "ancestral"
    description = "sample each token from the model's distribution, reshaped by temperature, top_k and top_p"

    @dataclass
    class Options:
        temperature: float = 1.0  # > 1 flattens, < 1 sharpens; 0 always takes the most likely token
        top_k: int = 0  # sample among the k most likely tokens (0: all)
        top_p: float = 1.0  # sample among the most likely tokens holding this much probability (1: all)

        def __post_init__(self) -> None:
            _check_filters(self.temperature, self.top_k, self.top_p)

    def generate(self, run, options) -> list[Generated]:
        if not run.categorical:
            if getattr(options, "top_k", 0) or getattr(options, "top_p", 1.0) < 1:
                raise ComposerError("top_k and top_p filter tokens; this model's head draws other values, "
                                    "with a temperature only")
            return draw_values(run, getattr(options, "temperature", 0.0))
        logits, state = run.start(run.n)
        finished = torch.zeros(run.n, dtype=torch.bool, device=run.device)
        chosen, gains = [], []
        # A finished row repeats the end token where a constraint follows the rows; otherwise what a row
        # draws after its end is cut by finish() and scored(). Every 8th step the last 8 steps are scored
        # (one log-softmax for 8) and the ends looked for.
        repeat_end = run.eos is not None and run.constraint is not None
        unscored: list[Tensor] = []
        for i in range(run.max_tokens):
            token = self.choose(run.mask(logits), run.device_generator, options)
            unscored.append(logits)
            if repeat_end:
                token = torch.where(finished, run.eos, token)
                finished |= token == run.eos
            chosen.append(token)
            last = i + 1 == run.max_tokens
            if i % 8 == 7 or last:
                recent = torch.stack(chosen[-len(unscored):], 1)
                gains.append(picked(torch.log_softmax(torch.stack(unscored, 1), -1), recent))
                unscored = []
                if run.eos is not None and not repeat_end:
                    finished |= (recent == run.eos).any(1)
                if last or (run.eos is not None and bool(finished.all())):
                    break
            logits, state = run.step(token, state)
        tokens = torch.stack(chosen, dim=1)
        return run.finish(tokens, scored(torch.cat(gains, dim=1), tokens, run.eos))

    def choose(self, masked: Tensor, generator: torch.Generator, options) -> Tensor:
        return draw(masked, generator, options.temperature, getattr(options, "top_k", 0),
                    getattr(options, "top_p", 1.0))


class Temperature(Ancestral):
    """Ancestral sampling with a temperature alone (a style's top_k or top_p default does not apply)."""

    name = "temperature"
    description = "ancestral sampling with temperature only"

    @dataclass
    class Options:
        temperature: float = 1.0

        def __post_init__(self) -> None:
            _check_filters(self.temperature, 0, 1.0)


class TopK(Ancestral):
    name = "top-k"
    description = "ancestral sampling among the top_k most likely tokens"

    @dataclass
    class Options:
        temperature: float = 1.0
        top_k: int = 40

        def __post_init__(self) -> None:
            _check_filters(self.temperature, self.top_k, 1.0)


class TopP(Ancestral):
    name = "top-p"
    description = "nucleus sampling: among the most likely tokens holding top_p of the probability"

    @dataclass
    class Options:
        temperature: float = 1.0
        top_p: float = 0.9

        def __post_init__(self) -> None:
            _check_filters(self.temperature, 0, self.top_p)


class Greedy(Ancestral):
    name = "greedy"
    description = "the most likely token at every step (deterministic)"

    @dataclass
    class Options:
        pass

    def choose(self, masked: Tensor, generator: torch.Generator, options) -> Tensor:
        return masked.argmax(-1)


MAX_BEAM_ROWS = 16_384  # rows a beam search step may run: beams (or n) times the branch factor


class Beam(Sampler):
    name = "beam"
    independent_rows = False  # the n best sequences are found together
    description = ("beam search: keep the beam_size most likely sequences; each iteration extends every beam "
                   "branch_factor ways by steps_per_iteration tokens")

    @dataclass
    class Options:
        beam_size: int = 4  # sequences kept after each iteration (at least n)
        branch_factor: int = 4  # extensions tried per beam and iteration
        steps_per_iteration: int = 1  # tokens per extension before pruning
        sample: bool = False  # false: a branch opens with one of the branch_factor most likely tokens and goes
        # on greedily; true: branches are sampled (Magenta's beam search), with temperature, top_k, top_p
        temperature: float = 1.0
        top_k: int = 0
        top_p: float = 1.0

        def __post_init__(self) -> None:
            for key, most in (("beam_size", MAX_BEAM_ROWS), ("branch_factor", MAX_BEAM_ROWS),
                              ("steps_per_iteration", MAX_TOKENS)):
                if not 1 <= getattr(self, key) <= most:
                    raise ComposerError(f"{key} must be a whole number from 1 to {most:,}, got {getattr(self, key)}")
            if self.beam_size * self.branch_factor > MAX_BEAM_ROWS:
                raise ComposerError(f"beam_size x branch_factor must be at most {MAX_BEAM_ROWS:,} (the rows each step "
                                    f"runs), got {self.beam_size} x {self.branch_factor}")
            _check_filters(self.temperature, self.top_k, self.top_p)

    def generate(self, run, options) -> list[Generated]:
        if not run.categorical:
            raise ComposerError("beam search ranks tokens; this model's head draws other values "
                                "(use ancestral or greedy)")
        width, branches = max(options.beam_size, run.n), options.branch_factor
        if width * branches > MAX_BEAM_ROWS:
            raise ComposerError(f"beam search over {run.n} sequences with branch_factor {branches} would run "
                                f"{width * branches:,} rows a step; the most is {MAX_BEAM_ROWS:,}: ask for fewer")
        logits, state = run.start(width)
        device = logits.device
        # every beam starts as the same prefix: only the first is live, so no sequence is found twice
        score = torch.full((width,), float("-inf"), dtype=torch.float64, device=device)
        score[0] = 0.0
        tokens = torch.zeros(width, 0, dtype=torch.long, device=device)
        finished = torch.zeros(width, dtype=torch.bool, device=device)
        made = 0
        while made < run.max_tokens and not bool(finished.all()):
            index = torch.arange(width, device=device).repeat_interleave(branches)
            state, logits = run.select(state, index), logits[index]
            score, tokens, finished = score[index], tokens[index], finished[index]
            branch = torch.arange(branches, device=device).repeat(width)
            steps = min(options.steps_per_iteration, run.max_tokens - made)
            for j in range(steps):
                if j:
                    logits, state = run.step(tokens[:, -1], state)
                masked = run.mask(logits)
                if options.sample:
                    token = draw(masked, run.device_generator, options.temperature, options.top_k, options.top_p)
                elif j == 0:  # branch b opens with the beam's b-th most likely allowed token
                    top = torch.topk(masked, min(branches, masked.shape[-1]), dim=-1)
                    rank = branch.clamp(max=top.indices.shape[-1] - 1)
                    token = top.indices.gather(-1, rank[:, None]).squeeze(-1)
                    # a branch with no allowed token of its rank is dead
                    score = torch.where((branch < top.indices.shape[-1]) & torch.isfinite(
                        top.values.gather(-1, rank[:, None]).squeeze(-1)), score, float("-inf"))
                else:
                    token = masked.argmax(-1)
                gain = picked(torch.log_softmax(logits, -1), token).double()
                if run.eos is not None:
                    if j == 0:  # a finished sequence goes on in its first branch only, repeating the end token
                        score = torch.where(finished & (branch > 0), float("-inf"), score)
                    gain = torch.where(finished, 0.0, gain)
                    token = torch.where(finished, torch.full_like(token, run.eos), token)
                    finished = finished | (token == run.eos)
                score = score + gain
                tokens = torch.cat([tokens, token[:, None]], dim=1)
            made += steps
            keep = torch.sort(score, descending=True, stable=True).indices[:width]
            state, score, tokens, finished = run.select(state, keep), score[keep], tokens[keep], finished[keep]
            if made < run.max_tokens and not bool(finished.all()):
                logits, state = run.step(tokens[:, -1], state)
        best = torch.sort(score, descending=True, stable=True).indices[: run.n]
        found = int(torch.isfinite(score).sum())
        if found < run.n:
            raise ComposerError(f"beam search found only {found} different sequence(s) the constraint allows; "
                                f"ask for at most {found}")
        return run.finish(tokens[best], score[best])


SAMPLERS = [Ancestral(), Temperature(), TopK(), TopP(), Greedy(), Beam()]


@hookimpl
def register_samplers(register):
    for sampler in SAMPLERS:
        register(sampler)
