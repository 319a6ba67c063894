"""MIDI benchmarks: corpus build time (cold and warm cache) for music21:bach, and the time to sample
1 and 8 chorales with the shipped `bach` style, each as a whole `composer` process.

    python benchmarks/bench_midi.py            # writes benchmarks/results/midi.json and prints a table

Cold means an empty corpus cache (a fresh COMPOSER_CACHE folder); warm means the second run.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent


def timed(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "composer", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def corpus_build(cache: str, workers: int) -> float:
    code = (
        "import time; from composer import plugins; from composer.data import load_corpus\n"
        "reg = plugins.get_registry(); enc = reg.encoder('polyphony')()\n"
        "t = time.perf_counter()\n"
        f"c = load_corpus('music21:bach', enc, reg.corpora, workers={workers}, progress=False)\n"
        "print(time.perf_counter() - t, len(c.sequences))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, COMPOSER_CACHE=cache), check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0])


def main() -> None:
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                     "torch": torch.__version__, "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as cache:
        results["corpus_cold_s"] = round(corpus_build(cache, os.cpu_count() or 1), 2)
        results["corpus_warm_s"] = round(corpus_build(cache, os.cpu_count() or 1), 2)
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ)
        for n in (1, 8):
            runs = [timed(["sample", "--style", "bach", "-n", str(n), "--seed", str(s), "-o", out], env)
                    for s in range(3)]
            results[f"sample_{n}_s"] = round(min(runs), 2)
        results["process_start_s"] = round(min(timed(["--version"], env) for _ in range(3)), 2)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "midi.json").write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key:18} {value}")


if __name__ == "__main__":
    main()
