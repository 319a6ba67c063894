"""Contract tests generated for every registered encoder and sampler: nobody writes them by hand."""

import os
import random

import pytest
import torch
from conftest import TOY

from composer import plugins
from composer.data import piece_batches
from composer.generate import generate
from composer.model import ModelConfig, SequenceModel
from composer.train import _head_fields


def _names(kind):
    os.environ["COMPOSER_LOAD_PLUGINS"] = ""
    plugins.reset()
    try:
        return sorted(getattr(plugins.get_registry(), kind))
    finally:
        plugins.reset()
        del os.environ["COMPOSER_LOAD_PLUGINS"]


ENCODERS = _names("encoders") + ["toy"]
SAMPLERS = _names("samplers")


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.syspath_prepend(str(TOY))
    reg = plugins.get_registry()
    import composer_toy

    if "toy" not in reg.encoders:
        reg.encoders["toy"] = composer_toy.ToyEncoder
    return reg


def make_encoder(registry, name):
    encoder = registry.encoder(name)()
    items = encoder.example_items()
    assert items, f"encoder '{name}' must give example_items() for its contract test"
    if encoder.needs_fit:
        encoder.fit(items)
    return encoder, items


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_round_trips_its_examples(registry, name):
    encoder, items = make_encoder(registry, name)
    vocab = encoder.head.spec()["vocab_size"]
    for item in items:
        seq = encoder.encode(item)
        assert seq and all(0 <= t < vocab for t in seq)
        if encoder.bos is not None:
            assert seq[0] == encoder.bos
        if encoder.eos is not None:
            assert seq[-1] == encoder.eos
        assert encoder.encode(encoder.decode(seq)) == seq
        assert encoder.steps(seq) > 0


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_state_survives_a_checkpoint(registry, name):
    import json

    encoder, items = make_encoder(registry, name)
    state = json.loads(json.dumps(encoder.state_dict()))
    again = registry.encoder(name)(**state.get("options", {}))
    again.load_state_dict(state)
    assert again.encode(items[0]) == encoder.encode(items[0])


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_trains_and_samples(registry, name):
    torch.manual_seed(0)
    encoder, items = make_encoder(registry, name)
    seqs = [encoder.encode(item) for item in items]
    model = SequenceModel(ModelConfig.from_dict({"layers": 1, "hidden_size": 24, "embedding_size": 8,
                                                 **_head_fields(encoder)}))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    windows, _ = piece_batches(seqs, encoder, batch_size=2, seq_len=16, rng=random.Random(0), augment=True)
    losses = []
    for _ in range(3):
        for batch in windows:
            out = model(batch[:, :-1].clamp(min=0), targets=batch[:, 1:])
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            losses.append(float(out.loss.detach()))
    assert losses[-1] < losses[0]
    plan = encoder.generation_plan(length=None)
    sampler = registry.sampler("temperature")
    outs = generate(model, encoder, sampler, n=2, max_tokens=min(plan.max_tokens, 400),
                    constraint=plan.constraint, seed=1)
    assert len(outs) == 2
    for seq in outs:
        encoder.decode(seq)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_respects_forbidden_tokens_and_seed(registry, name):
    sampler = registry.sampler(name)
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    logits[:, 3] = float("-inf")
    a = sampler.fn(logits, torch.Generator().manual_seed(5), temperature=1.0, top_k=3, top_p=0.8)
    b = sampler.fn(logits, torch.Generator().manual_seed(5), temperature=1.0, top_k=3, top_p=0.8)
    assert a.shape == (64,) and a.dtype == torch.long
    assert torch.equal(a, b)
    assert not (a == 3).any()
    forced = torch.full((4, 10), float("-inf"))
    forced[:, 7] = 0.0
    assert (sampler.fn(forced, torch.Generator().manual_seed(1)) == 7).all()
