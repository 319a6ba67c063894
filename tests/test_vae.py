import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from composer.cells import DropoutLSTM
from composer.model import ModelConfig, SequenceModel, build_model
from composer.vae import SequenceVAE, interpolate, sample_latent, slerp

VOCAB, LATENT = 9, 4
MDN = {"input": "features", "input_dim": 5, "head": {"type": "mdn", "components": 3}}


def vae_config(**overrides) -> ModelConfig:
    return ModelConfig(**{"family": "vae", "vocab_size": VOCAB, "embedding_size": 6, "hidden_size": 12,
                          "layers": 2, "latent_size": LATENT, "encoder_size": 8, "kl_anneal": 0, **overrides})


def vae(**overrides) -> SequenceVAE:
    torch.manual_seed(0)
    return SequenceVAE(vae_config(**overrides), None)


def tokens(batch: int = 3, length: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    seq = torch.randint(1, VOCAB, (batch, length + 1), generator=torch.Generator().manual_seed(1))
    return seq[:, :-1], seq[:, 1:]


def strokes(batch: int = 3, length: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """stroke-5 rows: a start row [0, 0, 1, 0, 0], random offsets with random pens, the last rows at the end
    state [0, 0, 0, 0, 1] (row b ends after length - b - 1 drawn rows)."""
    g = torch.Generator().manual_seed(2)
    offsets = torch.randn(batch, length, 2, generator=g)
    pen = F.one_hot(torch.randint(0, 2, (batch, length), generator=g), 3).float()
    seq = torch.cat([offsets, pen], -1)
    for b in range(batch):
        seq[b, length - b - 1:] = torch.tensor([0.0, 0, 0, 0, 1])
    start = torch.tensor([0.0, 0, 1, 0, 0]).expand(batch, 1, 5)
    full = torch.cat([start, seq], 1)
    return full[:, :-1], full[:, 1:]


# ------------------------------------------------------------------------------------------- the KL


def test_kl_metric_is_the_gaussian_kl_averaged_over_latent_dims():
    model = vae().eval()
    x, y = tokens()
    out = model(x, targets=y)
    mu, logvar = model.encode(y, model.sequence_lengths(y))
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).mean(-1)
    kl_sum, rows = out.metrics["kl"]
    assert rows == 3
    torch.testing.assert_close(kl_sum / rows, expected.mean())
    # the loss is the reconstruction's mean plus the (un-annealed) weighted KL; loss_sum stays the NLL's
    w = model.config.kl_weight
    torch.testing.assert_close(out.loss, out.loss_sum / out.count + w * expected.mean().clamp(min=0.2))
    assert set(model(x, targets=y, metrics=True).metrics) == {"kl", "accuracy"}


def test_free_bits_hold_the_kl_term_at_the_tolerance_without_a_gradient_to_the_code():
    model = vae(kl_tolerance=100.0, kl_weight=2.0).eval()
    x, y = tokens()
    out = model(x, targets=y)
    kl_part = out.loss - out.loss_sum / out.count
    torch.testing.assert_close(kl_part, torch.tensor(200.0))
    kl_part.backward()  # the KL part alone: it pushes nothing while below the tolerance
    assert all(p.grad is None or not p.grad.any() for p in model.to_latent.parameters())
    model.zero_grad()
    model.config.kl_tolerance = 0.0
    out = model(x, targets=y)
    (out.loss - out.loss_sum / out.count).backward()
    assert model.to_latent.weight.grad.any()


def test_kl_weight_anneals_from_one_to_ninety_nine_percent_monotonically():
    model = vae(kl_weight=0.5, kl_anneal=100)
    weights = []
    for step in range(0, 201, 10):
        model.set_progress(step)
        weights.append(model.kl_weight_now())
    assert weights[0] == pytest.approx(0.005) and weights[10] == pytest.approx(0.495, rel=1e-3)
    assert all(a < b for a, b in zip(weights, weights[1:])) and weights[-1] < 0.5
    assert vae(kl_weight=0.5).kl_weight_now() == 0.5


def test_a_given_latent_adds_no_kl_and_no_code_at_all_is_one_clear_error():
    model = vae()
    x, y = tokens()
    out = model(x, targets=y, latent=torch.zeros(3, LATENT))
    assert "kl" not in out.metrics
    torch.testing.assert_close(out.loss, out.loss_sum / out.count)
    with pytest.raises(ValueError, match="latent code or targets"):
        model(x)


# -------------------------------------------------------------------------------------- the encoder


def test_the_bidirectional_encoder_reads_each_row_to_its_end_and_no_further():
    model = vae().eval()
    _, y = tokens(batch=2, length=6)
    lengths = torch.tensor([6, 4])
    mu, _ = model.encode(y, lengths)
    last = y.clone()
    last[1, 3] = (y[1, 3] % (VOCAB - 1)) + 1  # the last real position of row 1
    changed, _ = model.encode(last, lengths)
    assert not torch.allclose(changed[1], mu[1]) and torch.allclose(changed[0], mu[0])
    padding = y.clone()
    padding[1, 4:] = 0
    same, _ = model.encode(padding, lengths)
    torch.testing.assert_close(same, mu)


def test_lengths_run_to_the_first_end_row_or_the_mask():
    model = vae(**MDN)
    _, y = strokes(batch=3, length=7)
    assert model.sequence_lengths(y).tolist() == [7, 6, 5]
    token_model = vae()
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert token_model.sequence_lengths(torch.zeros(2, 4, dtype=torch.long), mask).tolist() == [3, 4]
    assert token_model.sequence_lengths(torch.zeros(2, 4, dtype=torch.long)).tolist() == [4, 4]


def test_training_mode_draws_z_and_eval_mode_uses_the_mean():
    model = vae()
    x, y = tokens()
    torch.manual_seed(5)
    a = model(x, targets=y).output
    b = model(x, targets=y).output
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model(x, targets=y).output, model(x, targets=y).output)


