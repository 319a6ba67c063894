"""Section ``train``: training tokens/s of composer's model and training step against a bare
``nn.Embedding + nn.LSTM(num_layers=L) + nn.Linear + AdamW`` loop of the same shape, in the same process,
alternating step by step.

Composer's step is what ``composer.training.Trainer`` does for each batch, replicated here (the benchmark
does not change composer/): the window moved to the device, rows that start a piece reset, the learning
rate set from the warm-up and cosine schedule on every parameter group, the forward pass with targets
and mask under ``composer.training.autocast``, ``zero_grad``, the GradScaler's scale / unscale (enabled
for fp16 only), gradient clipping, the optimizer step, and the loss and token count read back. The bare
loop does what a char-rnn script does: forward, cross-entropy, backward, clipping, AdamW (with a
GradScaler for fp16).

On the CPU both run on one thread unless ``--threads`` says otherwise: on a machine shared with other work,
OpenMP threads wait for each other whenever one of them is descheduled, and steps of the same loop then
vary twentyfold (measured here with two threads on two busy cores: 2x256 steps from 0.036 to 0.80 s), while
one thread's steps stay within a few percent. The ratio measures what composer's step costs beyond the bare
loop's, which the thread count changes on both sides alike.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.suite.common import Measure, Section, at_least, median, timed_alternately

TARGET = 0.95  # composer's tokens/s over the bare loop's


class BareLSTM(nn.Module):
    """Embedding, one multi-layer ``nn.LSTM`` (the fused kernel; cuDNN on a GPU), a linear output."""

    def __init__(self, vocab: int, emb: int, hidden: int, layers: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x, y, state):
        h, state = self.lstm(self.emb(x), state)
        logits = self.out(h)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1)), state


class ComposerStep:
    """One optimizer step of ``composer.training.Trainer`` (fp32/bf16/fp16, any device), on composer's model."""

    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, device: torch.device, precision: str,
                 total_steps: int, lr: float = 2e-3, warmup_steps: int = 100, min_lr_ratio: float = 0.1,
                 weight_decay: float = 0.01, clip: float = 1.0):
        from composer.model import ModelConfig, SequenceModel

        self.device, self.precision, self.total_steps = device, precision, total_steps
        self.lr, self.warmup_steps, self.min_lr_ratio, self.clip = lr, warmup_steps, min_lr_ratio, clip
        config = ModelConfig(vocab_size=vocab, embedding_size=emb, hidden_size=hidden, layers=layers)
        self.model = SequenceModel(config).to(device)
        groups = []
        for depth, (name, params) in enumerate(reversed(self.model.parameter_groups())):
            scale = 1.0 ** depth  # layer_lr_decay 1: every group at the full rate, as by default
            groups.append({"params": params, "name": name, "lr": lr * scale, "scale": scale})
        self.optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.state = None
        self.step = 0
        self.model.train()

    def __call__(self, window: torch.Tensor, mask: torch.Tensor, restart: torch.Tensor) -> int:
        from composer.model import detach_state, reset_rows
        from composer.training import autocast, lr_factor

        model, optimizer, scaler, device = self.model, self.optimizer, self.scaler, self.device
        batch = window.to(device, non_blocking=True)
        batch = batch if batch.is_floating_point() else batch.long()
        x, y, m = batch[:, :-1], batch[:, 1:], mask[:, 1:].to(device, non_blocking=True)
        if self.state is not None:
            self.state = reset_rows(self.state, restart.to(device))
        if hasattr(model, "set_progress"):
            model.set_progress(self.step)
        factor = lr_factor(self.step, self.total_steps, self.warmup_steps, self.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = self.lr * group["scale"] * factor
        with autocast(device, self.precision):
            out = model(x, targets=y, state=self.state, mask=m)
        self.state = detach_state(out.state)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out.loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
        scaler.step(optimizer)
        scaler.update()
        self.step += 1
        loss = float(out.loss.detach())
        if loss != loss:
            raise RuntimeError("composer's loss is nan")
        return int(m.sum())


class BareStep:
    """One optimizer step of the bare loop, at the same precision (autocast for bf16/fp16, a GradScaler
    for fp16)."""

    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, device: torch.device, precision: str,
                 lr: float = 2e-3, clip: float = 1.0):
        self.device, self.precision, self.clip = device, precision, clip
        self.model = BareLSTM(vocab, emb, hidden, layers).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.state = None

    def __call__(self, window: torch.Tensor) -> None:
        batch = window.to(self.device, non_blocking=True).long()
        x, y = batch[:, :-1], batch[:, 1:]
        if self.precision == "fp32":
            context = nullcontext()
        else:
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            context = torch.autocast(self.device.type, dtype=dtype)
        with context:
            loss, state = self.model(x, y, self.state)
        self.state = tuple(s.detach() for s in state)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        float(loss.detach())


