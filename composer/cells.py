"""Custom recurrent cells that the fused kernels do not offer.

``DropoutLSTM``: an LSTM layer with recurrent dropout on the candidate update (Semeniuta, Severyn &
Barth, 2016, "Recurrent dropout without memory loss") and optional layer normalisation inside the cell
(Ba, Kiros & Hinton, 2016), as Sketch-RNN's ``LayerNormLSTMCell`` has them:

    i, f, g, o = LN_i(W x_t + U h), LN_f(...), LN_g(...), LN_o(...)      (without layer norm: W x_t + U h + b)
    c_t = sigmoid(f) * c + sigmoid(i) * dropout(tanh(g))
    h_t = sigmoid(o) * tanh(LN_c(c_t))                                   (without layer norm: tanh(c_t))

Dropping only the candidate ``g`` never erases what the cell already remembers, so the dropout can be
applied at every step. A fresh mask is drawn for every step (as Sketch-RNN's cell does), scaled by
1 / (1 - p) in training; in eval mode nothing is dropped.

Without layer norm the parameters have nn.LSTM's names, shapes and gate order (i, f, g, o), so the
weights of a single-layer ``nn.LSTM`` load into it unchanged (and back), and with ``recurrent_dropout``
0 or in eval mode it computes the same numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DropoutLSTM"]


class DropoutLSTM(nn.Module):
    """One LSTM layer with recurrent dropout and optional in-cell layer norm. Called like
    nn.LSTM(batch_first=True): x [B, T, input], (h, c) each [1, B, hidden] -> (y [B, T, hidden], (h, c))."""

    def __init__(self, input_size: int, hidden_size: int, recurrent_dropout: float = 0.0, layer_norm: bool = False):
        super().__init__()
        if not 0 <= recurrent_dropout < 1:
            raise ValueError(f"recurrent_dropout must be in [0, 1), got {recurrent_dropout}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.recurrent_dropout, self.layer_norm = recurrent_dropout, layer_norm
        self.weight_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size, input_size))  # gates i, f, g, o
        self.weight_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        if layer_norm:
            # each gate's pre-activation is normalised on its own, then scaled and shifted; the shift
            # plays the bias's part (the forget gate's starts at 1, Sketch-RNN's forget_bias)
            self.gate_norm_weight = nn.Parameter(torch.ones(4, hidden_size))
            self.gate_norm_bias = nn.Parameter(torch.zeros(4, hidden_size))
            self.cell_norm = nn.LayerNorm(hidden_size)
        else:
            self.bias_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size))
            self.bias_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)  # nn.LSTM's initialisation
        for name, p in self.named_parameters(recurse=False):
            if name.endswith("_l0"):
                nn.init.uniform_(p, -bound, bound)
        if self.layer_norm:
            nn.init.ones_(self.gate_norm_weight)
            with torch.no_grad():
                self.gate_norm_bias.zero_()
                self.gate_norm_bias[1] = 1.0
            self.cell_norm.reset_parameters()

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, recurrent_dropout={self.recurrent_dropout}, "
                f"layer_norm={self.layer_norm}")

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c = hx[0][0], hx[1][0]
        steps, hidden = x.shape[1], self.hidden_size
        # the input projection for every step at once (with both biases: they only ever appear summed)
        bias = None if self.layer_norm else self.bias_ih_l0 + self.bias_hh_l0
        x_gates = F.linear(x, self.weight_ih_l0, bias)
        w_hh = self.weight_hh_l0.t()
        p = self.recurrent_dropout if self.training else 0.0
        masks = None
        if p > 0:  # one mask per step and row, drawn at once: [T, B, hidden]
            keep = torch.full((steps, x.shape[0], hidden), 1 - p, dtype=x_gates.dtype, device=x.device)
            masks = torch.bernoulli(keep).div_(1 - p)
        outputs = []
        for t, x_t in enumerate(x_gates.unbind(1)):
            pre = torch.addmm(x_t, h, w_hh)
            if self.layer_norm:
                pre = F.layer_norm(pre.unflatten(1, (4, hidden)), (hidden,))
                pre = (pre * self.gate_norm_weight + self.gate_norm_bias).flatten(1)
            i, f, g, o = pre.chunk(4, dim=1)
            g = torch.tanh(g)
            if masks is not None:
                g = g * masks[t]
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * g
            h = torch.sigmoid(o) * torch.tanh(self.cell_norm(c) if self.layer_norm else c)
            outputs.append(h)
        if not outputs:
            return x.new_zeros(x.shape[0], 0, hidden), (h[None], c[None])
        return torch.stack(outputs, 1), (h[None], c[None])