# -------------------------------------------------------------------------------------- the decoder


@pytest.mark.parametrize("overrides", [{}, {"cell": "gru"}, {"attention": 3}, {"cond_size": 2}],
                         ids=["lstm", "gru", "attention", "cond_vector"])
def test_stepping_after_a_priming_forward_matches_one_forward(overrides):
    model = vae(**overrides).eval()
    x, _ = tokens(length=6)
    z = sample_latent(3, LATENT, torch.Generator().manual_seed(3))
    cond = torch.randn(3, 2) if overrides.get("cond_size") else None
    with torch.no_grad():
        full = model(x, latent=z, cond=cond).output
        primed = model(x[:, :3], latent=z, cond=cond)
        state, outs = primed.state, [primed.output]
        for t in range(3, 6):
            out, state = model.step(x[:, t], state, cond=cond, latent=z)
            outs.append(out[:, None])
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    first, _ = model.step(x[:, 0], None, cond=cond, latent=z)
    torch.testing.assert_close(first, full[:, 0], atol=1e-5, rtol=1e-5)
    assert len(model.initial_state(3, latent=z).layers[0]) == (1 if overrides.get("cell") == "gru" else 2)
    with pytest.raises(ValueError, match="latent"):
        model.step(x[:, 0], None, cond=cond)


@pytest.mark.parametrize("overrides", [{}, MDN], ids=["tokens", "strokes"])
def test_a_few_adam_steps_lower_the_loss(overrides):
    model = vae(**overrides, kl_weight=0.1)
    x, y = tokens() if not overrides else strokes()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(12):
        torch.manual_seed(0)  # the same draw of z every step, so the losses compare
        out = model(x, targets=y, mask=torch.ones(y.shape[:2], dtype=torch.bool))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.8 * losses[0]


def test_class_labels_change_the_output_for_the_same_code():
    model = vae(cond_size=3, cond_classes=4).eval()
    x = tokens(batch=1)[0].expand(2, -1)
    z = torch.randn(1, LATENT).expand(2, -1)
    out = model(x, latent=z, cond=torch.tensor([0, 1])).output
    assert not torch.allclose(out[0], out[1])
    same = model(x, latent=z, cond=torch.tensor([2, 2])).output
    torch.testing.assert_close(same[0], same[1])
    with pytest.raises(ValueError, match="cond"):
        model(x, latent=z)


def test_every_parameter_is_in_exactly_one_group_and_the_family_builds_it():
    model = vae(cond_size=3, cond_classes=4, attention=2, layer_norm=True)
    groups = model.parameter_groups()
    assert [name for name, _ in groups] == ["encoder", "adapter", "layer0", "layer1", "head"]
    ids = [id(p) for _, params in groups for p in params]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    assert any(p is model.label_embedding.weight for p in dict(groups)["encoder"])
    assert model.count_parameters() == sum(p.numel() for p in model.parameters())
    assert model.whole_pieces and model.head is model.decoder.head
    built = build_model(vae_config())
    assert isinstance(built, SequenceVAE) and built.decoder.config.family == "rnn"
    assert built.decoder.config.cond_size == LATENT and built.decoder.config.cond_classes == 0


