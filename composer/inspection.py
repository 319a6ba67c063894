"""A look inside a recurrent model, after Karpathy, Johnson & Fei-Fei (2015), "Visualizing and understanding
recurrent networks": run a sequence through the model teacher-forced (the whole sequence as input), record
every layer's hidden state h, cell state c and gate activations at every step, find the cells whose
activation follows properties the encoder names (``Encoder.properties``: "inside quotes", "position in
bar", ...) and measure how often each gate is saturated.

    import composer
    irish = composer.load("irish")
    seen = irish.inspect(prime="X:1\\nT:A Reel\\nM:4/4\\nL:1/8\\nK:D\\n|:dfaf ...")
    seen.top(3)                      # property -> the 3 cells most correlated with it (layer, cell, r)
    png = seen.picture()             # a PNG (bytes): the cells over the input, the properties, gate saturation

The gates are recomputed from each layer's weights (gate order i, f, g, o as ``nn.LSTM`` keeps them;
r, z, n for a GRU) on the same inputs the layer sees; :func:`capture` checks that the recomputed states end
where the model's own forward pass does. Correlations use the cell state c of LSTM layers (the memory,
which follows counters linearly where h = o * tanh(c) is squashed and gated) and h of GRU layers (they
have no c); ``state="h"`` picks h everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from composer.api import ComposerError, Encoder
from composer.cells import DropoutLSTM

__all__ = ["MAX_STEPS", "Correlated", "Inspection", "LayerTrace", "capture", "correlate", "inspect_sequence",
           "inspect_session"]

MAX_STEPS = 2000  # positions read at most: [steps, hidden] per layer and gate stays a few MB
LOW, HIGH = 0.1, 0.9  # a gate below LOW is left-saturated (shut), above HIGH right-saturated (open)
AGREE = 1e-3  # largest difference allowed between the recomputed final states and the model's


@dataclass
class LayerTrace:
    """One layer's activity over a sequence: arrays [steps, hidden] (float32)."""

    cell: str  # "lstm" (nn.LSTM or DropoutLSTM), "peephole" or "gru"
    h: np.ndarray  # the hidden state (the layer's output before a residual sum or layer norm)
    c: np.ndarray | None  # the cell state (LSTM cells; None for a GRU)
    gates: dict[str, np.ndarray]  # "input", "forget", "output" (LSTM) or "reset", "update" (GRU), in (0, 1)

    def saturation(self, low: float = LOW, high: float = HIGH) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per gate, each cell's fraction of steps left-saturated (< low) and right-saturated (> high)."""
        return {name: ((g < low).mean(0), (g > high).mean(0)) for name, g in self.gates.items()}


@dataclass(frozen=True)
class Correlated:
    """A cell whose activation follows a property: Pearson's r over the positions where it is defined."""

    property: str
    layer: int
    cell: int
    r: float

    def __str__(self) -> str:
        return f"layer {self.layer} cell {self.cell} r={self.r:+.2f}"


# ----------------------------------------------------------------------------------- capture


