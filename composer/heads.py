"""Output heads: what the model predicts at each step, how it is scored, and how the next input is drawn.

A head turns top-layer features into an output (logits, or a mixture density's parameters), and owns
everything that depends on what the sequence holds:

- ``loss(output, targets, mask)``: the summed loss over counted positions and their number;
- ``metrics(output, targets, mask)``: further named sums and counts worth reporting (accuracy for
  tokens, the offset and pen parts for strokes), so that nothing reports a metric that means nothing;
- ``sample(output_t, generator, temperature)``: the next input, drawn from one step's output;
- ``log_prob(output_t, value)``: how likely one step's output finds a value (scores generated pieces);
- ``ends(value)``: whether a drawn value ends its sequence (a pen lifted for good), where the head can tell.

``categorical`` heads give logits over a vocabulary, which samplers may filter (top-k, top-p, beams);
other heads are sampled through ``sample`` alone. Heads are registered by name (``register_heads``) and
built from a spec dict with ``factory(hidden_size, spec)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from composer.api import hookimpl

Sums = dict[str, tuple[Tensor, Tensor]]  # metric name -> (sum, count)


def map_output(output: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor of a head's output (a tensor, or a dict or tuple of tensors)."""
    if isinstance(output, Tensor):
        return fn(output)
    if isinstance(output, dict):
        return {k: map_output(v, fn) for k, v in output.items()}
    if isinstance(output, tuple | list):
        return type(output)(map_output(v, fn) for v in output)
    return output


def last_step(output: Any) -> Any:
    """One step's output from a sequence's output [B, T, ...]: the last step."""
    return map_output(output, lambda t: t[:, -1])


