"""The contract checks every built-in encoder and sampler passes, for plugin authors to run on their own.

Plain functions that raise ``AssertionError`` with a message naming the encoder or sampler and what failed;
call them from any test runner::

    from composer import testing
    import my_plugin

    def test_my_encoder():
        testing.check_encoder("mine", registry=testing.registry(my_plugin))

    def test_my_sampler():
        testing.check_sampler("mine", registry=testing.registry(my_plugin))

``registry(plugin)`` is the built-ins plus ``plugin`` (a module or object with ``composer.hookimpl``
functions), without the installed third-party plugins. The checks are the ones ``tests/test_contract.py``
runs on the built-ins.
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import torch

from composer.api import ComposerError, Constraint, Encoder, Sampler

__all__ = [
    "ForbidThree",
    "Strokes",
    "Tiny",
    "check_encoder",
    "check_properties",
    "check_round_trip",
    "check_sampler",
    "check_seeds",
    "check_state",
    "check_trains_and_samples",
    "registry",
    "tiny_mdn_model",
    "tiny_model",
]


# ------------------------------------------------------------------------------------ helpers


def registry(plugin: Any = None) -> Any:
    """A fresh, isolated :class:`composer.plugins.Registry`: the built-ins, plus ``plugin`` (a module or an
    object with hook implementations) when given. Installed third-party plugins and plugin folders are not
    loaded. A plugin that fails to register raises ``AssertionError`` with its error."""
    from composer import plugins

    extra = [plugin] if plugin is not None else []
    reg = plugins.load(extra=extra, installed=False)
    for info in reg.plugins.values():
        if info.origin == "given" and info.error:
            raise AssertionError(f"plugin '{info.name}' failed to register: {info.error}")
    return reg


def _check(ok: Any, subject: str, what: str) -> None:
    if not ok:
        raise AssertionError(f"{subject}: {what}")


def _encoder_subject(encoder: Any) -> str:
    return f"encoder '{getattr(encoder, 'name', '') or type(encoder).__name__}'"


def _same(a: Any, b: Any) -> bool:
    if np.shape(a) != np.shape(b):
        return False
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), atol=1e-5))


def _short(seq: Any, limit: int = 12) -> str:
    values = np.asarray(seq).tolist()
    return str(values if len(values) <= limit else values[:limit] + ["..."]) + f" (length {len(values)})"


def _resolve_encoder(encoder: Any, reg: Any) -> tuple[Encoder, list[Any]]:
    cls = reg.encoder(encoder) if isinstance(encoder, str) else encoder
    if not (isinstance(cls, type) and issubclass(cls, Encoder)):
        raise TypeError(f"check_encoder expects an encoder name or an Encoder subclass, got {encoder!r}")
    instance = cls()
    items = instance.example_items()
    _check(items, _encoder_subject(instance), "example_items() gave no items: the checks need some")
    if instance.needs_fit:
        instance.fit(items)
    return instance, list(items)


def check_sequence(encoder: Encoder, seq: Any, context: str = "encode") -> None:
    """A token sequence holds ids of the vocabulary between the start and end tokens; a feature sequence
    is a finite float array [T, input_dim] starting with the start row."""
    subject = _encoder_subject(encoder)
    if encoder.input_dim:
        arr = np.asarray(seq)
        _check(arr.ndim == 2 and arr.shape[1] == encoder.input_dim and len(arr) > 2, subject,
               f"{context} gave shape {arr.shape}; expected [T > 2, input_dim={encoder.input_dim}]")
        _check(arr.dtype.kind == "f" and np.isfinite(arr).all(), subject,
               f"{context} gave {arr.dtype} values that are not all finite floats")
        if encoder.bos is not None:
            _check(np.allclose(arr[0], encoder.bos), subject,
                   f"{context}: first row {arr[0].tolist()} is not the start row {list(encoder.bos)}")
    else:
        vocab = encoder.head.spec()["vocab_size"]
        _check(len(seq) and all(0 <= t < vocab for t in seq), subject,
               f"{context} gave ids outside the vocabulary [0, {vocab}): {_short(seq)}")
        if encoder.bos is not None:
            _check(seq[0] == encoder.bos, subject, f"{context}: {_short(seq)} does not start with bos {encoder.bos}")
        if encoder.eos is not None:
            _check(seq[-1] == encoder.eos, subject, f"{context}: {_short(seq)} does not end with eos {encoder.eos}")


# ------------------------------------------------------------------------------------ encoders


def check_round_trip(encoder: Encoder, items: list[Any]) -> None:
    """Every item encodes to a valid sequence, and decoding that sequence loses nothing the encoding holds:
    ``encode(decode(encode(item))) == encode(item)``; ``steps`` counts something."""
    subject = _encoder_subject(encoder)
    for i, item in enumerate(items):
        seq = encoder.encode(item)
        check_sequence(encoder, seq, f"encode(item {i})")
        again = encoder.encode(encoder.decode(seq))
        _check(_same(again, seq), subject,
               f"round trip of item {i} changed it: encode(item) = {_short(seq)}, "
               f"encode(decode(encode(item))) = {_short(again)}")
        _check(encoder.steps(seq) > 0, subject, f"steps() of item {i} is {encoder.steps(seq)}; expected > 0")


def check_state(encoder: Encoder, items: list[Any]) -> None:
    """``state_dict()`` is JSON, and a new instance made from its options and loaded with it encodes the
    same as the original (what a checkpoint keeps)."""
    subject = _encoder_subject(encoder)
    try:
        state = json.loads(json.dumps(encoder.state_dict()))
    except TypeError as exc:
        raise AssertionError(f"{subject}: state_dict() is not JSON-serialisable: {exc}") from None
    again = type(encoder)(**state.get("options", {}))
    again.load_state_dict(state)
    for i, item in enumerate(items):
        a, b = encoder.encode(item), again.encode(item)
        _check(_same(a, b), subject,
               f"after state_dict()/load_state_dict() item {i} encodes as {_short(b)} instead of {_short(a)}")


def check_properties(encoder: Encoder, items: list[Any]) -> None:
    """What ``composer inspect`` asks of an encoder, on each item's encoding: ``properties`` gives one float
    (or NaN) per token under each name, ``token_labels`` one string per token, ``time_marks`` positions
    inside the sequence (all three have defaults: an encoder that names no properties passes)."""
    subject = _encoder_subject(encoder)
    for i, item in enumerate(items):
        seq = encoder.encode(item)
        tokens = [int(t) for t in seq] if not encoder.input_dim else list(np.asarray(seq))
        for name, values in encoder.properties(tokens).items():
            values = np.asarray(values, dtype=np.float64)
            _check(values.shape == (len(tokens),), subject,
                   f"property {name!r} of item {i} has shape {values.shape}; expected one value per token "
                   f"({len(tokens)})")
            _check(not np.isinf(values).any(), subject, f"property {name!r} of item {i} holds an infinite value")
        labels = encoder.token_labels(tokens)
        _check(len(labels) == len(tokens) and all(isinstance(label, str) for label in labels), subject,
               f"token_labels of item {i} gave {len(labels)} labels for {len(tokens)} tokens (strings, one per token)")
        marks = encoder.time_marks(tokens)
        _check(all(0 <= int(t) < len(tokens) for t in marks), subject,
               f"time_marks of item {i} has positions outside 0..{len(tokens) - 1}")


def _tiny_model_for(encoder: Encoder, reg: Any) -> Any:
    from composer.model import ModelConfig, build_model
    from composer.training import _head_fields

    config = {"layers": 1, "hidden_size": 24, "embedding_size": 8, **_head_fields(encoder)}
    return build_model(ModelConfig.from_dict(config), reg)


def check_trains_and_samples(encoder: Encoder, items: list[Any], registry: Any = None, steps: int = 4) -> Any:
    """A tiny model on the encoded items learns (the loss on them falls after ``steps`` epochs of augmented
    batches), and samples from it decode to items of the corpus's type that encode again to valid
    sequences. Returns the trained model."""
    from composer.data import Sequences, piece_batches
    from composer.generate import generate

    reg = registry if registry is not None else globals()["registry"]()
    subject = _encoder_subject(encoder)
    torch.manual_seed(0)
    seqs = Sequences.from_arrays([encoder.encode(item) for item in items])
    model = _tiny_model_for(encoder, reg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    plain = piece_batches(seqs, encoder, batch_size=2, seq_len=16, rng=random.Random(0), augment=False)

    def loss_on(batches: Any, train: bool) -> float:
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
    for epoch in range(steps):  # augmented data, as training sees it
        loss_on(piece_batches(seqs, encoder, batch_size=2, seq_len=16, rng=random.Random(epoch), augment=True), True)
    with torch.no_grad():
        after = loss_on(plain, train=False)
    _check(after < before, subject, f"a tiny model did not learn: loss {before:.4f} before, {after:.4f} after")
    plan = encoder.generation_plan(length=None)
    budget = min(plan.max_tokens, 400)
    outs = generate(model, encoder, reg.sampler("temperature"), n=2, max_tokens=budget,
                    primer=plan.primer, constraint=plan.constraint, seed=1)
    _check(len(outs) == 2, subject, f"asked for 2 samples, got {len(outs)}")
    kind = type(items[0])
    for out in outs:
        _check(len(out.tokens) <= 1 + len(plan.primer) + budget, subject,
               f"a sample has {len(out.tokens)} steps, over the budget of {budget}")
        _check(np.isfinite(out.log_likelihood), subject, f"a sample's log-likelihood is {out.log_likelihood}")
        if not encoder.input_dim:  # a density's likelihood may exceed 1; a token's may not
            _check(out.log_likelihood < 0, subject, f"a token sample's log-likelihood {out.log_likelihood} is not < 0")
        item = encoder.decode(out.tokens)
        _check(isinstance(item, kind), subject,
               f"a sample decodes to {type(item).__name__}, not {kind.__name__} as example_items() gives")
        again = encoder.encode_checked(item)[0]
        if len(again):
            check_sequence(encoder, again, "encode(decoded sample)")
    return model


def check_seeds(encoder: Encoder, items: list[Any], registry: Any = None, model: Any = None) -> None:
    """The same seed gives the same samples; where the encoder's generation plan gives a constraint, no
    sampled token is one the constraint forbade at its step. ``model``: a model for this encoder (default:
    an untrained tiny one)."""
    from composer.generate import generate

    reg = registry if registry is not None else globals()["registry"]()
    subject = _encoder_subject(encoder)
    if model is None:
        torch.manual_seed(0)
        model = _tiny_model_for(encoder, reg)
    sampler = reg.sampler("temperature")

    def run(seed: int) -> tuple[Any, list[Any]]:
        plan = encoder.generation_plan(length=None)
        return plan, generate(model, encoder, sampler, n=2, max_tokens=min(plan.max_tokens, 200),
                              primer=plan.primer, constraint=plan.constraint, seed=seed)

    plan, a = run(3)
    _, b = run(3)
    for x, y in zip(a, b):
        _check(np.array_equal(np.asarray(x.tokens), np.asarray(y.tokens)), subject,
               f"seed 3 twice gave different samples: {_short(x.tokens)} and {_short(y.tokens)}")
    if plan.constraint is None or encoder.input_dim:
        return
    for out in a:  # replay the plan's constraint over each sample
        constraint = encoder.generation_plan(length=None).constraint
        constraint.start(1, torch.device("cpu"))
        for t in plan.primer:
            constraint.advance(torch.tensor([t]))
        prefix = 1 + len(plan.primer) if encoder.bos is not None else len(plan.primer)
        for step, t in enumerate(list(out.tokens)[prefix:]):
            allowed = constraint.allowed()
            if allowed is not None:
                _check(bool(allowed[0, int(t)]), subject,
                       f"sampled token {int(t)} at step {step} which the generation plan's constraint "
                       f"{type(constraint).__name__} forbids")
            constraint.advance(torch.tensor([int(t)]))


def check_encoder(encoder: Any, *, registry: Any = None) -> None:
    """All the encoder checks on ``encoder`` (a registered name, or an ``Encoder`` subclass), with its
    ``example_items()``: round trip, state, inspection properties, a tiny train-and-sample run, seeds and
    constraint. ``registry``:
    where names, model heads and the sampler are looked up (default: :func:`registry`, the built-ins; pass
    ``registry(my_plugin)`` for an encoder your plugin registers, or whose head it registers)."""
    reg = registry if registry is not None else globals()["registry"]()
    instance, items = _resolve_encoder(encoder, reg)
    check_round_trip(instance, items)
    check_state(instance, items)
    check_properties(instance, items)
    model = check_trains_and_samples(instance, items, reg)
    check_seeds(instance, items, reg, model=model)


# ------------------------------------------------------------------------------------ samplers


class Tiny:
    """A token encoder stand-in: start 0, end 1, tokens 2..9."""

    bos, eos = 0, 1


class ForbidThree(Constraint):
    """Token 3 is never allowed; after five tokens only the end token is. Its per-row count follows beams."""

    row_state = ("t",)

    def start(self, batch_size: int, device: Any) -> None:
        self.t = torch.zeros(batch_size, dtype=torch.long)

    def allowed(self) -> Any:
        mask = torch.ones(len(self.t), 10, dtype=torch.bool)
        mask[:, 3] = False
        mask[self.t >= 5] = False
        mask[self.t >= 5, 1] = True
        return mask

    def advance(self, tokens: Any) -> None:
        self.t += 1


def tiny_model() -> Any:
    """A seeded 2-layer token model over :class:`Tiny`'s 10 tokens."""
    from composer.model import ModelConfig, SequenceModel

    torch.manual_seed(0)
    return SequenceModel(ModelConfig(vocab_size=10, layers=2, hidden_size=16, embedding_size=8)).eval()