def _lstm(x: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor | None, peephole: Tensor | None = None,
          norm: DropoutLSTM | None = None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """An LSTM over x [T, input] from the zero state, step by step, keeping h, c and the gates [T, hidden]."""
    steps, hidden = x.shape[0], w_hh.shape[1]
    x_gates = F.linear(x, w_ih, bias)
    h, c = x.new_zeros(hidden), x.new_zeros(hidden)
    out = {name: x.new_empty(steps, hidden) for name in ("h", "c", "input", "forget", "output")}
    for t in range(steps):
        pre = x_gates[t] + w_hh @ h
        if norm is not None:  # DropoutLSTM's in-cell layer norm: each gate's pre-activation on its own
            pre = F.layer_norm(pre.view(4, hidden), (hidden,)) * norm.gate_norm_weight + norm.gate_norm_bias
            pre = pre.flatten()
        i, f, g, o = pre.chunk(4)
        if peephole is not None:  # Gers et al.: i and f see c_{t-1}, o sees c_t
            i, f = i + peephole[0] * c, f + peephole[1] * c
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
        c = f * c + i * g
        if peephole is not None:
            o = o + peephole[2] * c
        o = torch.sigmoid(o)
        h = o * torch.tanh(norm.cell_norm(c) if norm is not None else c)
        for name, value in (("h", h), ("c", c), ("input", i), ("forget", f), ("output", o)):
            out[name][t] = value
    return out.pop("h"), out.pop("c"), out


def _gru(x: Tensor, rnn: nn.GRU) -> tuple[Tensor, dict[str, Tensor]]:
    """A GRU (torch's equations) over x [T, input] from the zero state, keeping h and the r, z gates."""
    steps, hidden = x.shape[0], rnn.hidden_size
    x_gates = F.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0)
    h = x.new_zeros(hidden)
    out = {name: x.new_empty(steps, hidden) for name in ("h", "reset", "update")}
    for t in range(steps):
        xr, xz, xn = x_gates[t].chunk(3)
        hr, hz, hn = (rnn.weight_hh_l0 @ h + rnn.bias_hh_l0).chunk(3)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        h = (1 - z) * torch.tanh(xn + r * hn) + z * h
        out["h"][t], out["reset"][t], out["update"][t] = h, r, z
    return out.pop("h"), out


def _trace(rnn: nn.Module, x: Tensor) -> tuple[LayerTrace, Tensor]:
    """A layer's trace and its outputs h [T, hidden] (as a tensor, for the layer above)."""
    from composer.model import PeepholeLSTM

    if isinstance(rnn, nn.LSTM) or (isinstance(rnn, DropoutLSTM) and not rnn.layer_norm):
        if rnn.bias_ih_l0 is None or getattr(rnn, "num_layers", 1) != 1 or getattr(rnn, "proj_size", 0):
            raise ComposerError("inspect reads single-layer nn.LSTM layers with biases and no projection")
        h, c, gates = _lstm(x, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0 + rnn.bias_hh_l0)
        cell = "lstm"
    elif isinstance(rnn, DropoutLSTM):
        h, c, gates = _lstm(x, rnn.weight_ih_l0, rnn.weight_hh_l0, None, norm=rnn)
        cell = "lstm"
    elif isinstance(rnn, PeepholeLSTM):
        h, c, gates = _lstm(x, rnn.weight_ih, rnn.weight_hh, rnn.bias, peephole=rnn.peephole)
        cell = "peephole"
    elif isinstance(rnn, nn.GRU):
        (h, gates), c, cell = _gru(x, rnn), None, "gru"
    else:
        raise ComposerError(f"inspect cannot look inside a {type(rnn).__name__} layer (it reads LSTM, "
                            "peephole LSTM and GRU layers)")
    arrays = {name: g.float().cpu().numpy() for name, g in gates.items()}
    return LayerTrace(cell, h.float().cpu().numpy(), None if c is None else c.float().cpu().numpy(), arrays), h


def _model_inputs(model: nn.Module, tokens: Any) -> Tensor:
    device = next(model.parameters()).device
    if model.config.input == "tokens":
        return torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=device)[None]
    return torch.as_tensor(np.asarray(tokens, dtype=np.float32), device=device)[None]


def check_model(model: nn.Module) -> None:
    """Raise ComposerError unless ``model`` is a stacked recurrent model (family ``rnn``) inspect can read."""
    from composer.model import SequenceModel

    if not isinstance(model, SequenceModel):
        family = getattr(getattr(model, "config", None), "family", type(model).__name__)
        raise ComposerError(f"inspect looks inside the stacked recurrent model (family 'rnn'); this model is "
                            f"family '{family}'")


