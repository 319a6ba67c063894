"""Section ``coldstart``: ``composer sample --style bach`` as a whole process, as a user runs it.

- one chorale, best of N runs, on an otherwise idle machine, then beside one and two busy processes
  (``python -c "while True: pass"``, started and ended here);
- the same command split into phases in one process (benchmarks/suite/phases.py): imports, plugins, checkpoint,
  generation, writing, and starting and ending the interpreter;
- the modules that take the import time (``python -X importtime``, top-level packages);
- 64 chorales (``-n 64``) against one.
"""

from __future__ import annotations

import json
import re
import tempfile

from benchmarks.suite.common import Measure, Section, at_most, busy_processes, child_env, median, python, run_process

IDLE_TARGET = 2.5  # seconds, one chorale
STRETCH = 2.0  # the stretch goal
BUSY_FACTOR = 2.0  # beside busy processes, at most this many times the idle time
MANY_FACTOR = 4.0  # 64 chorales, at most this many times one


def sample_argv(out: str, n: int = 1) -> list[str]:
    return python("-m", "composer", "sample", "--style", "bach", "-o", out, "--force", "--seed", "1",
                  *(["-n", str(n)] if n != 1 else []))


def best_of(argv: list[str], repeats: int, env: dict) -> dict:
    runs = [run_process(argv, env=env) for _ in range(repeats)]
    seconds = [r.seconds for r in runs]
    return {"best_s": min(seconds), "median_s": median(seconds), "runs_s": [round(s, 3) for s in seconds],
            "peak_rss_mb": max(r.peak_rss_mb for r in runs), "bars": bars_written(runs[0].stdout)}


def bars_written(stdout: str) -> int:
    """The bars of every piece a sample run lists (``NAME.mid (4 parts, 8 bars, A major)``): how much music
    the time bought, since pieces of one seed and another differ in length."""
    return sum(int(m.group(1)) for m in re.finditer(r"\b(\d+) bars?\b", stdout))


def import_times(env: dict, top: int = 8) -> list[tuple[str, float]]:
    """Where ``import composer.cli`` (which loads the plugins too) spends its time: the modules' own import
    time (ms, not counting the modules they import) summed by top-level package, largest first, from
    ``python -X importtime``."""
    ran = run_process(python("-X", "importtime", "-c", "import composer.cli"), env=env)
    totals: dict[str, float] = {}
    for line in ran.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, _, name = line[len("import time:"):].split("|")
        if not own.strip().isdigit():
            continue  # the header line
        package = name.strip().split(".")[0]
        totals[package] = totals.get(package, 0.0) + int(own) / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def run(section: Section, sizes: dict) -> None:
    repeats, many = sizes["repeats"], sizes["many"]
    env = child_env()
    section.settings = {"command": "python -m composer sample --style bach -o TMP --force --seed 1",
                        "repeats": repeats, "repeats_phases": sizes.get("repeats_phases", repeats),
                        "repeats_many": sizes.get("repeats_many", repeats), "busy_levels": sizes["busy"], "many": many,
                        "statistic": "best of the runs (each a whole process); medians in the JSON"}
    section.say(f"{' '.join(sample_argv('TMP')[1:])}: best of {repeats}")
    with tempfile.TemporaryDirectory() as out:
        idle = best_of(sample_argv(out), repeats, env)
        section.add(Measure("sample 1 chorale, idle", idle["best_s"], "s", f"<= {IDLE_TARGET} s",
                            at_most(idle["best_s"], IDLE_TARGET), note=f"median {idle['median_s']:.2f} s",
                            detail=idle))
        section.add(Measure("sample 1 chorale, idle (stretch goal)", idle["best_s"], "s", f"<= {STRETCH} s",
                            at_most(idle["best_s"], STRETCH)))
        rows = [["idle", f"{idle['best_s']:.2f}", f"{idle['median_s']:.2f}", "1.00"]]
        for count in [b for b in sizes["busy"] if b > 0]:
            with busy_processes(count):
                busy = best_of(sample_argv(out), repeats, env)
            factor = busy["best_s"] / idle["best_s"]
            section.add(Measure(f"sample 1 chorale beside {count} busy process{'es' if count > 1 else ''}, "
                                "over idle", factor, "x", f"<= {BUSY_FACTOR}x", at_most(factor, BUSY_FACTOR),
                                note=f"{busy['best_s']:.2f} s, median {busy['median_s']:.2f} s", detail=busy))
            rows.append([f"{count} busy", f"{busy['best_s']:.2f}", f"{busy['median_s']:.2f}", f"{factor:.2f}"])
        section.table("Whole process, 1 chorale (seconds)", ["machine", "best", "median", "best / idle best"], rows)

        # phases: the run whose whole process was fastest
        phase_runs = []
        for _ in range(sizes.get("repeats_phases", repeats)):
            ran = run_process(python("-m", "benchmarks.suite.phases", out, "bach", "1"), env=env)
            report = json.loads(ran.stdout.strip().splitlines()[-1])
            phases = {"interpreter start": report["clock_first"] - ran.started, **report["phases"],
                      "interpreter exit": ran.ended - report["clock_last"]}
            phase_runs.append((ran.seconds, phases))
        whole, phases = min(phase_runs, key=lambda r: r[0])
        for name, seconds in phases.items():
            section.add(Measure(f"phase: {name}", seconds, "s"))
        section.table("Phases of one chorale, in one process (fastest of the runs)", ["phase", "seconds", "share"],
                      [[name, f"{s:.3f}", f"{100 * s / whole:.0f}%"] for name, s in phases.items()]
                      + [["whole process", f"{whole:.3f}", "100%"]])

        imports = import_times(env)
        total = sum(ms for _, ms in imports)
        section.table("Largest imports of `import composer.cli`, by top-level package (python -X importtime: each "
                      "module's own time, summed; the instrumentation slows imports, so read the shares)",
                      ["package", "ms", "share of these"],
                      [[name, f"{ms:.0f}", f"{100 * ms / total:.0f}%"] for name, ms in imports])
        section.settings["imports_ms"] = dict(imports)

        lots = best_of(sample_argv(out, many), sizes.get("repeats_many", repeats), env)
        factor = lots["best_s"] / idle["best_s"]
        section.add(Measure(f"sample {many} chorales, over 1", factor, "x", f"<= {MANY_FACTOR}x",
                            at_most(factor, MANY_FACTOR),
                            note=f"{lots['best_s']:.2f} s against {idle['best_s']:.2f} s; {lots['bars']} bars "
                                 f"written against {idle['bars']}", detail=lots))
    section.settings["sample_peak_rss_mb"] = round(idle["peak_rss_mb"], 1)

