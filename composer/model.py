"""The core model: an input adapter, a stack of recurrent layers and an output head.

    ids [B, T] or features [B, T, input_dim]
      -> adapter (embedding or linear) ++ conditioning vector
      -> layer 0 .. layer L-1 (lstm | gru | peephole; optional residual and layer norm)
      -> optional attention over the last N top-layer outputs (Magenta's attention RNN)
      -> head (categorical logits, or Sketch-RNN's mixture density)

`forward` runs whole sequences; `step` runs one time step. Both carry the same `State`, so generation
primes once with `forward` and then pays O(1) per token with `step`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from composer.api import hookimpl
from composer.cells import DropoutLSTM
from composer.heads import CategoricalHead, Head, HeadFactory, MixtureDensityHead, last_step, map_output

__all__ = ["CategoricalHead", "Head", "HeadFactory", "MixtureDensityHead", "ModelConfig", "ModelOutput",
           "SequenceModel", "State", "build_model", "last_step", "map_output"]

INPUTS = ("tokens", "features")
CELLS = ("lstm", "gru", "peephole")
MAX_ATTENTION = 10_000  # the window is held per piece while generating: [batch, N, hidden]

# a config field's declared type -> (the check of a value from a recipe or a checkpoint, what it must be)
_FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (lambda v: type(v) is int, "a whole number"),
    "float": (lambda v: type(v) is int or (type(v) is float and math.isfinite(v)), "a finite number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "dict": (lambda v: isinstance(v, dict), "a table"),
}


@dataclass
class ModelConfig:
    input: str = "tokens"  # "tokens" (embedding of ids) or "features" (linear projection of float vectors)
    vocab_size: int = 0  # for input == "tokens"
    input_dim: int = 0  # for input == "features"
    embedding_size: int = 128  # size of the input adapter's output
    hidden_size: int = 256
    layers: int = 2
    dropout: float = 0.0  # between layers and before the head
    cell: str = "lstm"  # "lstm" (fused nn.LSTM, the fast path) | "gru" (nn.GRU) | "peephole" (custom cell)
    layer_norm: bool = False  # LayerNorm on each layer's output
    residual: bool = False  # layers above the first add their input to their output
    attention: int = 0  # >0: attend over the last N outputs of the top layer
    cond_size: int = 0  # >0: a conditioning vector of this size joins the input at every step
    cond_classes: int = 0  # >0: the conditioning is a class id embedded into cond_size floats
    head: dict = field(default_factory=lambda: {"type": "categorical"})  # a spec for a registered head factory
    recurrent_dropout: float = 0.0  # dropout on each LSTM step's candidate update (Semeniuta et al., 2016)
    family: str = "rnn"  # a registered model family: "rnn" (this stack) or "vae" (Sketch-RNN's autoencoder)
    # family "vae": a bidirectional LSTM reads the whole sequence into a latent code z (mean, log-variance);
    # the decoder (the stack above) starts from a state made from z and sees z at every step
    latent_size: int = 0  # size of z (vae: > 0)
    encoder_size: int = 256  # hidden units per direction of the bidirectional encoder
    kl_weight: float = 0.5  # weight of the KL term in the training loss
    kl_tolerance: float = 0.2  # free bits: the KL term is not pushed below this many nats per code
    kl_anneal: int = 0  # steps over which the KL weight rises from 1% to 99% of kl_weight (0: from the start)
    options: dict = field(default_factory=dict)  # settings of a family a plugin registers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {', '.join(unknown)}")
        for f in fields(cls):
            if f.name in d and not _FIELD_TYPES[f.type][0](d[f.name]):
                raise ValueError(f"invalid ModelConfig: {f.name} must be {_FIELD_TYPES[f.type][1]}, "
                                 f"got {d[f.name]!r:.40}")
        return cls(**copy.deepcopy(d))

    def validate(self, head_types: Collection[str] | None = None) -> None:
        """Raise ValueError with a one-line message for the first thing that cannot be built; ``head_types``:
        the registered heads (default: the process registry's)."""
        if head_types is None:
            from composer.plugins import get_registry

            head_types = get_registry().heads
        checks = [
            (self.input in INPUTS, f"input must be one of {', '.join(INPUTS)}, got {self.input!r}"),
            (self.input != "tokens" or self.vocab_size > 0, "input 'tokens' needs vocab_size > 0"),
            (self.input != "features" or self.input_dim > 0, "input 'features' needs input_dim > 0"),
            (self.cell in CELLS, f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}"),
            (min(self.embedding_size, self.hidden_size, self.layers) > 0,
             "embedding_size, hidden_size and layers must be positive"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (min(self.attention, self.cond_size, self.cond_classes) >= 0,
             "attention, cond_size and cond_classes must not be negative"),
            (self.attention <= MAX_ATTENTION,
             f"attention must be at most {MAX_ATTENTION:,} steps, got {self.attention:,}"),
            (self.cond_classes == 0 or self.cond_size > 0, "cond_classes needs cond_size > 0"),
            (self.head.get("type") in head_types,
             f"unknown head type {self.head.get('type')!r}; known: {', '.join(sorted(head_types))}"),
            (0 <= self.recurrent_dropout < 1, f"recurrent_dropout must be in [0, 1), got {self.recurrent_dropout}"),
            (self.recurrent_dropout == 0 or self.cell == "lstm", "recurrent_dropout needs cell 'lstm'"),
            (self.family != "vae" or self.latent_size > 0, "family 'vae' needs latent_size > 0"),
            (self.family != "vae" or self.encoder_size > 0, "family 'vae' needs encoder_size > 0"),
            (self.kl_weight >= 0 and self.kl_tolerance >= 0 and self.kl_anneal >= 0,
             "kl_weight, kl_tolerance and kl_anneal must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid ModelConfig: {message}")


class State(NamedTuple):
    """Recurrent state carried between calls. Every tensor has the batch on dim 0."""

    layers: tuple[tuple[Tensor, ...], ...]  # per layer: (h, c) for lstm/peephole, (h,) for gru; [B, hidden]
    window: Tensor | None = None  # attention: the last N top-layer outputs [B, N, hidden]
    window_mask: Tensor | None = None  # attention: which window slots hold an output yet [B, N] (bool)


def _map_state(state: State, fn: Callable[[Tensor], Tensor]) -> State:
    layers = tuple(tuple(fn(t) for t in layer) for layer in state.layers)
    if state.window is None:
        return State(layers)
    return State(layers, fn(state.window), fn(state.window_mask))


def select_state(state: State, index: Tensor) -> State:
    """The rows `index` of every state tensor (beam search, dropping finished rows)."""
    return _map_state(state, lambda t: t.index_select(0, index))


def reset_rows(state: State, restart: Tensor) -> State:
    """The state with the rows where ``restart`` [B] is true back at zero (a new piece begins there)."""
    keep = ~restart

    def clear(t: Tensor) -> Tensor:
        rows = keep.view(-1, *([1] * (t.dim() - 1)))
        return t & rows if t.dtype == torch.bool else t * rows.to(t.dtype)

    return _map_state(state, clear)


def detach_state(state: State) -> State:
    """The state cut from the autograd graph (truncated backpropagation through time)."""
    return _map_state(state, Tensor.detach)


@dataclass
class ModelOutput:
    output: Any  # the head's output, e.g. logits [B, T, V]
    state: State  # the recurrent state after the last step
    loss: Tensor | None = None  # mean loss over counted positions (None without targets)
    loss_sum: Tensor | None = None  # sum of per-position losses, for exact NLL over a corpus
    count: Tensor | None = None  # number of counted positions
    metrics: dict = field(default_factory=dict)  # name -> (sum, count): the head's metrics (if asked), KL, ...


# ------------------------------------------------------------------------------------ recurrence


class PeepholeLSTM(nn.Module):
    """LSTM with peephole connections (Gers, Schraudolph & Schmidhuber, 2002): the input and forget gates
    see c_{t-1} and the output gate sees c_t, through diagonal weights. Called like
    nn.LSTM(batch_first=True): x [B, T, input], (h, c) each [1, B, hidden]."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))  # gates i, f, g, o
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.peephole = nn.Parameter(torch.empty(3, hidden_size))  # diagonal weights for i, f, o
        bound = 1 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c = hx[0][0], hx[1][0]
        p_i, p_f, p_o = self.peephole
        x_gates = F.linear(x, self.weight_ih, self.bias)  # the input projection for every step at once
        w_hh = self.weight_hh.t()
        outputs = []
        for x_t in x_gates.unbind(1):
            i, f, g, o = torch.addmm(x_t, h, w_hh).chunk(4, dim=1)
            i, f = torch.sigmoid(i + p_i * c), torch.sigmoid(f + p_f * c)
            c = f * c + i * torch.tanh(g)
            h = torch.sigmoid(o + p_o * c) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, 1), (h[None], c[None])


class RecurrentLayer(nn.Module):
    """One layer of the stack: a recurrent module, then the optional residual sum and layer norm."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, layer_norm: bool, residual: bool,
                 recurrent_dropout: float = 0.0):
        super().__init__()
        if cell == "peephole":
            self.rnn: nn.Module = PeepholeLSTM(input_size, hidden_size)
        elif cell == "lstm" and recurrent_dropout > 0:
            # nn.LSTM's weight names, so checkpoints move between the two; ``layer_norm`` keeps its meaning
            # (on the layer's output, below), the cell's own layer norm stays off
            self.rnn = DropoutLSTM(input_size, hidden_size, recurrent_dropout, layer_norm=False)
        else:
            self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(input_size, hidden_size, batch_first=True)
        self.norm = nn.LayerNorm(hidden_size) if layer_norm else nn.Identity()
        self.residual = residual

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        # The recurrence runs in the weights' dtype even under CPU autocast, which would hand nn.LSTM
        # bf16 tensors: oneDNN rejects them on CPUs without native bf16, and the fallback is ~20x slower
        # than float32. CUDA autocast is left alone (cuDNN runs fp16/bf16 LSTMs well).
        with torch.autocast("cpu", enabled=False):
            inp = x.to(next(self.rnn.parameters()).dtype)
            if inp.shape[1] == 1 and not torch.is_grad_enabled() and isinstance(self.rnn, nn.LSTM | nn.GRU):
                return self._single_step(inp, state)
            hx = tuple(s[None] for s in state)  # [1, B, hidden]: torch's (num_layers, batch, hidden)
            if isinstance(self.rnn, nn.GRU):
                y, h = self.rnn(inp, hx[0])
                hx = (h,)
            else:
                y, hx = self.rnn(inp, hx)
            if self.residual:
                y = y + inp
            return self.norm(y), tuple(s[0] for s in hx)


    def _single_step(self, inp: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One time step through the fused cell kernel: the same weights and numbers as the sequence
        module, without its per-call setup (which costs milliseconds on the CPU, dwarfing one step)."""
        rnn = self.rnn
        weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        if isinstance(rnn, nn.GRU):
            h = torch.gru_cell(inp[:, 0], state[0], *weights)
            new_state: tuple[Tensor, ...] = (h,)
        else:
            h, c = torch.lstm_cell(inp[:, 0], (state[0], state[1]), *weights)
            new_state = (h, c)
        y = h[:, None]
        if self.residual:
            y = y + inp
        return self.norm(y), new_state


class WindowAttention(nn.Module):
    """Magenta's attention RNN idea: additive (Bahdanau) attention from each top-layer output over the
    N outputs before it; the context and the output are mixed by a linear layer and tanh."""

    def __init__(self, hidden_size: int, window: int):
        super().__init__()
        self.window = window
        self.key = nn.Linear(hidden_size, hidden_size, bias=False)
        self.query = nn.Linear(hidden_size, hidden_size)
        self.score = nn.Linear(hidden_size, 1, bias=False)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, h: Tensor, window: Tensor, window_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h [B, T, hidden] with the window before it -> (outputs [B, T, hidden], new window, its mask)."""
        n, steps = self.window, h.shape[1]
        history = torch.cat([window, h], 1)  # output t sits at n + t; its window at t .. n+t-1
        valid = torch.cat([window_mask, window_mask.new_ones(h.shape[:2])], 1)
        keys, queries = self.key(history), self.query(h)
        contexts = []
        for t in range(steps):
            scores = self.score(torch.tanh(keys[:, t: t + n] + queries[:, t, None]))[..., 0]  # [B, N]
            m = valid[:, t: t + n]
            # empty slots get no weight; with no output yet (the first step) the context is zero
            weights = F.softmax(scores.masked_fill(~m, torch.finfo(scores.dtype).min), -1) * m
            contexts.append(torch.bmm(weights[:, None], history[:, t: t + n]))
        context = torch.cat(contexts, 1)
        out = torch.tanh(self.combine(torch.cat([h, context], -1)))
        return out, history[:, -n:], valid[:, -n:]


def _autocasting(device: torch.device) -> bool:
    try:
        return torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4 asks per device
        return torch.is_autocast_cpu_enabled() if device.type == "cpu" else torch.is_autocast_enabled()


# ----------------------------------------------------------------------------------------- model


class SequenceModel(nn.Module):
    """Input adapter (+ conditioning) -> stacked recurrent layers -> optional window attention -> head."""

    def __init__(self, config: ModelConfig, heads: dict[str, HeadFactory] | None = None):
        """``heads``: head type -> factory (default: the heads registered with the process registry)."""
        super().__init__()
        if heads is None:
            from composer.plugins import get_registry

            heads = get_registry().heads
        config.validate(heads)
        self.config = config
        if config.input == "tokens":
            self.adapter: nn.Module = nn.Embedding(config.vocab_size, config.embedding_size)
        else:
            self.adapter = nn.Linear(config.input_dim, config.embedding_size)
        self.cond_embedding = (
            nn.Embedding(config.cond_classes, config.cond_size) if config.cond_classes else None
        )
        self.layers = nn.ModuleList(
            RecurrentLayer(config.cell, config.hidden_size if i else config.embedding_size + config.cond_size,
                           config.hidden_size, config.layer_norm, config.residual and i > 0, config.recurrent_dropout)
            for i in range(config.layers)
        )
        self.attention = WindowAttention(config.hidden_size, config.attention) if config.attention else None
        self.dropout = nn.Dropout(config.dropout)
        # a stack of plain torch cells (no layer norm, residual, recurrent dropout or peepholes) can run as
        # one multi-layer call: cuDNN's fused kernel on a GPU
        self.plain_stack = all(type(layer.rnn) in (nn.LSTM, nn.GRU) and isinstance(layer.norm, nn.Identity)
                               and not layer.residual for layer in self.layers)
        self._rnns = [layer.rnn for layer in self.layers] if self.plain_stack else []
        spec = {"vocab_size": config.vocab_size, **config.head}
        self.head: Head = heads[spec["type"]](config.hidden_size, spec)

    def parameter_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        """Named groups from the bottom up: adapter (with the cond embedding), layer0.., head (with the
        attention), for discriminative learning rates, freezing and gradual unfreezing."""

        def params(*modules: nn.Module | None) -> list[nn.Parameter]:
            return [p for m in modules if m is not None for p in m.parameters()]

        return [
            ("adapter", params(self.adapter, self.cond_embedding)),
            *((f"layer{i}", params(layer)) for i, layer in enumerate(self.layers)),
            ("head", params(self.attention, self.head)),
        ]

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # Run a plain stack as one multi-layer call (``torch.lstm``/``torch.gru`` with every layer's weights):
    # None means off the CPU only (cuDNN fuses the layers on a GPU); on the CPU the per-layer path is as
    # fast (measured: 3x512, batch 32 x 128, within 1%) and gives the shipped styles' numbers bit for bit.
    fuse: bool | None = None

    def _stack_weights(self) -> list[Tensor]:
        """Every layer's (weight_ih, weight_hh, bias_ih, bias_hh), bottom up. A torch RNN module keeps its
        parameters in ``_flat_weights``, which it renews whenever one is replaced (``.to()``,
        ``load_state_dict(assign=True)``, assignment): reading that list instead of twelve attributes through
        the module machinery takes a tenth of a generation step's overhead at batch 1."""
        return [w for rnn in self._rnns for w in rnn._flat_weights]

    def flatten_parameters(self) -> None:
        """Re-pack cuDNN weights into one chunk: each layer's, and for a plain stack on a GPU all layers'
        together, as one multi-layer ``nn.LSTM`` holds them (otherwise cuDNN copies them on every call).
        `.to()` does it; call it after replacing weight tensors (e.g. `load_state_dict(..., assign=True)`)."""
        for m in self.modules():
            if isinstance(m, nn.RNNBase):
                m.flatten_parameters()
        if not self.plain_stack:
            return
        weights = self._stack_weights()
        first = weights[0]
        if not all(w.is_cuda and w.dtype == first.dtype and torch.backends.cudnn.is_acceptable(w) for w in weights):
            return
        if len({w.data_ptr() for w in weights}) != len(weights) or not torch._use_cudnn_rnn_flatten_weight():
            return
        import torch.backends.cudnn.rnn as cudnn_rnn

        with torch.cuda.device_of(first), torch.no_grad():
            # in place: every parameter becomes a view into one buffer laid out for cuDNN
            torch._cudnn_rnn_flatten_weight(
                weights, 4, self.layers[0].rnn.input_size, cudnn_rnn.get_cudnn_mode(self.config.cell.upper()),
                self.config.hidden_size, 0, len(self.layers), True, False)

    def _apply(self, fn: Callable, recurse: bool = True) -> SequenceModel:
        out = super()._apply(fn, recurse)
        if getattr(self, "plain_stack", False):
            self.flatten_parameters()
        return out

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The zero state (what `state=None` means)."""
        weight = next(self.parameters())
        device = weight.device if device is None else device
        size, n_tensors = self.config.hidden_size, 1 if self.config.cell == "gru" else 2
        layers = tuple(
            tuple(torch.zeros(batch_size, size, device=device, dtype=weight.dtype) for _ in range(n_tensors))
            for _ in self.layers
        )
        if self.attention is None:
            return State(layers)
        n = self.config.attention
        window = torch.zeros(batch_size, n, size, device=device, dtype=weight.dtype)
        return State(layers, window, torch.zeros(batch_size, n, dtype=torch.bool, device=device))

    whole_pieces = False  # a family that must see whole sequences (an autoencoder) sets this

    def forward(self, x: Tensor, targets: Tensor | None = None, state: State | None = None,
                cond: Tensor | None = None, mask: Tensor | None = None, latent: Tensor | None = None,
                metrics: bool = False) -> ModelOutput:
        """x: ids [B, T] or features [B, T, input_dim]; cond: class ids [B] or vectors [B, cond_size];
        mask [B, T]: positions that count in the loss (None: all); ``metrics``: also the head's metrics.
        ``latent`` is for families with a latent code; this one has none."""
        if latent is not None:
            raise ValueError("this model has no latent code (family 'rnn')")
        h, state = self._features(x, state, cond)
        output = self.head(self.dropout(h))
        if targets is None:
            return ModelOutput(output, state)
        loss_sum, count = self.head.loss(output, targets, mask)
        sums = self.head.metrics(output, targets, mask) if metrics else {}
        return ModelOutput(output, state, loss_sum / count.clamp(min=1), loss_sum, count, sums)

    def step(self, x_t: Tensor, state: State | None = None, cond: Tensor | None = None,
             latent: Tensor | None = None) -> tuple[Any, State]:
        """One time step: x_t ids [B] or features [B, input_dim] -> (head output for it, new state)."""
        if latent is not None:
            raise ValueError("this model has no latent code (family 'rnn')")
        if self.plain_stack and state is not None and not (self.training or torch.is_grad_enabled()) \
                and not _autocasting(x_t.device):
            h, state = self._step_cells(x_t, state, cond)
            return self.head.forward(h), state
        h, state = self._features(x_t[:, None], state, cond)
        return self.head(self.dropout(h[:, 0])), state

    def _step_cells(self, x_t: Tensor, state: State, cond: Tensor | None) -> tuple[Tensor, State]:
        """Generation's inner loop for a plain stack in eval mode: the per-layer path's cell kernels and
        numbers, without its per-call module machinery (which costs as much as the kernels at this size)."""
        h = self.adapter.forward(x_t)
        if (cond is None) != (self.config.cond_size == 0):
            raise ValueError(f"pass cond exactly when cond_size > 0 (this model: {self.config.cond_size})")
        if cond is not None:
            c = cond if self.cond_embedding is None else self.cond_embedding(cond)
            h = torch.cat([h, c.to(h.dtype)], -1)
        weights = self._stack_weights()
        h = h.to(weights[0].dtype)
        layer_states = []
        for i, layer_state in enumerate(state.layers):
            w = weights[4 * i: 4 * i + 4]
            if len(layer_state) == 1:
                h = torch.gru_cell(h, layer_state[0], *w)
                layer_states.append((h,))
            else:
                h, c_t = torch.lstm_cell(h, (layer_state[0], layer_state[1]), *w)
                layer_states.append((h, c_t))
        if self.attention is None:
            return h, State(tuple(layer_states))
        out, window, window_mask = self.attention(h[:, None], state.window, state.window_mask)
        return out[:, 0], State(tuple(layer_states), window, window_mask)

    def _features(self, x: Tensor, state: State | None, cond: Tensor | None) -> tuple[Tensor, State]:
        h = self.adapter(x)
        if (cond is None) != (self.config.cond_size == 0):
            raise ValueError(f"pass cond exactly when cond_size > 0 (this model: {self.config.cond_size})")
        if cond is not None:
            c = cond if self.cond_embedding is None else self.cond_embedding(cond)
            h = torch.cat([h, c.to(h.dtype)[:, None].expand(-1, h.shape[1], -1)], -1)
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        if self._fused(h):
            h, layer_states = self._run_stack(h, state.layers)
        else:
            layer_states = []
            for i, (layer, layer_state) in enumerate(zip(self.layers, state.layers, strict=True)):
                h, layer_state = layer(h if i == 0 else self.dropout(h), layer_state)
                layer_states.append(layer_state)
        if self.attention is None:
            return h, State(tuple(layer_states))
        h, window, window_mask = self.attention(h, state.window, state.window_mask)
        return h, State(tuple(layer_states), window, window_mask)

    def _fused(self, h: Tensor) -> bool:
        """Whether this input runs through the stack in one call; a single step without gradients keeps
        the per-layer cell kernels (generation), which are faster there."""
        if not getattr(self, "plain_stack", False) or (h.shape[1] == 1 and not torch.is_grad_enabled()):
            return False
        return h.device.type != "cpu" if self.fuse is None else self.fuse

    def _run_stack(self, h: Tensor, states: tuple[tuple[Tensor, ...], ...]) -> tuple[Tensor, list]:
        """The whole plain stack as one multi-layer call: the same weights and numbers as the per-layer path,
        with dropout between layers as there (``nn.LSTM``'s ``dropout``)."""
        weights = self._stack_weights()
        n, p = len(self.layers), self.dropout.p
        with torch.autocast("cpu", enabled=False):  # as RecurrentLayer: the CPU recurrence in the weights' dtype
            x = h.to(weights[0].dtype)
            h0 = torch.stack([s[0] for s in states])
            if self.config.cell == "gru":
                y, hn = torch.gru(x, h0, weights, True, n, p, self.training, False, True)
                return y, [(hn[i],) for i in range(n)]
            y, hn, cn = torch.lstm(x, (h0, torch.stack([s[1] for s in states])), weights, True, n, p,
                                   self.training, False, True)
            return y, [(hn[i], cn[i]) for i in range(n)]


# -------------------------------------------------------------------------------------- families

FamilyFactory = Callable[[ModelConfig, dict], nn.Module]


def build_model(config: ModelConfig, registry: Any = None) -> nn.Module:
    """The model a config describes, built by its registered family with the registry's heads."""
    if registry is None:
        from composer.plugins import get_registry

        registry = get_registry()
    if config.family not in registry.families:
        known = ", ".join(sorted(registry.families)) or "none"
        raise ValueError(f"invalid ModelConfig: unknown model family {config.family!r}; known: {known}")
    return registry.families[config.family](config, registry.heads)


@hookimpl
def register_model_families(register: Callable[[str, FamilyFactory], None]) -> None:
    """The core's families: ``rnn`` (the stacked recurrent model), ``vae`` (a bidirectional LSTM encoder
    to a latent code and this stack as its decoder, as in Sketch-RNN) and ``gibbs`` (DeepBach's model of each
    position given its past, its future and its step's other streams; :mod:`composer.gibbs`)."""
    register("rnn", lambda config, heads: SequenceModel(config, heads))

    def vae(config: ModelConfig, heads: dict) -> nn.Module:
        from composer.vae import SequenceVAE

        return SequenceVAE(config, heads)

    register("vae", vae)

    def gibbs(config: ModelConfig, heads: dict) -> nn.Module:
        from composer.gibbs import GibbsModel

        return GibbsModel(config, heads)

    register("gibbs", gibbs)