def compare(layers: int, hidden: int, *, batch: int, seq_len: int, steps: int, warmup: int, vocab: int = 128,
            emb: int = 128, device: torch.device | str = "cpu", precision: str = "fp32", seed: int = 0) -> dict:
    """Composer's step against the bare one, alternating: tokens/s of each from its fastest step (and from
    the median step), their ratios, and every step's seconds."""
    device = torch.device(device)
    torch.manual_seed(seed)
    ours = ComposerStep(vocab, emb, hidden, layers, device, precision, total_steps=warmup + steps)
    bare = BareStep(vocab, emb, hidden, layers, device, precision)
    data = torch.randint(0, vocab, (warmup + steps, batch, seq_len + 1), dtype=torch.int32)
    mask = torch.ones(batch, seq_len + 1, dtype=torch.bool)
    restart = torch.zeros(batch, dtype=torch.bool)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    times = timed_alternately({"ours": lambda i: ours(data[i], mask, restart), "bare": lambda i: bare(data[i])},
                              rounds=steps, warmup=warmup, sync=sync)
    tokens = batch * seq_len
    ours_s, bare_s = min(times["ours"]), min(times["bare"])
    return {"shape": f"{layers}x{hidden}", "batch": batch, "seq_len": seq_len, "precision": precision,
            "ours_tok_s": tokens / ours_s, "bare_tok_s": tokens / bare_s, "ratio": bare_s / ours_s,
            "median_ratio": median(times["bare"]) / median(times["ours"]),
            "ours_step_s": [round(t, 4) for t in times["ours"]], "bare_step_s": [round(t, 4) for t in times["bare"]]}


def run(section: Section, sizes: dict) -> None:
    threads = sizes.get("threads") or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        batch, seq_len = sizes["batch"], sizes["seq_len"]
        section.settings = {"batch": batch, "seq_len": seq_len, "vocab": 128, "embedding": 128, "threads": threads,
                            "precision": "fp32", "device": "cpu",
                            "shapes": {s.label: {"steps": s.steps, "warmup": s.warmup} for s in sizes["shapes"]},
                            "statistic": "tokens/s from each loop's fastest step (steps alternate ours / bare); "
                                         "ratio = composer tokens/s / bare tokens/s; the ratio of median steps "
                                         "is recorded too"}
        section.say(f"batch {batch} x {seq_len} tokens, {threads} threads, fp32; steps alternate ours / bare")
        rows = []
        for shape in sizes["shapes"]:
            r = compare(shape.layers, shape.hidden, batch=batch, seq_len=seq_len, steps=shape.steps,
                        warmup=shape.warmup)
            rows.append([shape.label, f"{r['ours_tok_s']:,.0f}", f"{r['bare_tok_s']:,.0f}", f"{r['ratio']:.3f}",
                         f"{r['median_ratio']:.3f}", shape.steps])
            section.add(Measure(f"{shape.label} tokens/s, composer / bare nn.LSTM", r["ratio"], "ratio",
                                f">= {TARGET:.2f}", at_least(r["ratio"], TARGET),
                                note=f"{r['ours_tok_s']:,.0f} / {r['bare_tok_s']:,.0f} tok/s",
                                detail={k: v for k, v in r.items() if k != "shape"}))
        section.table("Training tokens/s (CPU, fp32)",
                      ["shape", "composer tok/s", "bare tok/s", "ratio", "ratio of medians", "timed steps"],
                      rows)
    finally:
        torch.set_num_threads(before)
