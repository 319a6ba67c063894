"""Write Hershey glyphs as a Sketch-RNN / QuickDraw ``.npz`` file, to try the .npz pipeline without a download.

    python examples/hershey_npz.py letters.npz                 # lowercase a-z of the 18 Latin fonts
    python examples/hershey_npz.py digits.npz --chars 0123456789

The file has the published layout: arrays ``train``, ``valid`` and ``test``, each an object array of int16
stroke-3 drawings (dx, dy, pen lifted after this point), split 80/10/10 at random (seeded). Read it back with
``composer train --encoder strokes --corpus letters.npz``; numpy itself needs ``allow_pickle=True`` to read
object arrays, composer reads them with a restricted unpickler instead.
"""

from __future__ import annotations

import argparse
import random
import string

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--chars", default=string.ascii_lowercase, help="characters to take (default a-z)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from composer_strokes.corpora import list_hershey, load_hershey

    drawings = [d for ref in list_hershey("all") for d in load_hershey(ref) if d.label in args.chars]
    random.Random(args.seed).shuffle(drawings)
    cut = [int(len(drawings) * 0.8), int(len(drawings) * 0.9)]
    parts = {"train": drawings[: cut[0]], "valid": drawings[cut[0]: cut[1]], "test": drawings[cut[1]:]}
    arrays = {}
    for name, part in parts.items():
        holder = np.empty(len(part), dtype=object)
        holder[:] = [np.round(d.strokes).astype(np.int16) for d in part]
        arrays[name] = holder
    np.savez_compressed(args.output, **arrays)
    print(f"wrote {args.output}: " + ", ".join(f"{len(v)} {k}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
