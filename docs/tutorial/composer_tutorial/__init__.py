"""composer-tutorial: the running example of the plugin authors' guide (docs/plugins.md).

It adds one generation strategy, ``min-p`` sampling, and one command, ``composer min-p-sample``. The tests
in ``tests/test_docs.py`` install this package through its entry point and run both, and check that the
regions between ``[doc:NAME]`` markers are what the guide shows.
"""

# [doc:imports]
from __future__ import annotations

from dataclasses import dataclass

import click
import torch

from composer import ComposerError, Generated, Sampler, hookimpl
from composer.commands import generate_and_write, generation_options, open_session

# [/doc]


# [doc:strategy]

def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep the tokens whose probability is at least ``min_p`` times the most likely token's; the others get
    -inf. Comparing log-probabilities: log p >= log p_max + log min_p."""
    log_probs = torch.log_softmax(logits, dim=-1)
    floor = log_probs.max(dim=-1, keepdim=True).values + torch.log(torch.tensor(min_p))
    return logits.masked_fill(log_probs < floor, float("-inf"))


class MinP(Sampler):
    name = "min-p"
    description = "sample among the tokens at least min_p times as likely as the most likely one"

    @dataclass
    class Options:
        min_p: float = 0.1  # 1 keeps only the most likely token(s); near 0 keeps almost all
        temperature: float = 1.0  # applied after the cut; > 1 flattens what is left

        def __post_init__(self) -> None:
            if not 0 < self.min_p <= 1:
                raise ComposerError(f"min_p must be in (0, 1], got {self.min_p}")
            if self.temperature <= 0:
                raise ComposerError(f"temperature must be more than 0, got {self.temperature}")

    def generate(self, run, options) -> list[Generated]:
        if not run.categorical:  # a mixture density head: no tokens to cut, so draw with the temperature
            return self.draw_values(run, options.temperature)
        logits, state = run.start(run.n)  # prime the model (and the constraint) for n rows
        finished = torch.zeros(run.n, dtype=torch.bool, device=run.device)
        ll = torch.zeros(run.n, dtype=torch.float64, device=run.device)
        chosen = []
        for _ in range(run.max_tokens):
            masked = run.mask(logits)  # what the constraint forbids is -inf
            probs = torch.softmax(min_p_filter(masked, options.min_p) / options.temperature, dim=-1)
            token = run.sample_index(probs)  # drawn with the run's seeded generator
            # score with the model's own, unfiltered log-probabilities, like every built-in strategy
            gain = torch.log_softmax(logits, -1).gather(-1, token[:, None]).squeeze(-1).double()
            ll += torch.where(finished, 0.0, gain)
            if run.eos is not None:  # a finished row repeats the end token; finish() cuts after it
                token = torch.where(finished, torch.full_like(token, run.eos), token)
                finished |= token == run.eos
            chosen.append(token)
            if bool(finished.all()):
                break
            logits, state = run.step(token, state)  # the constraint advances, the model takes one step
        return run.finish(torch.stack(chosen, dim=1), ll)

    def draw_values(self, run, temperature: float) -> list[Generated]:
        output, state = run.start(run.n)
        finished = torch.zeros(run.n, dtype=torch.bool, device=run.device)
        ll = torch.zeros(run.n, dtype=torch.float64, device=run.device)
        values = []
        for _ in range(run.max_tokens):
            value, gain = run.draw(output, temperature)  # the head draws; gain is its log-likelihood
            ll += torch.where(finished, 0.0, gain.to(ll.device))
            ends = run.ends(value)
            if ends is not None:
                finished |= ends.to(finished.device)
            values.append(value)
            if bool(finished.all()):
                break
            output, state = run.step(value, state)
        return run.finish(torch.stack(values, dim=1), ll)


@hookimpl
def register_samplers(register):
    register(MinP())
# [/doc]


# [doc:command]

@click.command("min-p-sample")
@generation_options
@click.option("--min-p", type=float, default=0.1, show_default=True, help="The min-p cut (0 < P <= 1).")
@click.option("--length", type=float, help="How much to generate, in the encoder's unit (bars, characters...).")
def min_p_sample(style, checkpoint, device, sampler, sampler_options, min_p, **opts):
    """Generate with min-p sampling: `composer sample --sampler min-p -S min_p P` in one word."""
    if sampler not in (None, "min-p"):
        raise ComposerError("min-p-sample always samples with min-p; use `composer sample --sampler` for others")
    session = open_session(style, checkpoint, device)
    generate_and_write(session, sampler="min-p", sampler_options=(*sampler_options, ("min_p", str(min_p))), **opts)


@hookimpl
def register_commands(cli):
    cli.add_command(min_p_sample)
# [/doc]
