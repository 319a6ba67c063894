"""What ``composer sample --style STYLE -o OUT --force --seed SEED`` does, phase by phase, in one process,
with a clock around each phase; prints the seconds of each as JSON. Run by the cold-start section:

    python -m benchmarks.suite.phases OUT [STYLE [SEED]]

Phases: the imports the command line makes (torch, composer's modules, click), loading the plugins
(``composer.plugins.get_registry``, then ``composer.cli``, which registers the plugins' commands),
opening the style (``Session``: the style resolved to its checkpoint, ``composer.checkpoint.load_model``),
generating one piece, and writing it. It prints the seconds of each phase and ``time.monotonic()`` at its
first and last reading, from which the parent finds how long the interpreter took to start and to exit.
Nothing but the standard library (and the two packages' docstrings)
is imported before the first clock, which is read after the interpreter has started, as it is for
``python -m composer``.
"""

import json
import sys
import time


def main() -> None:
    out = sys.argv[1]
    style = sys.argv[2] if len(sys.argv) > 2 else "bach"
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    first = time.monotonic()  # the machine-wide clock: the parent splits start-up and exit with it
    marks = [("start", time.perf_counter())]
    import gc

    gc.disable()  # as the composer program starts (composer/cli.py): no collection during the imports
    import click  # noqa: F401
    import torch  # noqa: F401

    import composer.checkpoint  # noqa: F401
    import composer.commands  # noqa: F401
    import composer.generate  # noqa: F401
    import composer.model  # noqa: F401
    import composer.session  # noqa: F401
    marks.append(("imports", time.perf_counter()))
    from composer.plugins import get_registry

    get_registry()
    import composer.cli  # noqa: F401  (registers the plugins' commands)
    gc.freeze()  # and then collection resumes, leaving out what is in now
    gc.enable()
    marks.append(("plugins", time.perf_counter()))
    from composer.commands import open_session

    session = open_session(style, None, "auto")
    marks.append(("checkpoint", time.perf_counter()))
    pieces = session.generate(1, seed=seed)
    marks.append(("generation", time.perf_counter()))
    session.write(pieces, out, None, force=True)
    marks.append(("writing", time.perf_counter()))
    gc.freeze()  # as composer's main() does before the process ends
    last = time.monotonic()
    phases = {name: round(t - marks[i][1], 4) for i, (name, t) in enumerate(marks[1:])}
    print(json.dumps({"phases": phases, "clock_first": first, "clock_last": last}))


if __name__ == "__main__":
    main()
