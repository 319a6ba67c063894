import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from composer.model import (
    MixtureDensityHead,
    ModelConfig,
    PeepholeLSTM,
    SequenceModel,
    detach_state,
    select_state,
)

VOCAB, CLASSES, PERIOD = 8, 4, 4
PATTERNS = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7], [1, 3, 5, 7], [6, 4, 2, 0]])
MDN = {"input": "features", "input_dim": 5, "head": {"type": "mdn", "components": 3, "pen_states": 3}}

VARIANTS = {
    "lstm": {},
    "gru": {"cell": "gru"},
    "peephole": {"cell": "peephole"},
    "layer_norm": {"layer_norm": True},
    "residual": {"residual": True, "layers": 3},
    "attention": {"attention": 8},
    "cond_class": {"cond_size": 3, "cond_classes": CLASSES},
    "cond_vector": {"cond_size": CLASSES},
    "mdn": MDN,
}


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{"vocab_size": VOCAB, "embedding_size": 8, "hidden_size": 16, **overrides})


def task(cfg: ModelConfig, length: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(inputs, next-step targets, cond) for every pattern x phase: repeating token patterns, or for
    feature models a stroke-5 circle with a pen lift every 8 points."""
    cls = torch.arange(CLASSES).repeat_interleave(PERIOD)
    phase = torch.arange(PERIOD).repeat(CLASSES)
    t = torch.arange(length + 1)
    if cfg.input == "tokens":
        seq = PATTERNS[cls[:, None], (phase[:, None] + t) % PERIOD]
    else:
        angle = (phase[:, None] + cls[:, None] * 0.5 + t) * (2 * math.pi / 8)
        pen = F.one_hot((t % 8 == 7).long().expand_as(angle), 3).float()
        seq = torch.cat([torch.stack([angle.cos(), angle.sin()], -1), pen], -1)
    cond = None
    if cfg.cond_classes:
        cond = cls
    elif cfg.cond_size:
        cond = F.one_hot(cls, CLASSES).float()
    return seq[:, :-1], seq[:, 1:], cond


def train(cfg: ModelConfig, steps: int, autocast: bool = False) -> list[float]:
    torch.manual_seed(0)
    model = SequenceModel(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    x, y, cond = task(cfg)
    losses = []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x, targets=y, cond=cond)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    return losses


Output = torch.Tensor | dict[str, torch.Tensor]


def later(output: Output, start: int) -> Output:
    if isinstance(output, dict):
        return {k: v[:, start:] for k, v in output.items()}
    return output[:, start:]


def stack_steps(outputs: list[Output]) -> Output:
    if isinstance(outputs[0], dict):
        return {k: torch.stack([o[k] for o in outputs], 1) for k in outputs[0]}
    return torch.stack(outputs, 1)


@pytest.mark.parametrize("overrides", [{}, MDN], ids=["tokens", "features"])
def test_forward_gives_shapes_loss_and_count(overrides):
    cfg = tiny(**overrides)
    model = SequenceModel(cfg)
    x, y, _ = task(cfg, length=5)
    out = model(x, targets=y)
    if cfg.input == "tokens":
        assert out.output.shape == (16, 5, VOCAB)
    else:
        assert out.output["mu"].shape == (16, 5, 3, 2) and out.output["pen"].shape == (16, 5, 3)
    assert out.count == 16 * 5 and out.loss.ndim == 0 and torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss, out.loss_sum / out.count)
    assert len(out.state.layers) == cfg.layers and out.state.layers[0][0].shape == (16, cfg.hidden_size)
    assert model(x).loss is None


def test_categorical_loss_and_accuracy_count_only_masked_in_positions():
    torch.manual_seed(0)
    model = SequenceModel(tiny())
    x = torch.randint(0, VOCAB, (2, 4))
    y = torch.randint(0, VOCAB, (2, 4))
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).bool()
    out = model(x, targets=y, mask=mask, metrics=True)
    expected = F.cross_entropy(out.output[mask], y[mask], reduction="sum")
    assert out.count == 5
    torch.testing.assert_close(out.loss_sum, expected)
    hits, count = out.metrics["accuracy"]
    assert count == 5 and hits == (out.output[mask].argmax(-1) == y[mask]).sum()


def test_mdn_loss_is_gaussian_mixture_nll_plus_pen_cross_entropy():
    torch.manual_seed(0)
    head = MixtureDensityHead(6, components=3)
    out = head(torch.randn(4, 6))
    targets = torch.cat([torch.randn(4, 2), F.one_hot(torch.tensor([0, 1, 0, 1]), 3).float()], -1)
    sigma, rho = out["log_sigma"].exp(), out["rho"]
    cov = torch.stack([
        torch.stack([sigma[..., 0] ** 2, rho * sigma[..., 0] * sigma[..., 1]], -1),
        torch.stack([rho * sigma[..., 0] * sigma[..., 1], sigma[..., 1] ** 2], -1),
    ], -2)
    gmm = MixtureSameFamily(Categorical(logits=out["pi"]), MultivariateNormal(out["mu"], cov))
    pen_nll = F.cross_entropy(out["pen"], targets[:, 2:].argmax(-1), reduction="sum")
    expected = -gmm.log_prob(targets[:, :2]).sum() + pen_nll
    loss_sum, count = head.loss(out, targets, None)
    assert count == 4
    torch.testing.assert_close(loss_sum, expected)


@pytest.mark.parametrize("overrides", [
    *VARIANTS.values(),
    {"cell": "peephole", "layer_norm": True, "residual": True, "attention": 3, "cond_size": 2, "cond_classes": 4,
     "layers": 3},
], ids=[*VARIANTS, "everything"])
def test_step_and_chunked_forward_match_full_forward(overrides):
    torch.manual_seed(0)
    cfg = tiny(dropout=0.3, **overrides)
    model = SequenceModel(cfg).eval()
    x, _, cond = task(cfg, length=10)
    full = model(x, cond=cond)
    primed = model(x[:, :4], cond=cond)
    state, outputs = primed.state, []
    for t in range(4, 10):
        output_t, state = model.step(x[:, t], state, cond=cond)
        outputs.append(output_t)
    rest = model(x[:, 4:], state=primed.state, cond=cond)
    tail = later(full.output, 4)
    torch.testing.assert_close(stack_steps(outputs), tail)
    torch.testing.assert_close(rest.output, tail)
    for a, b in [(state, full.state), (rest.state, full.state)]:
        torch.testing.assert_close(a.layers, b.layers)
        if cfg.attention:
            torch.testing.assert_close(a.window, b.window)
            assert torch.equal(a.window_mask, b.window_mask)


def test_peephole_cell_matches_the_gate_equations_written_out():
    torch.manual_seed(0)
    cell = PeepholeLSTM(3, 5)
    x, h, c = torch.randn(2, 6, 3), torch.randn(2, 5), torch.randn(2, 5)
    y, (h_last, c_last) = cell(x, (h[None], c[None]))

    w_i, w_f, w_g, w_o = cell.weight_ih.chunk(4)
    u_i, u_f, u_g, u_o = cell.weight_hh.chunk(4)
    b_i, b_f, b_g, b_o = cell.bias.chunk(4)
    p_i, p_f, p_o = cell.peephole
    expected = []
    for t in range(6):
        x_t = x[:, t]
        i = torch.sigmoid(x_t @ w_i.T + h @ u_i.T + b_i + p_i * c)
        f = torch.sigmoid(x_t @ w_f.T + h @ u_f.T + b_f + p_f * c)
        g = torch.tanh(x_t @ w_g.T + h @ u_g.T + b_g)
        c = f * c + i * g
        o = torch.sigmoid(x_t @ w_o.T + h @ u_o.T + b_o + p_o * c)
        h = o * torch.tanh(c)
        expected.append(h)
    torch.testing.assert_close(y, torch.stack(expected, 1))
    torch.testing.assert_close((h_last[0], c_last[0]), (h, c))


def test_peephole_cell_without_peepholes_is_an_lstm():
    torch.manual_seed(0)
    cell, lstm = PeepholeLSTM(3, 5), torch.nn.LSTM(3, 5, batch_first=True)
    with torch.no_grad():
        cell.peephole.zero_()
        lstm.weight_ih_l0.copy_(cell.weight_ih)
        lstm.weight_hh_l0.copy_(cell.weight_hh)
        lstm.bias_ih_l0.copy_(cell.bias)
        lstm.bias_hh_l0.zero_()
    x, hx = torch.randn(2, 6, 3), (torch.randn(1, 2, 5), torch.randn(1, 2, 5))
    torch.testing.assert_close(cell(x, hx), lstm(x, hx))


@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "lstm"])
def test_variant_learns_the_synthetic_task(name):
    losses = train(tiny(**VARIANTS[name]), steps=40)
    if name == "mdn":  # a density's NLL goes negative: ask for a fixed drop in nats instead
        assert losses[-1] < losses[0] - 2.0, losses
    else:
        assert losses[-1] < 0.5 * losses[0], losses


def test_bf16_autocast_on_cpu_trains_with_a_float32_loss():
    cfg = tiny()
    model = SequenceModel(cfg)
    x, y, _ = task(cfg, length=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, targets=y)
    assert out.output.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    losses = train(cfg, steps=25, autocast=True)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.7 * losses[0], losses


def test_config_round_trips_through_json():
    cfg = tiny(cell="gru", attention=4, cond_size=2, cond_classes=3, head={"type": "categorical", "vocab_size": 5})
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_config_from_dict_rejects_unknown_keys_by_name():
    with pytest.raises(ValueError, match="unknown ModelConfig keys: hiden_size, n_layers"):
        ModelConfig.from_dict({"hiden_size": 3, "n_layers": 2, "cell": "gru"})


@pytest.mark.parametrize("overrides, message", [
    ({"cell": "transformer"}, "cell must be one of lstm, gru, peephole, got 'transformer'"),
    ({"vocab_size": 0}, "needs vocab_size > 0"),
    ({"input": "features"}, "needs input_dim > 0"),
    ({"input": "audio"}, "input must be one of"),
    ({"cond_classes": 3}, "cond_classes needs cond_size > 0"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"head": {"type": "nope"}}, "unknown head type 'nope'"),
])
def test_invalid_config_is_rejected_with_one_clear_line(overrides, message):
    with pytest.raises(ValueError, match=message) as error:
        SequenceModel(tiny(**overrides))
    assert "\n" not in str(error.value)


def test_select_state_picks_rows_and_detach_cuts_the_graph():
    torch.manual_seed(0)
    model = SequenceModel(tiny(attention=3)).eval()
    x = torch.randint(0, VOCAB, (3, 5))
    state = model(x).state
    index = torch.tensor([2, 0])
    picked = select_state(state, index)
    torch.testing.assert_close(picked.layers, tuple(tuple(t[index] for t in layer) for layer in state.layers))
    torch.testing.assert_close(picked.window, state.window[index])
    token = torch.tensor([1, 2, 3])
    torch.testing.assert_close(model.step(token[index], picked)[0], model.step(token, state)[0][index])
    assert all(not t.requires_grad for layer in detach_state(state).layers for t in layer)


def test_parameter_groups_cover_every_parameter_once_from_the_bottom_up():
    model = SequenceModel(tiny(layers=3, layer_norm=True, attention=4, cond_size=2, cond_classes=3))
    groups = model.parameter_groups()
    assert [name for name, _ in groups] == ["adapter", "layer0", "layer1", "layer2", "head"]
    ids = [id(p) for _, params in groups for p in params]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    grouped = dict(groups)
    assert any(p is model.cond_embedding.weight for p in grouped["adapter"])
    assert any(p is model.layers[1].norm.weight for p in grouped["layer1"])
    assert any(p is model.attention.score.weight for p in grouped["head"])
    assert model.count_parameters() == len(torch.cat([p.flatten() for p in model.parameters()]))


def test_mdn_sample_gives_stroke5_rows_with_a_one_hot_pen_and_follows_the_seed():
    torch.manual_seed(0)
    model = SequenceModel(tiny(**MDN)).eval()
    output_t, _ = model.step(torch.randn(4, 5))
    rows = model.head.sample(output_t, torch.Generator().manual_seed(1), temperature=0.5)
    assert rows.shape == (4, 5)
    pen = rows[:, 2:]
    assert torch.equal(pen.sum(-1), torch.ones(4)) and set(pen.unique().tolist()) <= {0.0, 1.0}
    again = model.head.sample(output_t, torch.Generator().manual_seed(1), temperature=0.5)
    torch.testing.assert_close(rows, again)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_single_step_fast_path_matches_the_sequence_kernel(cell):
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(vocab_size=11, layers=2, hidden_size=16, embedding_size=8, cell=cell,
                                      residual=True)).eval()
    x = torch.randint(0, 11, (3, 7))
    with torch.no_grad():
        full = model(x).output
        state, outs = None, []
        for t in range(7):
            out, state = model.step(x[:, t], state)
            outs.append(out)
    assert torch.allclose(torch.stack(outs, 1), full, atol=1e-5)


def test_reset_rows_zeroes_only_the_chosen_rows():
    from composer.model import reset_rows

    model = SequenceModel(ModelConfig(vocab_size=7, layers=2, hidden_size=8, embedding_size=4, attention=3))
    _, state = model.step(torch.tensor([1, 2, 3]), None)
    cleared = reset_rows(state, torch.tensor([False, True, False]))
    for layer, before in zip(cleared.layers, state.layers):
        for t, b in zip(layer, before):
            assert torch.equal(t[1], torch.zeros_like(t[1])) and torch.equal(t[0], b[0]) and torch.equal(t[2], b[2])
    assert not cleared.window_mask[1].any() and torch.equal(cleared.window_mask[0], state.window_mask[0])


def test_mdn_temperature_narrows_the_draws_and_zero_takes_the_likeliest_mean():
    torch.manual_seed(0)
    head = MixtureDensityHead(6, components=3)
    with torch.no_grad():
        output = head(torch.randn(1, 6).expand(4000, 6))
    spread = {}
    for temperature in (1.0, 0.5, 0.1):
        rows = head.sample(output, torch.Generator().manual_seed(0), temperature=temperature)
        spread[temperature] = float(rows[:, :2].std(0).mean())
        # a colder draw also concentrates the pen state on the likeliest one
        top = output["pen"][0].argmax()
        share = float((rows[:, 2:].argmax(-1) == top).float().mean())
        spread[f"pen{temperature}"] = share
    assert spread[1.0] > spread[0.5] > spread[0.1]
    assert spread["pen1.0"] < spread["pen0.5"] <= spread["pen0.1"]
    greedy = head.sample({k: v[:1] for k, v in output.items()}, temperature=0)
    k = output["pi"][0].argmax()
    torch.testing.assert_close(greedy[0, :2], output["mu"][0, k])
    assert greedy[0, 2 + int(output["pen"][0].argmax())] == 1


def test_mdn_log_prob_is_the_loss_of_one_step_negated():
    torch.manual_seed(0)
    head = MixtureDensityHead(6, components=3)
    output = head(torch.randn(5, 6))
    rows = head.sample(output, torch.Generator().manual_seed(1))
    per_row = torch.stack([head.loss({k: v[i: i + 1] for k, v in output.items()}, rows[i: i + 1], None)[0]
                           for i in range(5)])
    torch.testing.assert_close(head.log_prob(output, rows), -per_row)


def test_a_plugin_family_builds_the_model_a_checkpoint_names_and_an_unknown_one_is_one_line(tmp_path):
    from composer import ComposerError, checkpoint, plugins
    from composer.model import build_model

    class Doubled(SequenceModel):
        """A family a plugin might add: the stack, with a second head output scale."""

    reg = plugins.get_registry()
    assert {"rnn", "vae", "gibbs"} <= set(reg.families)
    reg.families["doubled"] = lambda config, heads: Doubled(config, heads)
    config = ModelConfig.from_dict({**tiny().to_dict(), "family": "doubled"})
    model = build_model(config, reg)
    assert type(model) is Doubled
    path = tmp_path / "m.safetensors"
    chars = ["a", "b", "c", "d", "e"]  # with the char encoder's own three tokens, the model's vocabulary of 8
    meta = {"model": config.to_dict(), "encoder": {"name": "char", "state": {"options": {}, "chars": chars}}}
    checkpoint.save(path, model.state_dict(), meta)
    loaded, _, _ = checkpoint.load_model(path, reg)
    assert type(loaded) is Doubled
    del reg.families["doubled"]
    with pytest.raises(ComposerError, match="unknown model family 'doubled'; known: gibbs, rnn, vae"):
        checkpoint.load_model(path, reg)


@pytest.mark.parametrize("overrides", [{}, {"cell": "gru"}, {"cond_size": 3, "cond_classes": CLASSES},
                                       {"attention": 4}, {"dropout": 0.3}])
def test_a_plain_stack_in_one_multi_layer_call_gives_the_per_layer_numbers(overrides):
    """The fused path (one torch.lstm/torch.gru over every layer, cuDNN's on a GPU) computes what the
    per-layer path does: loss, gradients and final states."""
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(**{"vocab_size": VOCAB, "layers": 3, "hidden_size": 12,
                                         "embedding_size": 6, **overrides}))
    assert model.plain_stack
    x, y = torch.randint(0, VOCAB, (4, 9)), torch.randint(0, VOCAB, (4, 9))
    cond = torch.randint(0, CLASSES, (4,)) if overrides.get("cond_size") else None
    results = []
    for fuse in (False, True):
        model.fuse = fuse
        model.eval() if overrides.get("dropout") else model.train()  # dropout's draws differ between paths
        model.zero_grad()
        out = model(x, targets=y, cond=cond)
        out.loss.backward()
        results.append((out.loss.detach(), [p.grad.clone() for p in model.parameters()],
                        [s for layer in out.state.layers for s in layer]))
    (loss_a, grads_a, states_a), (loss_b, grads_b, states_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    for a, b in zip(grads_a + states_a, grads_b + states_b, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_the_fused_path_runs_off_the_cpu_by_default_and_never_for_per_layer_extras(monkeypatch):
    calls = []
    monkeypatch.setattr(SequenceModel, "_run_stack", lambda self, h, states: calls.append(h.device))
    model = SequenceModel(ModelConfig(vocab_size=VOCAB, layers=2, hidden_size=8, embedding_size=4))
    model(torch.randint(0, VOCAB, (2, 5)))  # the CPU: per layer (as fast there, and the shipped numbers)
    assert calls == []
    assert model._fused(torch.zeros(2, 5, 4, device="meta"))  # not the CPU: one call
    model.fuse = False
    assert not model._fused(torch.zeros(2, 5, 4, device="meta"))
    for extra in ({"layer_norm": True}, {"residual": True}, {"recurrent_dropout": 0.1}, {"cell": "peephole"}):
        config = ModelConfig(**{"vocab_size": VOCAB, "layers": 2, "hidden_size": 8, "embedding_size": 4, **extra})
        assert not SequenceModel(config).plain_stack, extra


def test_draw_index_on_the_cpu_is_torch_multinomial_and_the_gpu_race_has_the_same_distribution():
    from composer import heads
    from composer.heads import draw_index

    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.0, 0.5]])
    torch.testing.assert_close(
        draw_index(probs, torch.Generator().manual_seed(3)),
        torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(3))[:, 0])
    # the exponential race the GPU uses, run here on the CPU
    draws = 40_000
    picked = heads._exponential_race(probs.repeat(draws // 2, 1), torch.Generator().manual_seed(0))
    for row in (0, 1):
        frequencies = torch.bincount(picked[row::2], minlength=3).double() / (draws // 2)
        torch.testing.assert_close(frequencies, probs[row].double(), atol=0.01, rtol=0)


@pytest.mark.parametrize("overrides",
                         [{}, {"cell": "gru"}, {"attention": 4}, {"cond_size": 3, "cond_classes": CLASSES}])
def test_generation_steps_of_a_plain_stack_give_the_per_layer_numbers_bit_for_bit(overrides):
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(**{"vocab_size": VOCAB, "layers": 3, "hidden_size": 12, "embedding_size": 6,
                                         "dropout": 0.2, **overrides})).eval()
    x = torch.randint(0, VOCAB, (3, 6))
    cond = torch.randint(0, CLASSES, (3,)) if overrides.get("cond_size") else None
    outputs = []
    for plain in (True, False):
        model.plain_stack = plain
        state, outs = model.initial_state(3), []
        with torch.no_grad():
            for t in range(6):
                out, state = model.step(x[:, t], state, cond=cond)
                outs.append(out)
        outputs.append(torch.stack(outs))
    assert torch.equal(outputs[0], outputs[1])
