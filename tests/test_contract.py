"""Contract tests generated for every registered encoder and sampler: nobody writes them by hand."""

import os
import random

import numpy as np
import pytest
import torch
from conftest import TOY

from composer import ComposerError, Constraint, plugins
from composer.data import Sequences, piece_batches
from composer.generate import generate
from composer.model import ModelConfig, SequenceModel, build_model
from composer.training import _head_fields


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


def check_sequence(encoder, seq):
    """A token sequence holds ids of the vocabulary; a feature sequence is a finite float array [T, input_dim]."""
    if encoder.input_dim:
        seq = np.asarray(seq)
        assert seq.ndim == 2 and seq.shape[1] == encoder.input_dim and len(seq) > 2
        assert seq.dtype.kind == "f" and np.isfinite(seq).all()
        if encoder.bos is not None:
            assert np.allclose(seq[0], encoder.bos)
    else:
        vocab = encoder.head.spec()["vocab_size"]
        assert len(seq) and all(0 <= t < vocab for t in seq)
        if encoder.bos is not None:
            assert seq[0] == encoder.bos
        if encoder.eos is not None:
            assert seq[-1] == encoder.eos


def same(a, b):
    return np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), atol=1e-5) \
        if np.shape(a) == np.shape(b) else False


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_round_trips_its_examples(registry, name):
    encoder, items = make_encoder(registry, name)
    for item in items:
        seq = encoder.encode(item)
        check_sequence(encoder, seq)
        assert same(encoder.encode(encoder.decode(seq)), seq)
        assert encoder.steps(seq) > 0


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_state_survives_a_checkpoint(registry, name):
    import json

    encoder, items = make_encoder(registry, name)
    state = json.loads(json.dumps(encoder.state_dict()))
    again = registry.encoder(name)(**state.get("options", {}))
    again.load_state_dict(state)
    assert same(again.encode(items[0]), encoder.encode(items[0]))


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_trains_and_samples(registry, name):
    torch.manual_seed(0)
    encoder, items = make_encoder(registry, name)
    seqs = Sequences.from_arrays([encoder.encode(item) for item in items])
    model = build_model(ModelConfig.from_dict({"layers": 1, "hidden_size": 24, "embedding_size": 8,
                                               **_head_fields(encoder)}), registry)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    plain = piece_batches(seqs, encoder, batch_size=2, seq_len=16, rng=random.Random(0), augment=False)

    def loss_on(batches, train):
        total = 0.0
        for inputs, mask in zip(batches.inputs, batches.mask):
            inputs = inputs if inputs.is_floating_point() else inputs.long()
            out = model(inputs[:, :-1], targets=inputs[:, 1:], mask=mask[:, 1:])
            if train:
                opt.zero_grad()
                out.loss.backward()
                opt.step()
            total += float(out.loss.detach())
        return total

    with torch.no_grad():
        before = loss_on(plain, train=False)
    for epoch in range(4):  # augmented data, as training sees it
        loss_on(piece_batches(seqs, encoder, batch_size=2, seq_len=16, rng=random.Random(epoch), augment=True), True)
    with torch.no_grad():
        assert loss_on(plain, train=False) < before
    plan = encoder.generation_plan(length=None)
    sampler = registry.sampler("temperature")
    outs = generate(model, encoder, sampler, n=2, max_tokens=min(plan.max_tokens, 400),
                    constraint=plan.constraint, seed=1)
    assert len(outs) == 2
    kind = type(items[0])
    for out in outs:
        assert len(out.tokens) <= 1 + min(plan.max_tokens, 400) and np.isfinite(out.log_likelihood)
        if not encoder.input_dim:
            assert out.log_likelihood < 0  # a density's likelihood may exceed 1; a token's may not
        item = encoder.decode(out.tokens)
        assert isinstance(item, kind), (type(item), kind)  # decodes to what the corpus holds
        again = encoder.encode_checked(item)[0]
        if len(again):
            check_sequence(encoder, again)


class Tiny:
    """A token encoder stand-in: start 0, end 1, tokens 2..9."""

    bos, eos = 0, 1


