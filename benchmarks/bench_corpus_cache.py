"""Opening a cached corpus: the memory-mapped cache (flat tokens + offsets) against the lists it replaced.

    python benchmarks/bench_corpus_cache.py                      # 3,000 pieces of 5,000 tokens (15 M), vocab 400
    python benchmarks/bench_corpus_cache.py --save --conditions "quiet machine"   # writes results/corpus-cache.json

A synthetic corpus (a registered source whose items are random token arrays) is built once through
``load_corpus``, which encodes it in worker processes and writes the real cache. Then, each in a fresh
process, ``load_corpus`` opens that cache (timed, with the resident memory it adds: VmRSS and RssAnon
from /proc/self/status before and after), the whole corpus is read once (every token summed) to show
what touching the mapped pages costs, and one epoch of training windows is built from it (``piece_batches``,
``--batch-size`` x ``--seq-len``). For comparison the same tokens are written the old way (an npz of int32
read fully into lists of Python ints, as the version-1 cache did) and opened the same way.
Each measurement runs ``--repeats`` times; the fastest open is kept, with its memory.
"""

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "corpus-cache.json"
sys.path.insert(0, str(HERE.parent))

from composer import CorpusSource, Encoder  # noqa: E402
from composer.data import load_corpus, piece_batches  # noqa: E402


class SynthEncoder(Encoder):
    """Items are already token arrays."""

    name, modality = "synth", "synth"

    def encode(self, item):
        return item


def load_synth(length: int, vocab: int, ref: str) -> list[np.ndarray]:
    return [np.random.default_rng(int(ref.split(":")[1])).integers(0, vocab, length, dtype=np.int64)]


def list_synth(sequences: int, name: str) -> list[str]:
    return [f"synth:{k}" for k in range(sequences)]


def source(sequences: int, length: int, vocab: int) -> dict[str, CorpusSource]:
    """A named source 'synth:' of ``sequences`` random pieces of ``length`` tokens below ``vocab`` (module-level
    functions: the workers that read it pickle them)."""
    load, names = partial(load_synth, length, vocab), partial(list_synth, sequences)
    return {"synth": CorpusSource("synth", "synth", load, list=names)}


def memory() -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "RssAnon")}  # MiB


def measured(before: dict, after: dict, read: dict, opened: float, touched: float, dtype: str, total: int) -> dict:
    """Seconds to open and to read everything; memory added by opening (MiB), and after reading."""
    return {
        "open_s": opened,
        "rss_mb": after["VmRSS"] - before["VmRSS"],
        "anon_mb": after["RssAnon"] - before["RssAnon"],
        "read_all_s": touched,
        "rss_after_read_mb": read["VmRSS"] - before["VmRSS"],
        "anon_after_read_mb": read["RssAnon"] - before["RssAnon"],
        "dtype": dtype,
        "checksum": total,
    }


def open_new(args: argparse.Namespace) -> dict:
    """In a fresh process: load_corpus from the cache (memory-mapped), then read every token once."""
    corpora = source(args.sequences, args.length, args.vocab)
    before = memory()
    start = time.perf_counter()
    corpus = load_corpus("synth:all", SynthEncoder(), corpora, progress=False)
    opened = time.perf_counter() - start
    after = memory()
    assert corpus.cached and corpus.tokens == args.sequences * args.length
    start = time.perf_counter()
    total = sum(int(seq.sum(dtype=np.int64)) for seq in corpus.sequences)
    touched = time.perf_counter() - start
    read = memory()
    result = measured(before, after, read, opened, touched, str(corpus.sequences.dtype), total)
    start = time.perf_counter()
    batches = piece_batches(corpus.sequences, SynthEncoder(), args.batch_size, args.seq_len, random.Random(0), False)
    result["epoch_s"] = time.perf_counter() - start  # one epoch of training windows, built from the mapped store
    result["epoch_windows"] = list(batches.inputs.shape)
    result["rss_with_epoch_mb"] = memory()["VmRSS"] - before["VmRSS"]
    return result


