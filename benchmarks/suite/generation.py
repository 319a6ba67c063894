"""Section ``generate``: generation tokens/s of composer's generation against a bare carried-state loop,
and the time per step as the sequence grows.

Composer's side is ``composer.generate.generate`` with the shipped ``bach`` checkpoint (loaded with
``composer.checkpoint.load_model``) and the registry's ``ancestral`` sampler at its defaults; the start
token is the encoder's, and no end token is honoured, so every run makes exactly the asked number of
steps. The bare loop uses the same weights: per step an embedding lookup, ``torch.lstm_cell`` for each
layer with the state carried, a linear layer, softmax and ``torch.multinomial``. Both run under
``composer.generate.generation_threads`` (on the CPU one thread unless COMPOSER_THREADS or OMP_NUM_THREADS
says otherwise).

The two are timed step by step in the same run: composer's model is handed to ``generate`` wrapped so
that each of its steps also runs one step of the bare loop, each clocked on its own (composer's step: the
sampler's work on the last output and ``model.step``; the bare loop's: its whole step), in turn first and
second. A busy machine then slows both alike, step by step; tokens/s come from the median step. Whole runs
of each alone, alternating, are timed too, as a check that the pairing changes nothing. The growth of
composer's time per step with the sequence is taken relative to the bare loop's in the same runs (whose
work per step is constant by construction), so that the machine's load changing during a run does not
pass for growth; the raw ratio is recorded beside it.
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


class BareLoop:
    """The bare carried-state loop with composer's weights, one step at a time."""

    def __init__(self, model, bos: int, *, batch: int, seed: int, device: torch.device) -> None:
        self.embedding = model.adapter.weight.detach()
        self.layers = [tuple(w.detach() for w in (layer.rnn.weight_ih_l0, layer.rnn.weight_hh_l0,
                                                  layer.rnn.bias_ih_l0, layer.rnn.bias_hh_l0))
                       for layer in model.layers]
        self.out_w, self.out_b = model.head.proj.weight.detach(), model.head.proj.bias.detach()
        hidden = model.config.hidden_size
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.h = [torch.zeros(batch, hidden, device=device) for _ in self.layers]
        self.c = [torch.zeros(batch, hidden, device=device) for _ in self.layers]
        self.x = torch.full((batch,), bos, dtype=torch.long, device=device)
        self.chosen: list[torch.Tensor] = []

    def step(self) -> None:
        inp = F.embedding(self.x, self.embedding)
        for k, weights in enumerate(self.layers):
            self.h[k], self.c[k] = torch.lstm_cell(inp, (self.h[k], self.c[k]), *weights)
            inp = self.h[k]
        probs = torch.softmax(F.linear(inp, self.out_w, self.out_b), -1)
        self.x = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
        self.chosen.append(self.x)

    def tokens(self) -> torch.Tensor:
        return torch.stack(self.chosen, 1).cpu()


class Paired:
    """Composer's model, passed through to ``generate``; at each of its steps one bare-loop step runs too
    (before it on even steps, after it on odd ones), and each side's time for the token is recorded:
    composer's is the time since the wrapper last returned (the sampler's work) plus ``model.step``."""

    def __init__(self, model, bare: BareLoop | None) -> None:
        self._model, self.bare = model, bare
        self.ours: list[float] = []
        self.bare_steps: list[float] = []
        self.left: float | None = None  # when the wrapper last returned to the sampler

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __call__(self, *args, **kwargs):
        out = self._model(*args, **kwargs)  # the primer
        self.left = time.perf_counter()
        return out

    def step(self, *args, **kwargs):
        entered = time.perf_counter()
        sampling = entered - self.left if self.left is not None else 0.0
        first = self.bare is not None and len(self.ours) % 2 == 0
        if first:
            self.bare.step()
            start = time.perf_counter()
            self.bare_steps.append(start - entered)
        else:
            start = entered
        out = self._model.step(*args, **kwargs)
        done = time.perf_counter()
        self.ours.append(sampling + done - start)
        if self.bare is not None and not first:
            self.bare.step()
            self.bare_steps.append(time.perf_counter() - done)
        self.left = time.perf_counter()
        return out


def load_bach(device: torch.device | str = "cpu"):
    from composer.checkpoint import load_model
    from composer.plugins import get_registry

    registry = get_registry()
    model, encoder, meta = load_model(registry.style("bach").checkpoint, registry, device)
    return registry, model, encoder, meta


