"""DeepBach's bidirectional model (Hadjeres, Pachet & Nielsen, 2017) over frames of parallel token streams,
and the Gibbs-style resampling that regenerates chosen positions of a piece while keeping the rest.

    sequence: START, then one frame per time step: F tokens, the first P of them streams the model predicts
    (four voices), the rest read only (the position in the bar); the encoder's head says F and P
    frame t -> token embeddings, concatenated [F * E]
    forward LSTM over frames 0..t-1    -> past_t
    backward LSTM over frames t+1..end -> future_t
    frame t with stream p's token replaced by a learned blank -> Linear -> centre_{t,p}
    ReLU(Linear([past_t; future_t; centre_{t,p}])) -> the categorical head -> p(stream p at t | all else)

Training maximises the pseudo-likelihood (every position given all the others) over whole pieces through
the ordinary trainer: the family reads the trainer's next-token targets as the frames. ``resample`` then
scans the free positions step by step, drawing each from its conditional given everything else, for a
number of sweeps with an annealed temperature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from composer.heads import draw_index
from composer.model import ModelConfig, ModelOutput, State

__all__ = ["GibbsModel", "resample"]


class GibbsModel(nn.Module):
    """The bidirectional conditional model of every predicted position given all the others (family
    ``gibbs``). ``forward`` scores whole pieces (``targets``: the frames after the start token)."""

    whole_pieces = True  # both directions read the whole piece
    regenerates = True  # a Session regenerates parts of pieces with it (``Session.regenerate``) and cannot sample

    def __init__(self, config: ModelConfig, heads: dict | None = None):
        """``heads``: head type -> factory (default: the heads registered with the process registry)."""
        super().__init__()
        if heads is None:
            from composer.plugins import get_registry

            heads = get_registry().heads
        config.validate(heads)
        frame, predicted = int(config.head.get("frame", 0)), int(config.head.get("predicted", 0))
        if config.input != "tokens" or not 0 < predicted <= frame:
            raise ValueError("invalid ModelConfig: family 'gibbs' needs a token encoder whose sequences come in "
                             "frames of parallel streams (such as satb)")
        self.config, self.frame, self.predicted = config, frame, predicted
        size, hidden = config.embedding_size, config.hidden_size
        width = frame * size
        self.embedding = nn.Embedding(config.vocab_size, size)
        self.blank = nn.Parameter(torch.randn(size) * 0.1)  # stands in for the token being predicted
        between = config.dropout if config.layers > 1 else 0.0
        self.past = nn.LSTM(width, hidden, config.layers, batch_first=True, dropout=between)
        self.future = nn.LSTM(width, hidden, config.layers, batch_first=True, dropout=between)
        self.centre = nn.Linear(width, hidden)
        self.mix = nn.Linear(3 * hidden, hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.head = heads[config.head["type"]](hidden, {"vocab_size": config.vocab_size, **config.head})

    def parameter_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        """``adapter`` (embedding, blank), ``past``, ``future``, ``head`` (centre, mix, head)."""
        return [("adapter", [self.embedding.weight, self.blank]), ("past", list(self.past.parameters())),
                ("future", list(self.future.parameters())),
                ("head", [*self.centre.parameters(), *self.mix.parameters(), *self.head.parameters()])]

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flatten_parameters(self) -> None:
        self.past.flatten_parameters()
        self.future.flatten_parameters()

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """No state is carried between calls: every call reads whole pieces."""
        return State(())

    def frames(self, targets: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The trainer's targets [B, N] (a piece after its start token) as frames [B, T, F] and which frames
        are real [B, T] (bool)."""
        steps = targets.shape[1] // self.frame
        frames = targets[:, : steps * self.frame].reshape(targets.shape[0], steps, self.frame).long()
        real = torch.ones(frames.shape[:2], dtype=torch.bool, device=targets.device) if mask is None else \
            mask[:, : steps * self.frame].reshape(frames.shape)[..., 0].bool()
        return frames, real

    def forward(self, x: Tensor, targets: Tensor | None = None, state: State | None = None,
                cond: Tensor | None = None, mask: Tensor | None = None, latent: Tensor | None = None,
                metrics: bool = False) -> ModelOutput:
        """Logits [B, T, P, V] of every predicted position given all the others, and with ``targets`` its
        pseudo-likelihood loss. ``x`` (the same piece with its start token) is not needed beyond it."""
        if targets is None:
            raise ValueError("the gibbs family reads whole pieces: pass them as targets")
        if cond is not None or latent is not None:
            raise ValueError("the gibbs family takes no conditioning or latent code")
        frames, real = self.frames(targets, mask)
        logits = self.conditionals(frames, real.sum(1))
        wanted = frames[..., : self.predicted]
        counted = real[..., None].expand_as(wanted)
        loss_sum, count = self.head.loss(logits, wanted, counted)
        sums = self.head.metrics(logits, wanted, counted) if metrics else {}
        return ModelOutput(logits, State(()), loss_sum / count.clamp(min=1), loss_sum, count, sums)

    def step(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("the gibbs family does not generate left to right; regenerate with it (resample)")

    # -- the parts
    def embed(self, frames: Tensor) -> Tensor:
        """Frames [B, T, F] -> step vectors [B, T, F * E]."""
        return self.embedding(frames).flatten(2)

    def past_features(self, steps: Tensor) -> Tensor:
        """past_t [B, T, H]: the forward LSTM's output after frames 0..t-1 (zeros for t = 0)."""
        out, _ = self.past(self.dropout(steps))
        return F.pad(out, (0, 0, 1, 0))[:, : steps.shape[1]]

    def future_features(self, steps: Tensor, lengths: Tensor | None = None) -> Tensor:
        """future_t [B, T, H]: the backward LSTM's output after frames end..t+1 of each row's ``lengths``
        real frames (zeros for a row's last frame)."""
        batch, count = steps.shape[:2]
        t = torch.arange(count, device=steps.device).expand(batch, -1)
        if lengths is None:
            back = count - 1 - t
        else:
            lengths = lengths.to(steps.device)[:, None]
            back = torch.where(t < lengths, lengths - 1 - t, t)  # each row's real frames reversed, padding after
        reverse = lambda v: v.gather(1, back[..., None].expand(-1, -1, v.shape[-1]))  # noqa: E731
        out, _ = self.future(self.dropout(reverse(steps)))
        return reverse(F.pad(out, (0, 0, 1, 0))[:, :count])

    def conditional(self, past: Tensor, future: Tensor, frame: Tensor, stream: int) -> Tensor:
        """Logits [..., V] of ``stream`` at one step from its past, future [..., H] and frame [..., F]."""
        emb = self.embedding(frame)
        emb = torch.cat([emb[..., :stream, :], self.blank.expand_as(emb[..., :1, :]), emb[..., stream + 1:, :]], -2)
        centre = self.centre(self.dropout(emb.flatten(-2)))
        h = F.relu(self.mix(torch.cat([past, future, centre], -1)))
        return self.head(self.dropout(h))

    def conditionals(self, frames: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Logits [B, T, P, V] of every predicted stream at every step given all the others."""
        steps = self.embed(frames)
        past, future = self.past_features(steps), self.future_features(steps, lengths)
        return torch.stack([self.conditional(past, future, frames, p) for p in range(self.predicted)], 2)


def _lstm_step(lstm: nn.LSTM, x: Tensor, state: list[tuple[Tensor, Tensor]]) -> Tensor:
    """One time step through every layer of ``lstm`` with the fused cell kernel; updates ``state``."""
    for layer, (h, c) in enumerate(state):
        h, c = torch.lstm_cell(x, (h, c), getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}"),
                               getattr(lstm, f"bias_ih_l{layer}"), getattr(lstm, f"bias_hh_l{layer}"))
        state[layer] = (h, c)
        x = h
    return x


@torch.no_grad()
def resample(model: GibbsModel, tokens: Tensor, free: Tensor, allowed: Tensor, *, sweeps: int = 20,
             temperature: float = 0.8, start_temperature: float = 1.5, generator: torch.Generator | None = None,
             progress: Callable[[int, int], None] | None = None) -> tuple[Tensor, Tensor]:
    """Regenerate the free positions of ``n`` copies of one piece by Gibbs sampling.

    ``tokens`` [n, T, F] frames (the free positions' values are replaced), ``free`` [T, F] bool,
    ``allowed`` [T, F, V] bool (what a free position may take). Free positions start at random among their
    allowed tokens; then each of ``sweeps`` sweeps visits the steps from first to last and, at each step,
    its free streams in a random order, drawing each from the model's distribution given everything else
    at a temperature that falls linearly from ``start_temperature`` to ``temperature`` (0: the most likely
    token). The scan keeps every conditional exact: the past is carried forward through the updated steps,
    and the future, read at the start of the sweep, is not yet changed. Returns the frames and the
    pseudo-log-likelihood [n] of the free positions (the sum of each one's log-probability given the rest)."""
    model.eval()
    device = next(model.parameters()).device
    grid = tokens.to(device).long().clone()
    rows, count, _ = grid.shape
    free, allowed = free.to(device), allowed.to(device)
    where = generator.device if generator is not None else torch.device("cpu")
    weights = allowed[free].float()  # the free positions' first values: uniform over what they may take
    first = draw_index(weights.repeat(rows, 1), generator).to(device).view(rows, -1)
    grid[:, free] = first
    active = free[:, : model.predicted].any(1).tolist()
    forbidden = ~allowed
    for sweep in range(sweeps):
        heat = temperature + (start_temperature - temperature) * (1 - sweep / max(1, sweeps - 1))
        steps = model.embed(grid)
        future = model.future_features(steps)
        hidden = model.config.hidden_size
        zeros = grid.new_zeros((rows, hidden), dtype=steps.dtype)
        state = [(zeros, zeros) for _ in range(model.config.layers)]
        past = zeros
        t = 0
        while t < count:
            if not active[t]:  # a stretch with nothing to draw goes through the LSTM in one call
                end = t
                while end < count and not active[end]:
                    end += 1
                h0 = torch.stack([s[0] for s in state])
                c0 = torch.stack([s[1] for s in state])
                out, (h, c) = model.past(steps[:, t:end], (h0, c0))
                state = [(h[i], c[i]) for i in range(len(state))]
                past, t = out[:, -1], end
                continue
            streams = free[t, : model.predicted].nonzero()[:, 0]
            for p in streams[torch.randperm(len(streams), generator=generator, device=where).to(device)].tolist():
                logits = model.conditional(past, future[:, t], grid[:, t], p).float()
                logits = logits.masked_fill(forbidden[t, p], float("-inf"))
                if heat <= 0:
                    grid[:, t, p] = logits.argmax(-1)
                else:
                    grid[:, t, p] = draw_index(F.softmax(logits / heat, -1), generator).to(device)
            past = _lstm_step(model.past, model.embedding(grid[:, t]).flatten(1), state)
            t += 1
        if progress is not None:
            progress(sweep + 1, sweeps)
    log_probs = F.log_softmax(model.conditionals(grid).float(), -1)  # [n, T, P, V]
    chosen = log_probs.gather(-1, grid[..., : model.predicted, None])[..., 0]
    likelihood = (chosen * free[:, : model.predicted]).sum((1, 2))
    return grid, likelihood
