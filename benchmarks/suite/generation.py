"""Section ``generate``: generation tokens/s of composer's generation against a bare carried-state loop,
and the time per step as the sequence grows.

Composer's side is ``composer.generate.generate`` with the shipped ``bach`` checkpoint (loaded with
``composer.checkpoint.load_model``) and the registry's ``ancestral`` sampler at its defaults; the start
token is the encoder's, and no end token is honoured, so every run makes exactly the asked number of
steps. The bare loop uses the same weights: per step an embedding lookup, ``torch.lstm_cell`` for each
layer with the state carried, a linear layer, softmax and ``torch.multinomial``. Both run under
``composer.generate.generation_threads`` (on the CPU one thread unless COMPOSER_THREADS or OMP_NUM_THREADS
says otherwise), and the runs alternate ours / bare.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from benchmarks.suite.common import Measure, Section, at_least, at_most, median

TARGET = 0.90  # composer's tokens/s over the bare loop's
FLAT = 1.2  # the last bucket's ms/step over the first's
BUCKETS = ((1, 64), (64, 256), (256, 1024))  # steps [a, b)


class StepClock:
    """Composer's model, passed through, with a clock read at every ``step`` call (one per new token)."""

    def __init__(self, model) -> None:
        self._model = model
        self.marks: list[float] = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __call__(self, *args, **kwargs):
        return self._model(*args, **kwargs)

    def step(self, *args, **kwargs):
        self.marks.append(time.perf_counter())
        return self._model.step(*args, **kwargs)


def load_bach(device: torch.device | str = "cpu"):
    from composer.checkpoint import load_model
    from composer.plugins import get_registry

    registry = get_registry()
    model, encoder, meta = load_model(registry.style("bach").checkpoint, registry, device)
    return registry, model, encoder, meta


def ours(model, encoder, sampler, *, batch: int, tokens: int, seed: int, device: torch.device) -> tuple[float, list]:
    """Seconds for composer's generation of ``batch`` x ``tokens`` and the clock at each step."""
    from composer.generate import generate

    clock = StepClock(model)
    stub = SimpleNamespace(bos=encoder.bos, eos=None)  # the encoder's start token; no end: a fixed length
    sync(device)
    start = time.perf_counter()
    results = generate(clock, stub, sampler, n=batch, max_tokens=tokens, seed=seed, device=device,
                       options=sampler.options())
    sync(device)
    seconds = time.perf_counter() - start
    assert len(results) == batch and all(r.new_tokens == tokens for r in results), "a run stopped early"
    return seconds, clock.marks


