"""MIDI benchmarks: corpus build time (cold and warm cache) for music21:bach, and the time to sample
1 and 8 chorales with the shipped `bach` style, each as a whole `composer` process.

    python benchmarks/bench_midi.py                  # prints a table
    python benchmarks/bench_midi.py --save --conditions "quiet machine"   # also writes results/midi.json

Cold means an empty corpus cache (a fresh COMPOSER_CACHE folder); warm means the second run. Sampling
and process start are timed --repeats times each and the fastest is kept.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "midi.json"


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="corpus-reading processes (default: one per core)")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each command; the fastest is kept")
    parser.add_argument("--conditions", help="how the machine was while measuring, recorded with the results")
    parser.add_argument("--save", action="store_true", help=f"write the results to {RESULT.relative_to(HERE.parent)}")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.repeats < 1:
        parser.error("--workers and --repeats take a positive number")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                     "torch": torch.__version__, "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as cache:
        results["corpus_cold_s"] = round(corpus_build(cache, args.workers), 2)
        results["corpus_warm_s"] = round(corpus_build(cache, args.workers), 2)
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ)
        for n in (1, 8):
            runs = [timed(["sample", "--style", "bach", "-n", str(n), "--seed", str(s), "-o", out], env)
                    for s in range(args.repeats)]
            results[f"sample_{n}_s"] = round(min(runs), 2)
        results["process_start_s"] = round(min(timed(["--version"], env) for _ in range(args.repeats)), 2)
    if args.conditions:
        results["conditions"] = args.conditions
    for key, value in results.items():
        print(f"{key:18} {value}")
    if args.save:
        RESULT.parent.mkdir(exist_ok=True)
        RESULT.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