@torch.no_grad()
def capture(model: nn.Module, tokens: Any, cond: Any = None) -> list[LayerTrace]:
    """Every layer's h, c and gates at every position of ``tokens`` (ids [T], or feature rows [T, D]) read
    by ``model`` (a :class:`composer.model.SequenceModel`) from its zero state, as in generation; ``cond``:
    a class id or conditioning vector for a conditioned model. Raises ComposerError if the recomputed final
    states differ from the model's own (a layer this module does not understand)."""
    check_model(model)
    was_training = model.training
    model.eval()
    try:
        x = _model_inputs(model, tokens)
        if cond is not None:
            cond = torch.as_tensor(cond, device=x.device)
            cond = cond.reshape(1) if cond.dtype == torch.long or cond.dim() == 0 else cond.reshape(1, -1)
        h = model.adapter(x)
        if cond is not None:
            c = cond if model.cond_embedding is None else model.cond_embedding(cond)
            h = torch.cat([h, c.to(h.dtype)[:, None].expand(-1, h.shape[1], -1)], -1)
        traces = []
        for layer in model.layers:
            inp = h[0].to(next(layer.rnn.parameters()).dtype)
            trace, y = _trace(layer.rnn, inp)
            traces.append(trace)
            if layer.residual:
                y = y + inp
            h = layer.norm(y)[None]
        own = model(x, cond=cond).state.layers
    finally:
        model.train(was_training)
    for index, (trace, layer_state) in enumerate(zip(traces, own)):
        mine = [trace.h[-1]] + ([] if trace.c is None else [trace.c[-1]])
        for ours, theirs in zip(mine, layer_state):
            gap = float(np.abs(ours - theirs[0].float().cpu().numpy()).max())
            if not gap <= AGREE * max(1.0, float(np.abs(ours).max())):
                raise ComposerError(f"inspect: the recomputed states of layer {index} differ from the model's by "
                                    f"{gap:.2g}; this layer type is not one inspect understands")
    return traces


# ------------------------------------------------------------------------------- correlation


