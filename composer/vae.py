"""Sketch-RNN's sequence autoencoder (Ha & Eck, 2017), for token or feature sequences.

    targets [B, T(, D)] -> encoder adapter -> bidirectional LSTM over each row's real length
      -> [h_forward ; h_backward] -> Linear -> mu, logvar [B, latent]
      -> z = mu + exp(logvar / 2) * eps          (training; z = mu in eval mode)
    z -> tanh(Linear(z)) -> the decoder's initial (h, c) for every layer
    x [B, T(, D)] ++ (class embedding or cond vector ++ z at every step) -> the decoder (a SequenceModel)

The training loss is the reconstruction NLL per counted position plus ``w * max(KL, kl_tolerance)``,
where KL is the divergence of N(mu, sigma) from N(0, I) averaged over the latent dimensions and the
batch (Sketch-RNN's normalisation) and ``w`` rises from 1% to 99% of ``kl_weight`` over ``kl_anneal``
steps (``set_progress``). ``loss_sum``/``count`` stay the reconstruction's, so a corpus's NLL adds up.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from composer.model import ModelConfig, ModelOutput, SequenceModel, State

__all__ = ["SequenceVAE", "interpolate", "kl_per_row", "sample_latent", "slerp"]


def kl_per_row(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row [B], averaged over the latent dimensions."""
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).mean(-1)