def ours(model, encoder, sampler, *, batch: int, tokens: int, seed: int, device: torch.device,
         paired: bool = False) -> tuple[float, Paired]:
    """Seconds for composer's generation of ``batch`` x ``tokens``, and the wrapper with each step's time
    (with ``paired``, a bare-loop step beside each of composer's)."""
    from composer.generate import generate

    wrapped = Paired(model, BareLoop(model, encoder.bos, batch=batch, seed=seed, device=device) if paired else None)
    stub = SimpleNamespace(bos=encoder.bos, eos=None)  # the encoder's start token; no end: a fixed length
    sync(device)
    start = time.perf_counter()
    results = generate(wrapped, stub, sampler, n=batch, max_tokens=tokens, seed=seed, device=device,
                       options=sampler.options())
    sync(device)
    seconds = time.perf_counter() - start
    assert len(results) == batch and all(r.new_tokens == tokens for r in results), "a run stopped early"
    return seconds, wrapped


def bare(model, bos: int, *, batch: int, tokens: int, seed: int, device: torch.device) -> float:
    """Seconds for the bare loop alone, ``batch`` x ``tokens``, under the same thread setting."""
    from composer.generate import generation_threads

    sync(device)
    start = time.perf_counter()
    with torch.no_grad(), generation_threads(device):
        loop = BareLoop(model, bos, batch=batch, seed=seed, device=device)
        for _ in range(tokens):
            loop.step()
        loop.tokens()
    sync(device)
    return time.perf_counter() - start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def buckets(steps: list[float], edges=BUCKETS, statistic=median) -> list[float | None]:
    """ms per step over steps [a, b) (``steps[k - 1]`` is step k, the one that made token k + 1): the median
    step of each bucket (``statistic``), which a busy machine's interruptions move least."""
    out = []
    for a, b in edges:
        part = steps[a - 1: b - 1]
        out.append(1000 * statistic(part) if part else None)
    return out


@torch.no_grad()
def model_steps(model, bos: int, *, batch: int, steps: int, device: torch.device) -> dict:
    """Where the time goes: composer's ``model.step`` alone (the same token fed back, no sampler) against
    the bare loop's cells alone (embedding, lstm_cell per layer, linear), taking turns step by step; the
    median ms per step of each."""
    from composer.generate import generation_threads

    weights = [tuple(w.detach() for w in (layer.rnn.weight_ih_l0, layer.rnn.weight_hh_l0, layer.rnn.bias_ih_l0,
                                          layer.rnn.bias_hh_l0)) for layer in model.layers]
    embedding, out_w, out_b = model.adapter.weight, model.head.proj.weight, model.head.proj.bias
    x = torch.full((batch,), bos, dtype=torch.long, device=device)
    times: dict[str, list[float]] = {"model.step": [], "bare cells": []}
    with generation_threads(device):
        state = None
        h = [torch.zeros(batch, model.config.hidden_size, device=device) for _ in weights]
        c = [torch.zeros_like(t) for t in h]
        for _ in range(steps):
            sync(device)
            start = time.perf_counter()
            _, state = model.step(x, state)
            sync(device)
            middle = time.perf_counter()
            inp = F.embedding(x, embedding)
            for k, w in enumerate(weights):
                h[k], c[k] = torch.lstm_cell(inp, (h[k], c[k]), *w)
                inp = h[k]
            F.linear(inp, out_w, out_b)
            sync(device)
            times["model.step"].append(middle - start)
            times["bare cells"].append(time.perf_counter() - middle)
    return {name: 1000 * median(values[1:]) for name, values in times.items()}