class Strokes:
    """A feature encoder stand-in: stroke-5 rows, starting with Sketch-RNN's start row."""

    bos, eos = (0.0, 0.0, 1.0, 0.0, 0.0), None


def tiny_mdn_model() -> Any:
    """A seeded stroke-5 model with a 3-component mixture-density head."""
    from composer.model import ModelConfig, SequenceModel

    torch.manual_seed(0)
    return SequenceModel(ModelConfig(input="features", input_dim=5, layers=1, hidden_size=16, embedding_size=8,
                                     head={"type": "mdn", "components": 3})).eval()


def model_log_likelihood(model: Any, tokens: list[int], new: int) -> float:
    """The model's log-likelihood of the last ``new`` tokens of ``tokens``."""
    x = torch.tensor([tokens])
    with torch.no_grad():
        logp = torch.log_softmax(model(x[:, :-1]).output.double(), -1)[0]
    picked = logp[torch.arange(len(tokens) - 1), x[0, 1:]]
    return float(picked[-new:].sum())


def _resolve_sampler(sampler: Any, reg: Any) -> Sampler:
    if isinstance(sampler, str):
        return reg.sampler(sampler)
    if not isinstance(sampler, Sampler):
        raise TypeError(f"check_sampler expects a sampler name or a Sampler instance, got {sampler!r}")
    return sampler