class SequenceVAE(nn.Module):
    """A bidirectional-LSTM encoder to a latent code and a ``SequenceModel`` decoder that starts from
    and sees that code at every step. Called like ``SequenceModel``; ``latent`` picks the code, else the
    targets are encoded."""

    whole_pieces = True  # an autoencoder reads whole sequences: the trainer must not cut windows

    def __init__(self, config: ModelConfig, heads: dict | None = None):
        """``heads``: head type -> factory (default: the heads registered with the process registry)."""
        super().__init__()
        if heads is None:
            from composer.plugins import get_registry

            heads = get_registry().heads
        config.validate(heads)
        if config.latent_size <= 0:
            raise ValueError("invalid ModelConfig: family 'vae' needs latent_size > 0")
        self.config = config
        if config.input == "tokens":
            self.encoder_adapter: nn.Module = nn.Embedding(config.vocab_size, config.embedding_size)
        else:
            self.encoder_adapter = nn.Linear(config.input_dim, config.embedding_size)
        self.encoder = nn.LSTM(config.embedding_size, config.encoder_size, batch_first=True, bidirectional=True)
        self.to_latent = nn.Linear(2 * config.encoder_size, 2 * config.latent_size)  # -> mu, logvar
        self.state_tensors = 1 if config.cell == "gru" else 2
        self.to_state = nn.Linear(config.latent_size, config.layers * self.state_tensors * config.hidden_size)
        self.label_embedding = (
            nn.Embedding(config.cond_classes, config.cond_size) if config.cond_classes else None
        )
        decoder_config = dataclasses.replace(
            config, family="rnn", cond_classes=0, cond_size=config.latent_size + config.cond_size,
            head=dict(config.head), options=dict(config.options),
        )
        self.decoder = SequenceModel(decoder_config, heads)
        self.progress = 0  # the training step, for the KL weight's annealing

    # ------------------------------------------------------------------------------- plumbing

    @property
    def head(self) -> nn.Module:
        return self.decoder.head

    def parameter_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        """``encoder`` (adapter, bidirectional LSTM, mu/logvar, the state from z, the label embedding),
        then the decoder's groups from the bottom up."""
        modules = (self.encoder_adapter, self.encoder, self.to_latent, self.to_state, self.label_embedding)
        encoder = [p for m in modules if m is not None for p in m.parameters()]
        return [("encoder", encoder), *self.decoder.parameter_groups()]

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flatten_parameters(self) -> None:
        """Re-pack cuDNN weights into one chunk (after replacing weight tensors)."""
        self.encoder.flatten_parameters()
        self.decoder.flatten_parameters()

    def set_progress(self, step: int) -> None:
        """The training step reached, which sets the annealed KL weight."""
        self.progress = int(step)

    def kl_weight_now(self) -> float:
        """``kl_weight * (1 - 0.99 * r**step)`` with ``r = 0.01 ** (1 / kl_anneal)``: 1% of kl_weight at
        step 0, 99% at step kl_anneal, then on towards kl_weight (Sketch-RNN's schedule)."""
        c = self.config
        if c.kl_anneal <= 0:
            return c.kl_weight
        return c.kl_weight * (1 - 0.99 * math.exp(self.progress * math.log(0.01) / c.kl_anneal))

    # ------------------------------------------------------------------------------- encoding

    def encode(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x: ids [B, T] or features [B, T, input_dim]; lengths [B] (>= 1): how much of each row is real.
        -> (mu, logvar), each [B, latent_size]. Positions from a row's length on are never read."""
        weight = self.encoder.weight_ih_l0
        lengths = lengths.detach().long().cpu().clamp(1, x.shape[1])
        # as in RecurrentLayer: the recurrence runs in the weights' dtype, CPU autocast or not
        with torch.autocast("cpu", enabled=False):
            e = self.encoder_adapter(x).to(weight.dtype)
            packed = pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False)
            _, (h, _) = self.encoder(packed)  # h [2, B, encoder_size] in the rows' order: forward, backward
        mu, logvar = self.to_latent(torch.cat([h[0], h[1]], -1)).float().chunk(2, -1)
        return mu, logvar

    def sequence_lengths(self, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        """Each row's real length [B]: up to and including its first end (``head.ends``); where the head
        cannot tell or a row never ends, the mask's count of positions (all positions without a mask)."""
        batch, steps = targets.shape[:2]
        if mask is not None:
            fallback = mask.bool().sum(1)
        else:
            fallback = torch.full((batch,), steps, dtype=torch.long, device=targets.device)
        ends = self.head.ends(targets)
        if ends is None:
            return fallback.clamp(min=1)
        first = ends.long().argmax(1) + 1
        return torch.where(ends.any(1), first, fallback).clamp(min=1)

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """A draw z ~ N(mu, exp(logvar)) in training mode; the mean in eval mode."""
        if not self.training:
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    # ------------------------------------------------------------------------------- decoding

    def initial_state(self, batch_size: int, device: torch.device | str | None = None,
                      latent: Tensor | None = None) -> State:
        """The decoder's state before the first step: ``tanh(Linear(z))`` split into each layer's (h, c)
        (h alone for GRU); without a latent, zeros. An attention window starts empty."""
        zero = self.decoder.initial_state(batch_size, device if latent is None else latent.device)
        if latent is None:
            return zero
        dtype = zero.layers[0][0].dtype
        parts = torch.tanh(self.to_state(latent)).to(dtype).chunk(self.config.layers * self.state_tensors, -1)
        n = self.state_tensors
        layers = tuple(tuple(parts[i * n: (i + 1) * n]) for i in range(self.config.layers))
        return State(layers, zero.window, zero.window_mask)

    def _conditioning(self, latent: Tensor, cond: Tensor | None) -> Tensor:
        """The decoder's per-step conditioning vector: [class embedding or cond vector ; z]."""
        if (cond is None) != (self.config.cond_size == 0):
            raise ValueError(f"pass cond exactly when cond_size > 0 (this model: {self.config.cond_size})")
        if cond is None:
            return latent
        c = cond if self.label_embedding is None else self.label_embedding(cond)
        return torch.cat([c.to(latent.dtype), latent], -1)

    def forward(self, x: Tensor, targets: Tensor | None = None, state: State | None = None,
                cond: Tensor | None = None, mask: Tensor | None = None, latent: Tensor | None = None,
                metrics: bool = False) -> ModelOutput:
        """x: the decoder's inputs, ids [B, T] or features [B, T, input_dim] (the sequence with its start row,
        without its last); targets: the next-step targets, which the encoder reads when ``latent`` [B,
        latent_size] is not given; cond: class ids [B] or vectors [B, cond_size]; mask [B, T]: positions
        that count. ``state`` None: the state made from z. With an encoded code, ``metrics['kl']`` holds
        (sum over rows of each row's KL, rows) and the loss adds the annealed, free-bits KL term."""
        kl = None
        if latent is not None:
            z = latent
        elif targets is not None:
            mu, logvar = self.encode(targets, self.sequence_lengths(targets, mask))
            z = self.reparameterize(mu, logvar)
            kl = kl_per_row(mu, logvar)
        else:
            raise ValueError("the vae needs a latent code or targets to encode")
        if state is None:
            state = self.initial_state(x.shape[0], x.device, latent=z)
        out = self.decoder(x, targets, state, self._conditioning(z, cond), mask, metrics=metrics)
        if kl is None or out.loss is None:
            return out
        free_bits = torch.clamp(kl.mean(), min=self.config.kl_tolerance)  # no gradient below the tolerance
        out.loss = out.loss + self.kl_weight_now() * free_bits
        out.metrics = {**out.metrics, "kl": (kl.sum(), torch.tensor(kl.shape[0], device=kl.device))}
        return out

    def step(self, x_t: Tensor, state: State | None = None, cond: Tensor | None = None,
             latent: Tensor | None = None) -> tuple[Any, State]:
        """One decoder step: x_t ids [B] or features [B, input_dim], latent [B, latent_size] (required)
        -> (head output for it, new state). ``state`` None: the state made from the latent."""
        if latent is None:
            raise ValueError("the vae decodes from a latent code: pass latent [B, latent_size]")
        if state is None:
            state = self.initial_state(x_t.shape[0], x_t.device, latent=latent)
        return self.decoder.step(x_t, state, self._conditioning(latent, cond))


# ----------------------------------------------------------------------------------- latent space


def sample_latent(n: int, size: int, generator: torch.Generator | None = None) -> Tensor:
    """n codes [n, size] from the prior N(0, I), drawn on the CPU (the same seed, the same codes)."""
    return torch.randn(n, size, generator=generator)


def slerp(z0: Tensor, z1: Tensor, t: float | Tensor) -> Tensor:
    """Spherical interpolation between codes z0 and z1 ([..., latent]) at t in [0, 1] (Sketch-RNN's
    latent walks): along the great circle, scaled between the norms; linear where the two are parallel
    or antiparallel (or one is zero), where the circle is not defined."""
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    if t.dim():
        t = t[..., None]
    n0, n1 = z0.norm(dim=-1, keepdim=True), z1.norm(dim=-1, keepdim=True)
    cos = ((z0 * z1).sum(-1, keepdim=True) / (n0 * n1).clamp(min=1e-12)).clamp(-1, 1)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    linear = (1 - t) * z0 + t * z1
    degenerate = (sin.abs() < 1e-6) | (n0 * n1 == 0)
    safe = torch.where(degenerate, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / safe
    return torch.where(degenerate, linear, spherical)


def interpolate(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """``steps`` codes [steps, latent] from z0 to z1 (both included), evenly spaced in slerp's t."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return torch.stack([slerp(z0, z1, float(t)) for t in torch.linspace(0, 1, steps)])
