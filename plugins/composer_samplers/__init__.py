"""Built-in token samplers: greedy, temperature, top-k and top-p (nucleus).

Each takes logits [batch, vocab] (float, -inf for forbidden tokens) and a CPU ``torch.Generator`` and
returns token ids [batch]. Options they do not use are ignored, so one command line serves all.
"""

import torch

from composer import Sampler, hookimpl


def _draw(logits: torch.Tensor, generator: torch.Generator, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def greedy(logits, generator, **_):
    return logits.argmax(-1)


def temperature(logits, generator, temperature=1.0, **_):
    return _draw(logits, generator, float(temperature))


def top_k(logits, generator, temperature=1.0, top_k=40, **_):
    k = max(1, min(int(top_k), logits.shape[-1]))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return _draw(logits.masked_fill(logits < kth, float("-inf")), generator, float(temperature))


def top_p(logits, generator, temperature=1.0, top_p=0.9, **_):
    t = float(temperature)
    scaled = logits / t if t > 0 else logits
    sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
    # drop a token when the tokens before it already cover top_p of the mass (the first always stays)
    drop = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= float(top_p)
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    kept = torch.full_like(scaled, float("-inf")).scatter(-1, order, sorted_logits)
    return _draw(kept, generator, 1.0 if t > 0 else 0.0)


SAMPLERS = [
    Sampler("greedy", greedy, "the most likely token at every step"),
    Sampler("temperature", temperature, "sample from softmax(logits / temperature)"),
    Sampler("top-k", top_k, "sample among the k most likely tokens (option top_k, default 40)"),
    Sampler("top-p", top_p, "nucleus sampling: the smallest set holding top_p of the mass (default 0.9)"),
]


@hookimpl
def register_samplers(register):
    for sampler in SAMPLERS:
        register(sampler)