def check_sampler_scores(sampler: Sampler) -> None:
    """n seeded sequences after the primer, cut after the end token, whose log-likelihood is the model's."""
    from composer.generate import generate

    subject, model = f"sampler '{sampler.name}'", tiny_model()
    a = generate(model, Tiny, sampler, n=3, max_tokens=12, primer=[4, 5], seed=5)
    b = generate(model, Tiny, sampler, n=3, max_tokens=12, primer=[4, 5], seed=5)
    _check(len(a) == 3, subject, f"asked for 3 sequences, got {len(a)}")
    _check([g.tokens for g in a] == [g.tokens for g in b], subject, "seed 5 twice gave different sequences")
    for g in a:
        _check(g.tokens[:3] == [0, 4, 5], subject,
               f"{g.tokens} does not start with the start token and primer [0, 4, 5]")
        _check(1 <= g.new_tokens <= 12 and len(g.tokens) == 3 + g.new_tokens, subject,
               f"new_tokens {g.new_tokens} does not match {g.tokens} or is outside 1..12")
        _check(1 not in g.tokens[:-1], subject, f"{g.tokens} goes on after the end token 1")
        expected = model_log_likelihood(model, g.tokens, g.new_tokens)
        _check(abs(g.log_likelihood - expected) <= 1e-4, subject,
               f"reported log-likelihood {g.log_likelihood:.6f} of {g.tokens} is not the model's {expected:.6f}")


