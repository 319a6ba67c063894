"""Reharmonization with a bidirectional style, measured on its held-out chorales.

    python benchmarks/bench_reharmonize.py [--style bach-reharm] [--pieces 12] [--sweeps 20] [--temperature T]

For each of the first ``--pieces`` chorales of the style's held-out split (recorded in its checkpoint, so
the model never trained on them) it keeps the soprano and bass, regenerates the alto and tenor (seed 0),
and reports the seconds each took and the statistics of ``composer evaluate`` for the results beside the
originals (parallel fifths and octaves, voice ranges, notes per bar), plus how often the regenerated voices
rest and cross a neighbour. Writes benchmarks/results/reharmonize-NAME.json and prints it. One thread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import composer

RESULTS = Path(__file__).parent / "results"


def inner_voice_habits(pieces: list, encoder: composer.Encoder) -> dict[str, float]:
    """The share of grid steps at which the alto or tenor rests, and at which a voice lies above the one
    above it (S/A, A/T, T/B crossings), over ``pieces``."""
    rests = crossings = steps = 0
    for pm in pieces:
        frames = np.asarray(encoder.encode(pm)[1:]).reshape(-1, 5)[:, :4]
        pitch = np.full(frames.shape, -1)
        for v in range(4):
            current = -1
            for t, token in enumerate(frames[:, v]):
                current = token if token >= 3 else (current if token == 2 else -1)
                pitch[t, v] = current
        steps += len(frames)
        rests += int((pitch[:, 1:3] < 0).sum())
        sounding = (pitch[:, :-1] >= 0) & (pitch[:, 1:] >= 0)
        crossings += int((sounding & (pitch[:, 1:] > pitch[:, :-1])).sum())
    return {"inner-voice rests per step": rests / max(1, 2 * steps), "crossings per step": crossings / max(1, steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="bach-reharm", help="a style name or a checkpoint file")
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--temperature", type=float)
    args = parser.parse_args()
    torch.set_num_threads(1)
    session = composer.load(args.style)
    held = session.held_out(workers=1)
    names = held.names[: args.pieces]
    originals = [session.encoder.decode(held.sequences[i].tolist()) for i in range(len(names))]
    results, seconds, bars = [], [], []
    for original in originals:
        start = time.perf_counter()
        results += session.regenerate(original, seed=0, requests={"keep": "soprano,bass"}, sweeps=args.sweeps,
                                      temperature=args.temperature)
        seconds.append(time.perf_counter() - start)
        bars.append(session.encoder.steps(session.encoder.encode(original)) / 16)
    encoder = session.encoder
    report = {
        "style": args.style, "pieces": names, "sweeps": args.sweeps,
        "temperature": session.defaults.get("temperature", 0.8) if args.temperature is None else args.temperature,
        "seconds per chorale": round(float(np.mean(seconds)), 2), "seconds": [round(s, 2) for s in seconds],
        "bars of 4/4 per chorale": round(float(np.mean(bars)), 1),
        "originals": {**encoder.statistics(originals), **inner_voice_habits(originals, encoder)},
        "reharmonized": {**encoder.statistics(results, originals), **inner_voice_habits(results, encoder)},
        "torch": torch.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"reharmonize-{session.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