def bare(model, bos: int, *, batch: int, tokens: int, seed: int, device: torch.device) -> tuple[float, list]:
    """Seconds for the bare loop with composer's weights: embedding, lstm_cell per layer, linear, softmax,
    multinomial; the clock at each step."""
    from composer.generate import generation_threads

    embedding = model.adapter.weight.detach()
    layers = [tuple(w.detach() for w in (layer.rnn.weight_ih_l0, layer.rnn.weight_hh_l0, layer.rnn.bias_ih_l0,
                                         layer.rnn.bias_hh_l0)) for layer in model.layers]
    out_w, out_b = model.head.proj.weight.detach(), model.head.proj.bias.detach()
    hidden = model.config.hidden_size
    marks: list[float] = []
    sync(device)
    start = time.perf_counter()
    with torch.no_grad(), generation_threads(device):
        generator = torch.Generator(device=device).manual_seed(seed)
        h = [torch.zeros(batch, hidden, device=device) for _ in layers]
        c = [torch.zeros(batch, hidden, device=device) for _ in layers]
        x = torch.full((batch,), bos, dtype=torch.long, device=device)
        chosen = []
        for _ in range(tokens):
            marks.append(time.perf_counter())
            inp = F.embedding(x, embedding)
            for k, weights in enumerate(layers):
                h[k], c[k] = torch.lstm_cell(inp, (h[k], c[k]), *weights)
                inp = h[k]
            probs = torch.softmax(F.linear(inp, out_w, out_b), -1)
            x = torch.multinomial(probs, 1, generator=generator)[:, 0]
            chosen.append(x)
        torch.stack(chosen, 1).cpu()
    sync(device)
    return time.perf_counter() - start, marks[1:]  # the first mark is before the first token (ours has none)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def buckets(marks: list[float], edges=BUCKETS, statistic=median) -> list[float | None]:
    """ms per step over steps [a, b) from the clock read at each step (step k lasts marks[k] - marks[k-1]): the
    median step of each bucket (``statistic``), which a busy machine's interruptions move least."""
    steps = intervals(marks)  # steps[k - 1]: from mark k - 1 to mark k
    out = []
    for a, b in edges:
        part = steps[a - 1: b - 1]
        out.append(1000 * statistic(part) if part else None)
    return out


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@torch.no_grad()
def model_steps(model, bos: int, *, batch: int, steps: int, device: torch.device) -> dict:
    """Where the time goes: ``steps`` calls of composer's ``model.step`` alone (the same token fed back,
    no sampler) against the bare loop's cell stack alone (embedding, lstm_cell per layer, linear), best of 3
    alternating rounds; ms per step."""
    from composer.generate import generation_threads

    weights = [tuple(w.detach() for w in (layer.rnn.weight_ih_l0, layer.rnn.weight_hh_l0, layer.rnn.bias_ih_l0,
                                          layer.rnn.bias_hh_l0)) for layer in model.layers]
    embedding, out_w, out_b = model.adapter.weight, model.head.proj.weight, model.head.proj.bias
    x = torch.full((batch,), bos, dtype=torch.long, device=device)
    best = {"model.step": float("inf"), "bare cells": float("inf")}
    with generation_threads(device):
        for _ in range(3):
            sync(device)
            start = time.perf_counter()
            state = None
            for _ in range(steps):
                _, state = model.step(x, state)
            sync(device)
            best["model.step"] = min(best["model.step"], time.perf_counter() - start)
            start = time.perf_counter()
            h = [torch.zeros(batch, model.config.hidden_size, device=device) for _ in weights]
            c = [torch.zeros_like(t) for t in h]
            for _ in range(steps):
                inp = F.embedding(x, embedding)
                for k, w in enumerate(weights):
                    h[k], c[k] = torch.lstm_cell(inp, (h[k], c[k]), *w)
                    inp = h[k]
                F.linear(inp, out_w, out_b)
            sync(device)
            best["bare cells"] = min(best["bare cells"], time.perf_counter() - start)
    return {name: 1000 * seconds / steps for name, seconds in best.items()}


def intervals(marks: list[float]) -> list[float]:
    return [b - a for a, b in zip(marks, marks[1:])]


def compare(model, encoder, sampler, *, batch: int, tokens: int, repeats: int, device: torch.device) -> dict:
    """Ours and bare, alternating, ``repeats`` runs each. Tokens/s from the median time of one step (a new
    token for every row: sampling and the model step) over every step of every run, which a busy machine's
    interruptions move least; the whole runs' times too (fastest and median), and the median over runs of
    each bucket's median (and mean) ms/step."""
    times: dict[str, list[float]] = {"ours": [], "bare": []}
    steps: dict[str, list[float]] = {"ours": [], "bare": []}
    growth: dict[str, list[list]] = {"ours": [], "bare": []}
    means: dict[str, list[list]] = {"ours": [], "bare": []}
    # one untimed run of each first: allocators, kernels and caches warm up
    ours(model, encoder, sampler, batch=batch, tokens=min(tokens, 32), seed=0, device=device)
    bare(model, encoder.bos, batch=batch, tokens=min(tokens, 32), seed=0, device=device)
    for i in range(repeats):
        order = ("ours", "bare") if i % 2 == 0 else ("bare", "ours")
        for name in order:
            if name == "ours":
                seconds, marks = ours(model, encoder, sampler, batch=batch, tokens=tokens, seed=i + 1, device=device)
            else:
                seconds, marks = bare(model, encoder.bos, batch=batch, tokens=tokens, seed=i + 1, device=device)
            times[name].append(seconds)
            steps[name] += intervals(marks)
            growth[name].append(buckets(marks))
            means[name].append(buckets(marks, statistic=mean))
    made = batch * tokens
    ours_step, bare_step = median(steps["ours"]), median(steps["bare"])
    result = {"batch": batch, "tokens": tokens, "repeats": repeats,
              "ours_tok_s": batch / ours_step, "bare_tok_s": batch / bare_step, "ratio": bare_step / ours_step,
              "ours_run_tok_s": made / min(times["ours"]), "bare_run_tok_s": made / min(times["bare"]),
              "run_ratio": min(times["bare"]) / min(times["ours"]),
              "median_run_ratio": median(times["bare"]) / median(times["ours"]),
              "ours_s": [round(t, 4) for t in times["ours"]], "bare_s": [round(t, 4) for t in times["bare"]]}
    for name in ("ours", "bare"):
        for key, table in ((f"{name}_ms_per_step", growth), (f"{name}_mean_ms_per_step", means)):
            result[key] = [None if None in col else round(median(list(col)), 4) for col in zip(*table[name])]
    return result