def check_sampler_constraint(sampler: Sampler) -> None:
    """A constraint is kept: a forbidden token never appears, a forced end token ends the sequence."""
    from composer.generate import generate

    subject = f"sampler '{sampler.name}'"
    for g in generate(tiny_model(), Tiny, sampler, n=4, max_tokens=20, constraint=ForbidThree(), seed=2):
        _check(3 not in g.tokens, subject, f"{g.tokens} holds token 3, which the constraint forbids")
        _check(g.tokens[-1] == 1 and g.new_tokens <= 6, subject,
               f"{g.tokens} does not end with the end token the constraint forces after five tokens")


def check_sampler_options(sampler: Sampler) -> None:
    """Options are validated with one-line errors: an unknown one names the known ones, a bad value names
    the option."""
    name = sampler.name
    subject = f"sampler '{name}'"
    known = ", ".join(sampler.option_names) or "none"
    expected = f"unknown option 'nosuch' for sampler '{name}' (known: {known})"
    try:
        sampler.options({"nosuch": "1"})
    except ComposerError as error:
        _check(str(error) == expected, subject, f"an unknown option gave {str(error)!r}, expected {expected!r}")
    else:
        raise AssertionError(f"{subject}: options({{'nosuch': '1'}}) did not raise ComposerError")
    for option in sampler.option_names:
        start = f"option '{option}' for sampler '{name}' expects"
        try:
            sampler.options({option: "not-a-value"})
        except ComposerError as error:
            _check(start in str(error) and "\n" not in str(error), subject,
                   f"a bad value for '{option}' gave {str(error)!r}; expected one line with {start!r}")
        else:
            raise AssertionError(f"{subject}: options({{'{option}': 'not-a-value'}}) did not raise ComposerError")


