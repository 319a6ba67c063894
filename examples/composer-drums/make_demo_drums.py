"""Write a handful of simple drum-pattern MIDI files for trying the drums plugin.

    python make_demo_drums.py demo_drums/ --count 6 --seed 0

Each file is 4-8 bars of a rock beat, four-on-the-floor or a breakbeat, with seeded variations
(flipped kick/snare steps, a fill in the last bar), on a drum track (MIDI channel 10)."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from composer_drums.patterns import BREAKBEAT, FILL, FOUR_ON_THE_FLOOR, ROCK, pattern_to_midi, vary

STYLES = {"rock": ROCK, "four-on-the-floor": FOUR_ON_THE_FLOOR, "breakbeat": BREAKBEAT}


def make(folder: str | Path, count: int = 6, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(STYLES)
    paths = []
    for i in range(count):
        style = names[i % len(names)]
        bars = [vary(STYLES[style], rng, 0.08) for _ in range(rng.choice([4, 6, 8]) - 1)]
        bars.append(FILL if rng.random() < 0.5 else vary(STYLES[style], rng, 0.15))
        pm = pattern_to_midi(bars, tempo=rng.choice([90.0, 100.0, 120.0, 140.0]))
        path = folder / f"{i:02d}-{style}.mid"
        pm.write(str(path))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="demo_drums")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in make(args.folder, args.count, args.seed):
        print(path)


if __name__ == "__main__":
    main()