def correlate(activations: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pearson's r of each column of ``activations`` [T, N] with ``values`` [T], over the positions where
    ``values`` is finite; NaN for a column (or a property) that does not vary there."""
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    r = np.full(activations.shape[1], np.nan)
    if keep.sum() < 3:
        return r
    a = activations[keep].astype(np.float64)
    v = values[keep]
    a -= a.mean(0)
    v = v - v.mean()
    spread = np.sqrt((a * a).sum(0) * (v * v).sum())
    moving = spread > 1e-12
    r[moving] = (a[:, moving] * v[:, None]).sum(0) / spread[moving]
    return r


# ------------------------------------------------------------------------------- inspection


@dataclass
class Inspection:
    """What a model did over one sequence: every layer's trace, the encoder's properties of each position,
    and a label per position (``tokens[0]`` is the start token where the encoder has one)."""

    tokens: list
    layers: list[LayerTrace]
    properties: dict[str, np.ndarray] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    marks: dict[int, str] = field(default_factory=dict)  # positions worth a line on the time axis
    left_out: int = 0  # positions beyond MAX_STEPS that were not read
    title: str = ""
    state: str = "c"  # what correlations use: "c" (LSTM cell state; h for GRU layers) or "h"

    @property
    def steps(self) -> int:
        return len(self.tokens)

    @property
    def hidden_size(self) -> int:
        return self.layers[0].h.shape[1]

    def activation(self, layer: int) -> np.ndarray:
        """The activations [steps, hidden] of a layer that correlations and pictures use."""
        trace = self.layers[layer]
        return trace.c if self.state == "c" and trace.c is not None else trace.h

    def state_name(self) -> str:
        kinds = {"c" if self.state == "c" and t.c is not None else "h" for t in self.layers}
        return " and ".join(sorted(kinds, key="ch".index))

    def correlations(self) -> dict[str, np.ndarray]:
        """Property -> Pearson's r [layers, hidden] of every cell; properties that do not vary are left out.
        Computed once (from the properties and state as they are then)."""
        return dict(self._correlations)

    @cached_property
    def _correlations(self) -> dict[str, np.ndarray]:
        found = {}
        for name, values in self.properties.items():
            r = np.stack([correlate(self.activation(i), values) for i in range(len(self.layers))])
            if np.isfinite(r).any():
                found[name] = r
        return found

    def constant(self) -> list[str]:
        """Properties that do not vary over this sequence (no correlation to find)."""
        return [name for name in self.properties if name not in self.correlations()]

    def top(self, k: int = 3, layer: int | None = None) -> dict[str, list[Correlated]]:
        """Property -> its ``k`` most correlated cells (largest |r| first), of one ``layer`` or all."""
        best = {}
        for name, r in self.correlations().items():
            if layer is not None:
                r = np.where(np.arange(len(self.layers))[:, None] == layer, r, np.nan)
            flat = np.nan_to_num(np.abs(r), nan=-1.0).ravel()
            order = np.argsort(-flat, kind="stable")[:k]
            best[name] = [Correlated(name, int(i // r.shape[1]), int(i % r.shape[1]), float(r.flat[i]))
                          for i in order if flat[i] >= 0]
        return best

    def chosen(self, n: int = 8, layer: int | None = None) -> list[Correlated]:
        """``n`` cells to show: each property's best cell in turn, then each one's second best, and so on,
        each cell once."""
        ranked = list(self.top(n, layer).values())
        seen, chosen = set(), []
        for rank in range(n):
            for cells in ranked:
                if rank < len(cells) and (cells[rank].layer, cells[rank].cell) not in seen and len(chosen) < n:
                    seen.add((cells[rank].layer, cells[rank].cell))
                    chosen.append(cells[rank])
        return chosen

    def strongest(self, layer: int, cell: int) -> Correlated | None:
        """The property one cell follows most closely (largest |r|), or None where no property varies."""
        if not (0 <= layer < len(self.layers) and 0 <= cell < self.hidden_size):
            raise ComposerError(f"no cell {layer}:{cell}: layers 0..{len(self.layers) - 1}, "
                                f"cells 0..{self.hidden_size - 1}")
        found = [Correlated(name, layer, cell, float(r[layer, cell])) for name, r in self.correlations().items()
                 if np.isfinite(r[layer, cell])]
        return max(found, key=lambda c: abs(c.r), default=None)

    def liveliest(self, n: int = 8, layer: int | None = None) -> list[tuple[int, int]]:
        """The ``n`` cells (layer, cell) whose activation varies most (for an encoder that names no properties)."""
        spread = np.stack([self.activation(i).std(0) for i in range(len(self.layers))])
        if layer is not None:
            spread = np.where(np.arange(len(self.layers))[:, None] == layer, spread, -1.0)
        order = np.argsort(-spread.ravel(), kind="stable")[:n]
        return [(int(i // spread.shape[1]), int(i % spread.shape[1])) for i in order if spread.flat[i] >= 0]

    def saturation(self) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Per layer and gate, each cell's left- and right-saturated fractions (see LayerTrace.saturation)."""
        return [trace.saturation() for trace in self.layers]

    def report(self, k: int = 3, layer: int | None = None) -> dict[str, Any]:
        """A JSON-safe summary: sizes, the top cells per property, mean gate saturation per layer."""
        return {
            "title": self.title,
            "steps": self.steps,
            "left_out": self.left_out,
            "layers": [{"cell": t.cell, "hidden": int(t.h.shape[1])} for t in self.layers],
            "state": self.state_name(),
            "top": {name: [{"layer": c.layer, "cell": c.cell, "r": round(c.r, 4)} for c in cells]
                    for name, cells in self.top(k, layer).items()},
            "constant": self.constant(),
            "saturation": [{gate: {"left": float(left.mean()), "right": float(right.mean())}
                            for gate, (left, right) in sat.items()} for sat in self.saturation()],
        }

    def picture(self, cells: list[tuple[int, int]] | int = 8, layer: int | None = None,
                path: str | Path | None = None) -> bytes:
        """A PNG (returned, and written to ``path`` when given): the chosen cells over the sequence (a number:
        that many of the most correlated; or (layer, cell) pairs), the properties under them, gate saturation
        per layer, and for character models the text coloured by the best cells. Needs matplotlib."""
        from composer.inspection_plot import draw

        if isinstance(cells, int):
            shown = [(c.layer, c.cell, c) for c in self.chosen(cells, layer)] or \
                [(lay, cell, None) for lay, cell in self.liveliest(cells, layer)]
        else:
            shown = [(int(lay), int(cell), self.strongest(int(lay), int(cell))) for lay, cell in cells]
        png = draw(self, shown)
        if path is not None:
            Path(path).write_bytes(png)
        return png


def inspect_sequence(model: nn.Module, tokens: Any, encoder: Encoder | None = None, *, cond: Any = None,
                     max_steps: int = MAX_STEPS, state: str = "c", title: str = "") -> Inspection:
    """Run ``tokens`` (as the model reads them: the start token first) through ``model`` teacher-forced and
    collect what :class:`Inspection` holds; only the first ``max_steps`` positions are read (``left_out``
    says how many were not). ``encoder`` supplies the properties, labels and time marks."""
    if state not in ("c", "h"):
        raise ComposerError(f"state must be 'c' or 'h', got {state!r}")
    if max_steps < 2:
        raise ComposerError(f"max_steps must be at least 2, got {max_steps}")
    tokens = [int(t) for t in tokens] if model.config.input == "tokens" else list(np.asarray(tokens))
    left_out = max(0, len(tokens) - max_steps)
    tokens = tokens[:max_steps]
    if len(tokens) < 2:
        raise ComposerError("nothing to inspect: the primer holds no tokens")
    traces = capture(model, tokens, cond)
    properties: dict[str, np.ndarray] = {}
    labels = [str(t) if isinstance(t, int) else "" for t in tokens]
    marks: dict[int, str] = {}
    if encoder is not None:
        for name, values in encoder.properties(tokens).items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (len(tokens),):
                raise ComposerError(f"encoder '{encoder.name}': property {name!r} has {values.shape} values for "
                                    f"{len(tokens)} tokens; it needs one per token")
            properties[name] = values
        labels = list(encoder.token_labels(tokens))
        marks = {int(t): str(label) for t, label in encoder.time_marks(tokens).items() if 0 <= int(t) < len(tokens)}
    return Inspection(tokens, traces, properties, labels, marks, left_out, title, state)


def inspect_session(session: Any, primer: Any = None, *, prime: str | None = None, max_steps: int = MAX_STEPS,
                    state: str = "c") -> Inspection:
    """Inspect a loaded style (:class:`composer.session.Session`) on a primer: a file (Path) or an item
    (a PrettyMIDI, a str), or ``prime`` text for an encoder that takes the ``prime`` request (char, abc;
    ``\\n`` in it stands for a newline). The model reads the start token, then the primer's tokens."""
    encoder = session.encoder
    if (primer is None) == (prime is None):
        raise ComposerError("give a primer to inspect: a file (--primer FILE) or text (--prime TEXT), one of them")
    check_model(session.model)
    if session.labels:
        raise ComposerError(f"{session.name} is conditioned on labels; inspect reads unconditioned models")
    if prime is not None:
        if "prime" not in encoder.generation_options:
            raise ComposerError(f"{session.name} is a {encoder.modality or encoder.name} model: text (--prime) is "
                                "for text styles; give a file with --primer FILE")
        tokens = list(encoder.generation_plan(prime=prime).primer)
    else:
        tokens = list(session.primer(primer))
    if encoder.bos is not None and not encoder.input_dim:
        tokens = [encoder.bos, *tokens]
    elif encoder.bos is not None:
        tokens = [np.asarray(encoder.bos, dtype=np.float32), *tokens]
    config = session.model.config
    title = f"{session.name} ({config.layers} x {config.hidden_size} {config.cell})"
    return inspect_sequence(session.model, tokens, encoder, max_steps=max_steps, state=state, title=title)
