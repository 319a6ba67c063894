"""Section ``corpus``: corpus build time and the peak memory of everyday commands.

- ``music21:bach`` (--tiny: ``music21:bach/bwv25*``) with the polyphony encoder through
  ``composer.data.load_corpus``: cold (an empty cache: COMPOSER_CACHE points at a fresh folder) and
  cached (best of N), each in a fresh process;
- peak resident memory (the kernel's record for the process, ``os.wait4``) of: sampling one chorale
  (``composer sample --style bach``), a short training run (``composer train`` on the cached corpus, a
  few steps of the default model), and opening a large cached corpus (a synthetic one made as
  benchmarks/bench_corpus_cache.py makes it) and reading every token once.

Every measurement is a fresh process, so nothing is cached in memory between them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from benchmarks.suite.common import Measure, Section, child_env, python, run_process

BUILD_BACH = """
import json, sys, time
from composer import plugins
from composer.data import load_corpus
reg = plugins.get_registry()
enc = reg.encoder("polyphony")()
start = time.perf_counter()
corpus = load_corpus(sys.argv[2], enc, reg.corpora, workers=int(sys.argv[1]), progress=False)
print(json.dumps({"seconds": time.perf_counter() - start, "sequences": len(corpus.sequences),
                  "tokens": int(corpus.tokens)}))
"""

BUILD_SYNTH = """
import json, sys, time
from benchmarks.bench_corpus_cache import SynthEncoder, source
from composer.data import load_corpus
sequences, length, vocab, workers = map(int, sys.argv[1:5])
start = time.perf_counter()
corpus = load_corpus("synth:all", SynthEncoder(), source(sequences, length, vocab), workers=workers, progress=False)
print(json.dumps({"seconds": time.perf_counter() - start, "tokens": int(corpus.tokens)}))
"""

OPEN_SYNTH = """
import json, sys, time
import numpy as np
from benchmarks.bench_corpus_cache import SynthEncoder, memory, source
from composer.data import load_corpus
sequences, length, vocab = map(int, sys.argv[1:4])
before = memory()
start = time.perf_counter()
corpus = load_corpus("synth:all", SynthEncoder(), source(sequences, length, vocab), progress=False)
opened = time.perf_counter() - start
after = memory()
assert corpus.cached and corpus.tokens == sequences * length
start = time.perf_counter()
total = sum(int(seq.sum(dtype=np.int64)) for seq in corpus.sequences)
read_s = time.perf_counter() - start
read = memory()
print(json.dumps({"open_s": opened, "read_all_s": read_s, "rss_before_mb": before["VmRSS"],
                  "rss_opened_mb": after["VmRSS"], "rss_read_mb": read["VmRSS"], "checksum": total}))
"""


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def run(section: Section, sizes: dict) -> None:
    workers = os.cpu_count() or 1
    repeats = sizes["repeats"]
    synth = sizes["synth"]  # (sequences, length, vocab)
    name, held_out = sizes.get("corpus", "music21:bach"), sizes.get("valid_fraction", 0.03)
    section.settings = {"corpus": name, "encoder": "polyphony", "workers": workers, "repeats": repeats,
                        "train_steps": sizes["train_steps"],
                        "synthetic_corpus": {"sequences": synth[0], "length": synth[1], "vocab": synth[2],
                                             "tokens": synth[0] * synth[1]},
                        "peak_rss": "ru_maxrss of the process from os.wait4 (the largest of it and the "
                                    "processes it waited for)"}
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as work:
        env = child_env(COMPOSER_CACHE=cache)
        section.say(f"{name}, polyphony, {workers} worker(s), COMPOSER_CACHE={cache}")
        cold_run = run_process(python("-c", BUILD_BACH, str(workers), name), env=env)
        cold = last_json(cold_run.stdout)
        section.add(Measure(f"{name} corpus build, cold cache", cold["seconds"], "s",
                            note=f"{cold['sequences']} pieces, {cold['tokens']:,} tokens; process "
                                 f"{cold_run.seconds:.1f} s", detail={**cold, "process_s": cold_run.seconds}))
        cached_runs = [run_process(python("-c", BUILD_BACH, str(workers), name), env=env) for _ in range(repeats)]
        cached = min((last_json(r.stdout)["seconds"], r.seconds) for r in cached_runs)
        section.add(Measure(f"{name} corpus load, cached (best)", cached[0], "s",
                            note=f"whole process {min(r.seconds for r in cached_runs):.2f} s",
                            detail={"runs_s": [last_json(r.stdout)["seconds"] for r in cached_runs]}))

        sample = run_process(python("-m", "composer", "sample", "--style", "bach", "-o", work, "--force", "--seed",
                                    "1"), env=env)
        section.add(Measure("peak RSS: composer sample --style bach", sample.peak_rss_mb, "MB",
                            note=f"{sample.seconds:.1f} s"))
        steps = sizes["train_steps"]
        train_argv = python("-m", "composer", "train", "--encoder", "polyphony", "--corpus", name,
                            "-o", str(Path(work) / "run"), "--max-steps", str(steps), "--epochs", "1",
                            "--batch-size", "16", "--seq-len", "64", "--workers", "1",
                            "--valid-fraction", str(held_out))
        train = run_process(train_argv, env=env)
        section.add(Measure(f"peak RSS: composer train, {steps} steps (2x256, batch 16x64)",
                            train.peak_rss_mb, "MB",
                            note=f"{train.seconds:.1f} s with validation ({held_out:.0%} held out) and saving"))

        sequences, length, vocab = synth
        built = run_process(python("-c", BUILD_SYNTH, str(sequences), str(length), str(vocab), str(workers)),
                            env=env)
        build = last_json(built.stdout)
        opens = [run_process(python("-c", OPEN_SYNTH, str(sequences), str(length), str(vocab)), env=env)
                 for _ in range(repeats)]
        best = min(opens, key=lambda r: last_json(r.stdout)["open_s"])
        info = last_json(best.stdout)
        label = f"{sequences * length / 1e6:g} M-token cached corpus"
        section.add(Measure(f"open a {label} (best)", info["open_s"], "s",
                            note=f"built in {build['seconds']:.1f} s", detail={**info, "build_s": build["seconds"]}))
        opened, read = info["rss_opened_mb"] - info["rss_before_mb"], info["rss_read_mb"] - info["rss_opened_mb"]
        section.add(Measure("peak RSS: open it and read every token once", best.peak_rss_mb, "MB",
                            note=f"imports {info['rss_before_mb']:.0f} MB, +{opened:.0f} MB opened, +{read:.0f} MB "
                                 "read"))
    section.table("Peak resident memory (MB)", ["process", "peak RSS", "seconds"], [
        ["composer sample --style bach", f"{sample.peak_rss_mb:.0f}", f"{sample.seconds:.1f}"],
        [f"composer train, {steps} steps", f"{train.peak_rss_mb:.0f}", f"{train.seconds:.1f}"],
        [f"open the {label}, read it all", f"{best.peak_rss_mb:.0f}", f"{best.seconds:.1f}"],
        [f"{name} build, cold ({workers} worker processes)", f"{cold_run.peak_rss_mb:.0f}",
         f"{cold_run.seconds:.1f}"],
    ])