# ---------------------------------------------------------------------------------- the latent space


def test_slerp_keeps_endpoints_and_the_unit_sphere_and_interpolate_includes_both_ends():
    g = torch.Generator().manual_seed(4)
    z0, z1 = F.normalize(torch.randn(2, 8, generator=g), dim=-1)
    torch.testing.assert_close(slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(slerp(z0, z1, 1.0), z1)
    for t in (0.25, 0.5, 0.8):
        assert slerp(z0, z1, t).norm().item() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(slerp(z0, 2 * z0, 0.5), 1.5 * z0)  # parallel: linear
    torch.testing.assert_close(slerp(z0, -z0, 0.5), torch.zeros(8))  # antiparallel: linear
    path = interpolate(z0, z1, 5)
    assert path.shape == (5, 8)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    a = sample_latent(3, 8, torch.Generator().manual_seed(7))
    assert a.shape == (3, 8) and torch.equal(a, sample_latent(3, 8, torch.Generator().manual_seed(7)))


# ------------------------------------------------------------------------------- recurrent dropout


def test_dropout_lstm_without_dropout_is_nn_lstm():
    torch.manual_seed(0)
    reference = torch.nn.LSTM(5, 7, batch_first=True)
    cell = DropoutLSTM(5, 7, recurrent_dropout=0.0, layer_norm=False)
    cell.load_state_dict(reference.state_dict())
    x, h0, c0 = torch.randn(3, 6, 5), torch.randn(1, 3, 7), torch.randn(1, 3, 7)
    y, (h, c) = cell(x, (h0, c0))
    y_ref, (h_ref, c_ref) = reference(x, (h0, c0))
    assert y.shape == (3, 6, 7) and h.shape == c.shape == (1, 3, 7)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)
    dropped = DropoutLSTM(5, 7, recurrent_dropout=0.5, layer_norm=False)
    dropped.load_state_dict(reference.state_dict())
    assert not torch.allclose(dropped(x, (h0, c0))[0], y_ref)  # training mode drops
    torch.testing.assert_close(dropped.eval()(x, (h0, c0))[0], y_ref)  # eval mode does not


def test_layer_norm_lstm_normalises_each_gate_and_the_cell():
    torch.manual_seed(0)
    cell = DropoutLSTM(4, 6, recurrent_dropout=0.0, layer_norm=True)
    x, h0, c0 = torch.randn(2, 3, 4), torch.zeros(1, 2, 6), torch.zeros(1, 2, 6)
    y, (h, c) = cell(x, (h0, c0))
    pre = F.layer_norm((x[:, 0] @ cell.weight_ih_l0.t()).unflatten(1, (4, 6)), (6,)) + cell.gate_norm_bias
    i, f, g, o = pre.unbind(1)
    c1 = torch.sigmoid(i) * torch.tanh(g)
    torch.testing.assert_close(y[:, 0], torch.sigmoid(o) * torch.tanh(F.layer_norm(c1, (6,))))
    assert y.shape == (2, 3, 6) and h.shape == c.shape == (1, 2, 6)


def test_a_model_with_recurrent_dropout_uses_the_cell_and_trains_a_step():
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(vocab_size=VOCAB, embedding_size=6, hidden_size=12, recurrent_dropout=0.3))
    assert all(isinstance(layer.rnn, DropoutLSTM) for layer in model.layers)
    x, y = tokens()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(x, targets=y).loss
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item()) and all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    model.eval()
    with torch.no_grad():  # stepping (no fast path for this cell) matches the sequence
        full = model(x).output
        state, outs = None, []
        for t in range(x.shape[1]):
            out, state = model.step(x[:, t], state)
            outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), full, atol=1e-5, rtol=1e-5)
    # its weights load into a plain LSTM model (and so the fast path) unchanged
    plain = SequenceModel(ModelConfig(vocab_size=VOCAB, embedding_size=6, hidden_size=12)).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(plain(x).output, full, atol=1e-5, rtol=1e-5)