def draw_index(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One index per row of ``probs`` [rows, k] (non-negative weights), drawn with ``generator`` on its
    device (without one, on the probabilities' device). On the CPU this is ``torch.multinomial``. On a GPU
    it is the same distribution drawn as a race of exponential clocks (the argmax of p / E with
    E ~ Exp(1)): ``torch.multinomial`` checks the probabilities on the host there, which would make every
    generation step wait for the GPU."""
    where = generator.device if generator is not None else probs.device
    if where.type == "cpu":
        return torch.multinomial(probs if probs.device.type == "cpu" else probs.cpu(), 1, generator=generator)[:, 0]
    return _exponential_race(probs.to(where), generator)


def _exponential_race(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """Index i wins with probability p_i / sum(p): the first of independent clocks E_i / p_i to ring."""
    clocks = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / clocks).argmax(-1)


def _counted(shape: torch.Size, mask: Tensor | None, device: torch.device) -> Tensor:
    return torch.ones(shape, dtype=torch.bool, device=device) if mask is None else mask.bool()


class Head(nn.Module):
    """Turns top-layer features [..., hidden] into an output; scores it and samples from it."""

    categorical: ClassVar[bool] = False  # outputs logits [..., vocab] that token samplers work on

    def forward(self, h: Tensor) -> Any:
        raise NotImplementedError

    def loss(self, output: Any, targets: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """(sum of per-position losses, number of counted positions); ``mask`` [B, T] picks positions."""
        raise NotImplementedError

    def metrics(self, output: Any, targets: Tensor, mask: Tensor | None) -> Sums:
        """Named (sum, count) pairs to report beside the loss; default none."""
        return {}

    def sample(self, output_t: Any, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """The next input for each row, drawn from one step's output: ids [B] or features [B, D]."""
        raise NotImplementedError

    def log_prob(self, output_t: Any, value: Tensor) -> Tensor:
        """Log-likelihood [B] of ``value`` (ids [B] or features [B, D]) under one step's output."""
        raise NotImplementedError

    def ends(self, value: Tensor) -> Tensor | None:
        """Whether each drawn value [B, ...] ends its sequence; None where only an end token can tell."""
        return None


class CategoricalHead(Head):
    """Logits over ``vocab_size`` tokens; cross-entropy over the positions the mask counts."""

    categorical = True

    def __init__(self, hidden_size: int, vocab_size: int):
        super().__init__()
        if vocab_size <= 0:
            raise ValueError("categorical head needs vocab_size > 0")
        self.proj = nn.Linear(hidden_size, vocab_size)

    def forward(self, h: Tensor) -> Tensor:
        return self.proj(h)

    def loss(self, output: Tensor, targets: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        counted = _counted(targets.shape, mask, targets.device)
        # float32 even under autocast: a bf16 log-softmax over a large vocabulary loses the small terms
        nll = F.cross_entropy(output.float().flatten(0, -2), targets.flatten().long(), reduction="none")
        return torch.where(counted, nll.view_as(targets), 0.0).sum(), counted.sum()

    def metrics(self, output: Tensor, targets: Tensor, mask: Tensor | None) -> Sums:
        counted = _counted(targets.shape, mask, targets.device)
        return {"accuracy": (((output.argmax(-1) == targets) & counted).sum(), counted.sum())}

    def sample(self, output_t: Tensor, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        if temperature == 0:
            return output_t.argmax(-1)
        return draw_index(F.softmax(output_t.float() / temperature, -1), generator).to(output_t.device)

    def log_prob(self, output_t: Tensor, value: Tensor) -> Tensor:
        return F.log_softmax(output_t.float(), -1).gather(-1, value.long()[:, None])[:, 0]


class MixtureDensityHead(Head):
    """Sketch-RNN's output (Ha & Eck, 2017): M bivariate normals with correlation over (dx, dy) and a
    softmax over pen states. Targets are stroke-5 rows (dx, dy, p1, p2, p3) with a one-hot pen state; the
    last pen state ends the drawing."""

    eps = 1e-5  # keeps |rho| below 1

    def __init__(self, hidden_size: int, components: int = 20, dims: int = 2, pen_states: int = 3):
        super().__init__()
        if dims != 2 or components <= 0 or pen_states <= 0:
            raise ValueError("mdn head needs dims == 2 and positive components and pen_states")
        self.components, self.pen_states = components, pen_states
        self.proj = nn.Linear(hidden_size, 6 * components + pen_states)

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        m = self.components
        pi, mu, log_sigma, rho, pen = self.proj(h).float().split([m, 2 * m, 2 * m, m, self.pen_states], -1)
        return {
            "pi": pi,  # mixture logits [..., M]
            "mu": mu.unflatten(-1, (m, 2)),  # [..., M, 2]
            "log_sigma": log_sigma.unflatten(-1, (m, 2)),  # [..., M, 2]
            "rho": torch.tanh(rho).clamp(-1 + self.eps, 1 - self.eps),  # [..., M]
            "pen": pen,  # pen-state logits [..., pen_states]
        }

    def _parts(self, output: dict[str, Tensor], targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(offset NLL, pen NLL, pen state) per position."""
        targets = targets.float()
        pen = targets[..., 2:].argmax(-1)
        log_sigma, rho = output["log_sigma"], output["rho"]
        z = (targets[..., None, :2] - output["mu"]) * torch.exp(-log_sigma)
        one_minus_rho2 = 1 - rho.square()
        log_normal = (
            -math.log(2 * math.pi) - log_sigma.sum(-1) - 0.5 * torch.log(one_minus_rho2)
            - (z.square().sum(-1) - 2 * rho * z[..., 0] * z[..., 1]) / (2 * one_minus_rho2)
        )
        offset_nll = -torch.logsumexp(F.log_softmax(output["pi"], -1) + log_normal, -1)
        pen_nll = F.cross_entropy(output["pen"].flatten(0, -2), pen.flatten(), reduction="none").view_as(pen)
        return offset_nll, pen_nll, pen

    def _sums(self, output: dict[str, Tensor], targets: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        offset_nll, pen_nll, pen = self._parts(output, targets)
        counted = _counted(pen.shape, mask, pen.device)
        # as in Sketch-RNN, the padding after a sketch's end (last pen state) has no offset to predict
        drawn = counted & (pen != self.pen_states - 1)
        return torch.where(drawn, offset_nll, 0.0).sum(), torch.where(counted, pen_nll, 0.0).sum(), counted.sum()

    def loss(self, output: dict[str, Tensor], targets: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        offsets, pens, count = self._sums(output, targets, mask)
        return offsets + pens, count

    def metrics(self, output: dict[str, Tensor], targets: Tensor, mask: Tensor | None) -> Sums:
        """Sketch-RNN's two reconstruction terms: L_s (offsets) and L_p (pen states), per counted position."""
        offsets, pens, count = self._sums(output, targets, mask)
        return {"offset_loss": (offsets, count), "pen_loss": (pens, count)}

    def sample(self, output_t: dict[str, Tensor], generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor:
        """One stroke-5 row per batch row [B, 2 + pen_states]; as in Sketch-RNN the temperature divides the
        mixture and pen logits and scales the variances (temperature 0: the most likely component and pen
        state, at its mean). Draws run on the generator's device (see :func:`draw_index`)."""
        device = output_t["pi"].device
        where = generator.device if generator is not None else device
        out = {k: v.float().to(where) for k, v in output_t.items()}
        rows = torch.arange(out["pi"].shape[0], device=where)
        if temperature == 0:
            k, pen = out["pi"].argmax(-1), out["pen"].argmax(-1)
        else:
            k = draw_index(F.softmax(out["pi"] / temperature, -1), generator)
        mu = out["mu"][rows, k]
        sigma = torch.exp(out["log_sigma"][rows, k]) * math.sqrt(temperature)
        rho = out["rho"][rows, k]
        z = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=where)
        dx = mu[:, 0] + sigma[:, 0] * z[:, 0]
        dy = mu[:, 1] + sigma[:, 1] * (rho * z[:, 0] + torch.sqrt(1 - rho.square()) * z[:, 1])
        if temperature != 0:
            pen = draw_index(F.softmax(out["pen"] / temperature, -1), generator)
        row = torch.cat([torch.stack([dx, dy], -1), F.one_hot(pen, self.pen_states).to(mu.dtype)], -1)
        return row.to(device)

    def log_prob(self, output_t: dict[str, Tensor], value: Tensor) -> Tensor:
        offset_nll, pen_nll, pen = self._parts(output_t, value)
        return -(torch.where(pen != self.pen_states - 1, offset_nll, 0.0) + pen_nll)

    def ends(self, value: Tensor) -> Tensor:
        return value[..., 2:].argmax(-1) == self.pen_states - 1


HeadFactory = Callable[[int, dict], Head]


@hookimpl
def register_heads(register: Callable[[str, HeadFactory], None]) -> None:
    """The core's heads, registered like any plugin's: ``{"type": NAME, ...}`` specs build with
    ``factory(hidden_size, spec)``."""
    register("categorical", lambda hidden, spec: CategoricalHead(hidden, spec.get("vocab_size", 0)))
    register("mdn", lambda hidden, spec: MixtureDensityHead(
        hidden, spec.get("components", 20), spec.get("dims", 2), spec.get("pen_states", 3)))