def compare(model, encoder, sampler, *, batch: int, tokens: int, repeats: int, device: torch.device,
            paired: bool = True) -> dict:
    """``repeats`` paired runs (composer's steps and the bare loop's taking turns in one run): tokens/s from
    each side's median step over all of them, and the median over runs of each bucket's median (and mean)
    ms/step; and ``repeats`` whole runs of each alone, alternating: the fastest and the median. Without
    ``paired`` (on a GPU, where a step's clock reads a queue, not work done) only the whole runs."""
    times: dict[str, list[float]] = {"ours": [], "bare": []}
    steps: dict[str, list[float]] = {"ours": [], "bare": []}
    growth: dict[str, list[list]] = {"ours": [], "bare": []}
    means: dict[str, list[list]] = {"ours": [], "bare": []}
    # an untimed run first: allocators, kernels and caches warm up
    ours(model, encoder, sampler, batch=batch, tokens=min(tokens, 32), seed=0, device=device, paired=True)
    for i in range(repeats):
        if paired:
            _, wrapped = ours(model, encoder, sampler, batch=batch, tokens=tokens, seed=i + 1, device=device,
                              paired=True)
            for name, values in (("ours", wrapped.ours), ("bare", wrapped.bare_steps)):
                steps[name] += values[1:]  # the first step of each runs beside first-use costs
                growth[name].append(buckets(values))
                means[name].append(buckets(values, statistic=mean))
        for name in (("ours", "bare") if i % 2 == 0 else ("bare", "ours")):
            if name == "ours":
                seconds, _ = ours(model, encoder, sampler, batch=batch, tokens=tokens, seed=i + 1, device=device)
            else:
                seconds = bare(model, encoder.bos, batch=batch, tokens=tokens, seed=i + 1, device=device)
            times[name].append(seconds)
    made = batch * tokens
    result = {"batch": batch, "tokens": tokens, "repeats": repeats, "paired": paired,
              "ours_run_tok_s": made / min(times["ours"]), "bare_run_tok_s": made / min(times["bare"]),
              "run_ratio": min(times["bare"]) / min(times["ours"]),
              "median_run_ratio": median(times["bare"]) / median(times["ours"]),
              "ours_s": [round(t, 4) for t in times["ours"]], "bare_s": [round(t, 4) for t in times["bare"]]}
    if paired:
        ours_step, bare_step = median(steps["ours"]), median(steps["bare"])
        result.update({"ours_tok_s": batch / ours_step, "bare_tok_s": batch / bare_step,
                       "ratio": bare_step / ours_step})
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
                        "statistic": "tokens/s = batch / the median step over every step of the paired runs "
                                     "(composer's step and the bare loop's taking turns in one run); whole runs of "
                                     "each alone, alternating, recorded too; ms/step by bucket: each bucket's "
                                     "median step (means in the JSON), the median over runs"}
    section.say(f"bach {m['layers']}x{m['hidden_size']}, ancestral, {repeats} paired runs and {repeats} whole runs "
                f"each, {threads} thread(s)")
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
        bare_first, bare_last = r["bare_ms_per_step"][0], r["bare_ms_per_step"][len(edges) - 1]
        if len(edges) > 1 and first and last:
            # against the bare loop's steps of the same runs, whose work per step is the same at every length
            # by construction: what is left is composer's own growth, not the machine's load changing
            raw, reference = last / first, bare_last / bare_first
            growth_ratio = raw / reference
            section.add(Measure(f"batch {batch} ms/step, steps {edges[-1][0]}-{edges[-1][1]} over 1-{edges[0][1]}",
                                growth_ratio, "x", f"<= {FLAT}x", at_most(growth_ratio, FLAT),
                                note=f"{first:.3f} -> {last:.3f} ms/step ({raw:.2f}x), over the bare loop's "
                                     f"{reference:.2f}x in the same runs",
                                detail={"raw": raw, "bare": reference}))
        for name in ("ours", "bare"):
            cells = [f"{v:.3f}" if v is not None else "-" for v in r[f"{name}_ms_per_step"][:len(edges)]]
            growth.append([batch, "composer" if name == "ours" else "bare", tokens] + cells + [""] * (3 - len(cells)))
        alone = model_steps(model, encoder.bos, batch=batch, steps=min(tokens, 256), device=device)
        whole = 1000 * batch / r["ours_tok_s"], 1000 * batch / r["bare_tok_s"]
        split.append([batch, f"{whole[0]:.3f}", f"{alone['model.step']:.3f}", f"{whole[1]:.3f}",
                      f"{alone['bare cells']:.3f}"])
        r["step_alone_ms"] = alone
    section.table("Generation tokens/s (CPU), from the median step of the paired runs",
                  ["batch", "composer tok/s", "bare tok/s", "ratio", "ratio, fastest whole runs",
                   "ratio, median whole runs"], rows)
    section.table("Generation ms per step as the sequence grows (each bucket's median step; the median over runs)",
                  ["batch", "loop", "tokens"] + [f"steps {a}-{b}" for a, b in BUCKETS[:-1]]
                  + [f"steps {BUCKETS[-1][0]}-{BUCKETS[-1][1]} (or the end)"], growth)
    section.table("Where a step's time goes (median ms per step): the whole step of each loop (paired runs) and "
                  "the model alone (composer's model.step against the bare loop's cells, no sampling, taking turns)",
                  ["batch", "composer step", "composer model.step alone", "bare step", "bare cells alone"], split)
