"""What each sampler writes with a shipped style: NLL per token of the piece under the model (from
``Session.score``), its notes or characters, and the time to generate it, for a range of seeds.

    python benchmarks/bench_samplers.py                       # bach, seeds 1-5, prints a table
    python benchmarks/bench_samplers.py --style irish --seeds 3
    python benchmarks/bench_samplers.py --save                # also writes results/samplers-STYLE.json

The samplers compared: the style's default, greedy, beam search (deterministic, the defaults) and beam
search with sampled branches over 64 tokens per iteration (Magenta's way).
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import composer

HERE = Path(__file__).resolve().parent
RUNS = {
    "style default": {},
    "greedy": {"sampler": "greedy"},
    "beam": {"sampler": "beam"},
    "beam, sampled branches": {"sampler": "beam", "sample": True, "steps_per_iteration": 64},
}


def size(item) -> int:
    """Notes in a piece, or characters in a text."""
    return len(item) if isinstance(item, str) else sum(len(i.notes) for i in item.instruments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--style", default="bach", help="a style name (default bach)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N (default 5)")
    parser.add_argument("--save", action="store_true", help="write results/samplers-STYLE.json")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    torch.set_num_threads(1)
    session = composer.load(args.style, device="cpu")
    rows = []
    for seed in range(1, args.seeds + 1):
        for label, settings in RUNS.items():
            start = time.perf_counter()
            pieces = session.generate(seed=seed, **settings)
            seconds = time.perf_counter() - start
            rows.append({"seed": seed, "run": label, "sampler": pieces.sampler, "options": pieces.options,
                         "nll_per_token": session.score(pieces).nll_per_token, "size": size(pieces[0]),
                         "seconds": seconds, "summary": session.encoder.summarize(pieces[0])})
            print(f"seed {seed}  {label:24} NLL/token {rows[-1]['nll_per_token']:.4f}  size {rows[-1]['size']:5}  "
                  f"{seconds:5.1f} s  {rows[-1]['summary']}", flush=True)
    if args.save:
        out = HERE / "results" / f"samplers-{args.style}.json"
        out.write_text(json.dumps({"style": args.style, "torch": torch.__version__, "machine": platform.machine(),
                                   "threads": 1, "size": "notes (music) or characters (text)", "rows": rows},
                                  indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