def write_old(path: Path, sequences: list[np.ndarray]) -> None:
    """The version-1 cache: one npz of int32 tokens, lengths and JSON metadata."""
    meta = {"names": [f"synth:{k}" for k in range(len(sequences))], "skipped": [], "report": [0, 0, 0],
            "reports": [[0, 0, 0]] * len(sequences), "digest": "", "encoder_state": {}}
    with open(path, "wb") as f:
        np.savez(f, tokens=np.concatenate(sequences).astype(np.int32),
                 lengths=np.array([len(s) for s in sequences], dtype=np.int64),
                 meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def open_old(args: argparse.Namespace) -> dict:
    """In a fresh process: the version-1 reader (np.load, np.split, tolist), then read every token once."""
    before = memory()
    start = time.perf_counter()
    with np.load(args.old, allow_pickle=False) as data:
        flat, lengths = data["tokens"], data["lengths"]
        meta = json.loads(data["meta"].tobytes().decode())
    sequences = [part.tolist() for part in np.split(flat, np.cumsum(lengths)[:-1])]
    del flat
    opened = time.perf_counter() - start
    after = memory()
    assert len(sequences) == len(meta["names"])
    start = time.perf_counter()
    total = sum(sum(seq) for seq in sequences)
    touched = time.perf_counter() - start
    read = memory()
    return measured(before, after, read, opened, touched, "list[int]", total)


def fresh(mode: str, args: argparse.Namespace, env: dict) -> dict:
    argv = [sys.executable, __file__, "--measure", mode, "--sequences", str(args.sequences), "--length",
            str(args.length), "--vocab", str(args.vocab), "--old", str(args.old), "--batch-size", str(args.batch_size),
            "--seq-len", str(args.seq_len)]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def summarize(runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["open_s"])
    out = {key: round(value, 3) if isinstance(value, float) else value for key, value in best.items()}
    out["open_s_median"] = round(statistics.median(r["open_s"] for r in runs), 3)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=3000, help="pieces in the corpus (default 3000)")
    parser.add_argument("--length", type=int, default=5000, help="tokens per piece (default 5000)")
    parser.add_argument("--vocab", type=int, default=400, help="token ids are below this (default 400)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows of the timed training epoch (default 64)")
    parser.add_argument("--seq-len", type=int, default=256, help="window of the timed training epoch (default 256)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes building the corpus")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement; the fastest is kept")
    parser.add_argument("--conditions", help="how the machine was while measuring, recorded with the results")
    parser.add_argument("--save", action="store_true", help=f"write the results to {RESULT.relative_to(HERE.parent)}")
    parser.add_argument("--measure", choices=["new", "old"], help=argparse.SUPPRESS)  # a fresh process's part
    parser.add_argument("--old", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.sequences, args.length, args.vocab, args.workers, args.repeats, args.batch_size, args.seq_len) < 1:
        parser.error("every count takes a positive number")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.measure:
        print(json.dumps((open_new if args.measure == "new" else open_old)(args)))
        return
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                     "python": platform.python_version(), "numpy": np.__version__,
                     "corpus": {"sequences": args.sequences, "length": args.length, "vocab": args.vocab,
                                "tokens": args.sequences * args.length}}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, COMPOSER_CACHE=cache, PYTHONPATH=os.pathsep.join(
            [str(HERE.parent), str(HERE.parent / "plugins"), os.environ.get("PYTHONPATH", "")]))
        os.environ["COMPOSER_CACHE"] = cache
        start = time.perf_counter()
        corpus = load_corpus("synth:all", SynthEncoder(), source(args.sequences, args.length, args.vocab),
                             workers=args.workers, progress=False)
        results["build_s"] = round(time.perf_counter() - start, 2)
        (folder,) = Path(cache).glob("corpus-*")
        results["cache_mb"] = round(sum(p.stat().st_size for p in folder.iterdir()) / 2 ** 20, 1)
        args.old = Path(cache) / "v1.npz"
        write_old(args.old, list(corpus.sequences))
        results["old_cache_mb"] = round(args.old.stat().st_size / 2 ** 20, 1)
        del corpus
        results["memory_mapped"] = summarize([fresh("new", args, env) for _ in range(args.repeats)])
        results["lists_v1"] = summarize([fresh("old", args, env) for _ in range(args.repeats)])
    if results["memory_mapped"]["checksum"] != results["lists_v1"]["checksum"]:
        raise SystemExit("the two caches hold different tokens")
    if args.conditions:
        results["conditions"] = args.conditions
    print(f"corpus: {args.sequences:,} pieces x {args.length:,} tokens, built and cached in {results['build_s']} s")
    print(f"{'':16}{'open s':>8}{'RSS MB':>8}{'anon MB':>9}{'read-all s':>12}{'RSS after':>11}")
    for key in ("memory_mapped", "lists_v1"):
        r = results[key]
        print(f"{key:16}{r['open_s']:>8}{r['rss_mb']:>8.1f}{r['anon_mb']:>9.1f}{r['read_all_s']:>12}"
              f"{r['rss_after_read_mb']:>11.1f}")
    r = results["memory_mapped"]
    print(f"one training epoch from the mapped cache ({' x '.join(map(str, r['epoch_windows']))} windows): "
          f"{r['epoch_s']} s, {r['rss_with_epoch_mb']:.1f} MB resident with it")
    if args.save:
        RESULT.parent.mkdir(exist_ok=True)
        RESULT.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
