"""The polyphony and chorale constraints choose the tokens they always have: a faster implementation must not
change what a seed generates. The tokens in ``tests/data/constraint_tokens.json`` were recorded with the first
implementation (torch tensors) and are compared whole."""

import json
from pathlib import Path

import pytest
import torch
from composer_midi.polyphony import END, PolyphonyEncoder

import composer
from composer import Constraint

RECORDED = Path(__file__).resolve().parents[1] / "data" / "constraint_tokens.json"
BACH = Path(__file__).resolve().parents[2] / "checkpoints" / "bach.safetensors"
MELODY = "67 67 69 71 72:2 71:2 69 67 69:2 71 72 74:2 72:4"
PLANS = {  # the encoder's generation requests
    "satb, cadence": {"length": 2, "voicing": "satb"},
    "free, cadence": {"length": 2, "voicing": "free"},
    "satb, no cadence": {"length": 2, "voicing": "satb", "cadence": "none"},
    "free, no cadence": {"length": 1, "voicing": "free", "cadence": "none"},
    "harmonization": {"melody": MELODY},
}


def drive(constraint: Constraint, vocab_size: int, rows: int, steps: int, seed: int) -> list[list[int]]:
    """Tokens drawn from seeded random logits under the constraint, every seventh step first putting the rows in
    a random order (through ``select``, as beam search follows its beams); each row up to its end."""
    generator = torch.Generator().manual_seed(seed)
    constraint.start(rows, torch.device("cpu"))
    chosen = torch.empty(rows, 0, dtype=torch.long)
    for step in range(steps):
        if step % 7 == 6:
            index = torch.randperm(rows, generator=generator)
            constraint.select(index)
            chosen = chosen[index]
        logits = torch.randn(rows, vocab_size, generator=generator).masked_fill(~constraint.allowed(), float("-inf"))
        tokens = torch.multinomial(logits.softmax(1), 1, generator=generator).squeeze(1)
        constraint.advance(tokens)
        chosen = torch.cat([chosen, tokens[:, None]], 1)
    return [row[: row.index(END) + 1] if END in row else row for row in chosen.tolist()]


def random_logit_tokens(name: str) -> list[list[int]]:
    encoder = PolyphonyEncoder()
    plan = encoder.generation_plan(**PLANS[name])
    return drive(plan.constraint, encoder.head.vocab_size, rows=6, steps=plan.max_tokens, seed=1)


def bach_tokens(sampler: str | None) -> list[list[int]]:
    options = {"sampler": "beam", "beam_size": 3, "length": 1} if sampler == "beam" else {"length": 2}
    pieces = composer.load("bach", device="cpu").generate(2, seed=1, **options)
    return [list(map(int, g.tokens)) for g in pieces.sequences]


@pytest.mark.parametrize("name", list(PLANS))
def test_the_constraints_choose_the_recorded_tokens_from_random_logits(name: str) -> None:
    assert random_logit_tokens(name) == json.loads(RECORDED.read_text())[name]


@pytest.mark.skipif(not BACH.exists(), reason="the bach style is not shipped")
@pytest.mark.parametrize("sampler", [None, "beam"])
def test_bach_generates_the_recorded_chorales_under_its_constraint(sampler: str | None) -> None:
    assert bach_tokens(sampler) == json.loads(RECORDED.read_text())[f"bach/{sampler}"]