def run(section: Section, sizes: dict) -> None:
    from composer.generate import generation_threads

    device = torch.device("cpu")
    registry, model, encoder, meta = load_bach(device)
    sampler = registry.sampler("ancestral")
    with generation_threads(device):
        threads = torch.get_num_threads()
    m = meta["model"]
    repeats = sizes["repeats"]
    section.settings = {"model": f"bach checkpoint, {m['layers']}x{m['hidden_size']} {m['cell']}, "
                                 f"vocab {m['vocab_size']}", "sampler": "ancestral (defaults)", "device": "cpu",
                        "threads": threads, "tokens_per_run": sizes["tokens"], "repeats": repeats,
                        "batches": sizes["batches"],
                        "statistic": "tokens/s = batch / the median time of one step over every step of every run "
                                     "(runs alternate ours / bare); whole-run ratios recorded too; ms/step by "
                                     "bucket: each bucket's median step (means in the JSON), the median over runs"}
    section.say(f"bach {m['layers']}x{m['hidden_size']}, ancestral, {repeats} runs each, {threads} thread(s)")
    rows, growth, split = [], [], []
    for batch in sizes["batches"]:
        tokens = sizes["tokens"][batch] if isinstance(sizes["tokens"], dict) else sizes["tokens"]
        edges = [(a, min(b, tokens)) for a, b in BUCKETS if a < tokens]
        r = compare(model, encoder, sampler, batch=batch, tokens=tokens, repeats=repeats, device=device)
        rows.append([batch, f"{r['ours_tok_s']:,.0f}", f"{r['bare_tok_s']:,.0f}", f"{r['ratio']:.3f}",
                     f"{r['run_ratio']:.3f}", f"{r['median_run_ratio']:.3f}"])
        section.add(Measure(f"batch {batch} tokens/s, composer / bare loop", r["ratio"], "ratio", f">= {TARGET:.2f}",
                            at_least(r["ratio"], TARGET),
                            note=f"{r['ours_tok_s']:,.0f} / {r['bare_tok_s']:,.0f} tok/s", detail=r))
        first, last = r["ours_ms_per_step"][0], r["ours_ms_per_step"][len(edges) - 1]
        if len(edges) > 1 and first and last:
            growth_ratio = last / first
            section.add(Measure(f"batch {batch} ms/step, steps {edges[-1][0]}-{edges[-1][1]} over 1-{edges[0][1]}",
                                growth_ratio, "x", f"<= {FLAT}x", at_most(growth_ratio, FLAT),
                                note=f"{first:.3f} -> {last:.3f} ms/step"))
        for name in ("ours", "bare"):
            cells = [f"{v:.3f}" if v is not None else "-" for v in r[f"{name}_ms_per_step"][:len(edges)]]
            growth.append([batch, "composer" if name == "ours" else "bare", tokens] + cells + [""] * (3 - len(cells)))
        alone = model_steps(model, encoder.bos, batch=batch, steps=min(tokens, 256), device=device)
        whole = 1000 * batch / r["ours_tok_s"], 1000 * batch / r["bare_tok_s"]
        split.append([batch, f"{whole[0]:.3f}", f"{alone['model.step']:.3f}", f"{whole[1]:.3f}",
                      f"{alone['bare cells']:.3f}"])
        r["step_alone_ms"] = alone
    section.table("Generation tokens/s (CPU), from the median step", ["batch", "composer tok/s", "bare tok/s",
                                                                      "ratio", "ratio, fastest whole runs",
                                                                      "ratio, median whole runs"], rows)
    section.table("Generation ms per step as the sequence grows (each bucket's median step; the median over runs)",
                  ["batch", "loop", "tokens"] + [f"steps {a}-{b}" for a, b in BUCKETS[:-1]]
                  + [f"steps {BUCKETS[-1][0]}-{BUCKETS[-1][1]} (or the end)"], growth)
    section.table("Where a step's time goes (ms per step): the whole step of each loop (median step) and the "
                  "model alone (composer's model.step; the bare loop's cells, no sampling), best of 3",
                  ["batch", "composer step", "composer model.step alone", "bare step", "bare cells alone"], split)