class ForbidThree(Constraint):
    """Token 3 is never allowed; after five tokens only the end token is. Its per-row count follows beams."""

    row_state = ("t",)

    def start(self, batch_size, device):
        self.t = torch.zeros(batch_size, dtype=torch.long)

    def allowed(self):
        mask = torch.ones(len(self.t), 10, dtype=torch.bool)
        mask[:, 3] = False
        mask[self.t >= 5] = False
        mask[self.t >= 5, 1] = True
        return mask

    def advance(self, tokens):
        self.t += 1


def tiny_model():
    torch.manual_seed(0)
    return SequenceModel(ModelConfig(vocab_size=10, layers=2, hidden_size=16, embedding_size=8)).eval()


def model_log_likelihood(model, tokens, new):
    x = torch.tensor([tokens])
    with torch.no_grad():
        logp = torch.log_softmax(model(x[:, :-1]).output.double(), -1)[0]
    picked = logp[torch.arange(len(tokens) - 1), x[0, 1:]]
    return float(picked[-new:].sum())


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_returns_n_seeded_sequences_scored_by_the_model(registry, name):
    sampler, model = registry.sampler(name), tiny_model()
    a = generate(model, Tiny, sampler, n=3, max_tokens=12, primer=[4, 5], seed=5)
    b = generate(model, Tiny, sampler, n=3, max_tokens=12, primer=[4, 5], seed=5)
    assert [g.tokens for g in a] == [g.tokens for g in b]
    assert len(a) == 3
    for g in a:
        assert g.tokens[:3] == [0, 4, 5] and 1 <= g.new_tokens <= 12 and len(g.tokens) == 3 + g.new_tokens
        assert 1 not in g.tokens[:-1]  # cut after the end token
        assert g.log_likelihood == pytest.approx(model_log_likelihood(model, g.tokens, g.new_tokens), abs=1e-4)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_keeps_to_the_constraint(registry, name):
    sampler, model = registry.sampler(name), tiny_model()
    for g in generate(model, Tiny, sampler, n=4, max_tokens=20, constraint=ForbidThree(), seed=2):
        assert 3 not in g.tokens and g.tokens[-1] == 1 and g.new_tokens <= 6


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_options_are_validated_naming_the_valid_ones(registry, name):
    sampler = registry.sampler(name)
    known = ", ".join(sampler.option_names) or "none"
    with pytest.raises(ComposerError) as error:
        sampler.options({"nosuch": "1"})
    assert str(error.value) == f"unknown option 'nosuch' for sampler '{name}' (known: {known})"
    for option in sampler.option_names:
        with pytest.raises(ComposerError, match=f"option '{option}' for sampler '{name}' expects"):
            sampler.options({option: "not-a-value"})


class Strokes:
    """A feature encoder stand-in: stroke-5 rows, starting with Sketch-RNN's start row."""

    bos, eos = (0.0, 0.0, 1.0, 0.0, 0.0), None


def tiny_mdn_model():
    torch.manual_seed(0)
    return SequenceModel(ModelConfig(input="features", input_dim=5, layers=1, hidden_size=16, embedding_size=8,
                                     head={"type": "mdn", "components": 3})).eval()


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_draws_from_a_mixture_density_head_or_refuses_in_one_line(registry, name):
    """Every strategy works whatever the head: it draws through ``head.sample`` and scores what it drew with
    the model, or (a strategy over token rankings) says in one line that it cannot."""
    sampler, model = registry.sampler(name), tiny_mdn_model()
    try:
        a = generate(model, Strokes, sampler, n=3, max_tokens=15, seed=4, options=sampler.options({"top_k": 0})
                     if "top_k" in sampler.option_names else None)
    except ComposerError as error:
        assert "\n" not in str(error) and ("token" in str(error) or "head" in str(error))
        return
    b = generate(model, Strokes, sampler, n=3, max_tokens=15, seed=4, options=sampler.options({"top_k": 0})
                 if "top_k" in sampler.option_names else None)
    assert len(a) == 3
    for g, h in zip(a, b):
        assert np.array_equal(g.tokens, h.tokens)  # seeded
        assert g.tokens.shape == (1 + g.new_tokens, 5) and np.allclose(g.tokens[0], Strokes.bos)
        ends = g.tokens[1:, 4] == 1
        assert not ends[:-1].any()  # cut after the end row
        with torch.no_grad():
            out = model(torch.from_numpy(g.tokens[None, :-1]), targets=torch.from_numpy(g.tokens[None, 1:]))
        assert g.log_likelihood == pytest.approx(-float(out.loss_sum), abs=1e-3)
