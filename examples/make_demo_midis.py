"""Write a folder of MIDI files to practise fine-tuning on, from a collection music21 ships.

    python examples/make_demo_midis.py demo-midis                    # 20 Monteverdi madrigals
    python examples/make_demo_midis.py demo-midis --collection monteverdi --count 20

Any folder of your own .mid/.musicxml files works the same way with `composer finetune`.
"""

import argparse
from pathlib import Path

from composer import plugins


def main() -> None:
    parser = argparse.ArgumentParser(description="Write N pieces of a music21 collection as MIDI files.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--collection", default="monteverdi", help="a music21 collection (default monteverdi)")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    source = plugins.get_registry().corpora["music21"]
    args.folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for ref in source.list(args.collection):
        if written == args.count:
            break
        try:
            items = source.load(ref)
        except Exception as exc:  # a piece music21 cannot read is simply left out
            print(f"skipped {ref}: {exc}")
            continue
        for item in items[: args.count - written]:
            written += 1
            path = args.folder / f"{args.collection}-{written:02d}.mid"
            item.write(str(path))
    print(f"wrote {written} MIDI files to {args.folder}")


if __name__ == "__main__":
    main()