def check_sampler_mdn(sampler: Sampler) -> None:
    """On a mixture-density model the sampler draws seeded rows through the head, cut after the end row and
    scored by the model, or refuses with a one-line ComposerError about tokens or heads."""
    from composer.generate import generate

    subject, model = f"sampler '{sampler.name}'", tiny_mdn_model()

    def draw() -> Any:
        options = sampler.options({"top_k": 0}) if "top_k" in sampler.option_names else None
        return generate(model, Strokes, sampler, n=3, max_tokens=15, seed=4, options=options)

    try:
        a = draw()
    except ComposerError as error:
        text = str(error)
        _check("\n" not in text and ("token" in text or "head" in text), subject,
               f"refused a mixture-density model with {text!r}; expected one line about tokens or the head")
        return
    b = draw()
    _check(len(a) == 3, subject, f"asked for 3 sequences on a mixture-density model, got {len(a)}")
    for g, h in zip(a, b):
        _check(np.array_equal(g.tokens, h.tokens), subject,
               "seed 4 twice gave different rows on a mixture-density model")
        _check(g.tokens.shape == (1 + g.new_tokens, 5) and np.allclose(g.tokens[0], Strokes.bos), subject,
               f"rows of shape {g.tokens.shape} do not start with the start row and hold new_tokens={g.new_tokens}")
        ends = g.tokens[1:, 4] == 1
        _check(not ends[:-1].any(), subject, "rows go on after the end row")
        with torch.no_grad():
            out = model(torch.from_numpy(g.tokens[None, :-1]), targets=torch.from_numpy(g.tokens[None, 1:]))
        expected = -float(out.loss_sum)
        _check(abs(g.log_likelihood - expected) <= 1e-3, subject,
               f"reported log-likelihood {g.log_likelihood:.6f} is not the model's {expected:.6f}")


def check_sampler(sampler: Any, *, registry: Any = None) -> None:
    """All the sampler checks on ``sampler`` (a registered name, or a ``Sampler`` instance): seeded, scored
    sequences, a constraint kept, options validated, and a mixture-density model drawn from or refused."""
    reg = registry if registry is not None or not isinstance(sampler, str) else globals()["registry"]()
    instance = _resolve_sampler(sampler, reg)
    check_sampler_scores(instance)
    check_sampler_constraint(instance)
    check_sampler_options(instance)
    check_sampler_mdn(instance)
