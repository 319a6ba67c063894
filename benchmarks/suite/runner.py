"""composer's benchmarks in one command: speed and memory against the project's targets, measured and
written down, never asserted in timed tests.

    python -m benchmarks                     # every section, full sizes (about 6-8 minutes on 2 CPU cores)
    python -m benchmarks --quick             # every section, fewer steps and smaller batches (about 3 minutes)
    python -m benchmarks --only train,generate --out /tmp/results.md

Sections: train, generate, coldstart, corpus, cuda (benchmarks/README.md says what each measures and its
targets). A table is printed as the run goes. A run of every section writes benchmarks/RESULTS.md and
benchmarks/results/RESULTS.json (the committed record); a run with --only or --tiny writes only where
--out says, so that it never replaces the whole record with a part of it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.suite.common import CpuAccount, Section, Shape, loadavg, machine, show

HERE = Path(__file__).resolve().parent.parent  # benchmarks/
DEFAULT_MD = HERE / "RESULTS.md"
DEFAULT_JSON = HERE / "results" / "RESULTS.json"
SECTIONS = {
    "train": "Training: composer's step against a bare nn.LSTM loop (CPU)",
    "generate": "Generation: composer's generate against a bare carried-state loop (CPU)",
    "coldstart": "Cold start: `composer sample --style bach` as a whole process",
    "corpus": "Corpus build and peak memory",
    "cuda": "CUDA: training precisions and generation on the GPU",
}
SHARED = 0.10  # other work took more than this share of the CPU: the record says the machine was shared

SIZES = {
    "full": {
        "train": {"batch": 32, "seq_len": 128, "shapes": [Shape(2, 256, 12, 2), Shape(3, 512, 8, 1),
                                                         Shape(3, 1024, 4, 1)]},
        "generate": {"tokens": 1024, "repeats": 5, "batches": [1, 64]},
        "coldstart": {"repeats": 5, "busy": [0, 1, 2], "many": 64},
        "corpus": {"repeats": 3, "synth": (3000, 5000, 400), "train_steps": 5},
        "cuda": {"seq_len": 128, "steps": 20, "warmup": 3, "shapes": [(3, 512), (3, 1024)], "batches": [64, 256],
                 "gen_batches": [1, 64, 1024], "gen_tokens": 1024, "gen_repeats": 3},
    },
    "quick": {
        "train": {"batch": 16, "seq_len": 64, "shapes": [Shape(2, 256, 12, 2), Shape(3, 512, 8, 1),
                                                        Shape(3, 1024, 4, 1)]},
        "generate": {"tokens": {1: 1024, 64: 512}, "repeats": 2, "batches": [1, 64]},
        "coldstart": {"repeats": 3, "busy": [0, 1, 2], "many": 64, "repeats_phases": 2, "repeats_many": 2},
        "corpus": {"repeats": 2, "synth": (400, 5000, 400), "train_steps": 5},
        "cuda": {"seq_len": 128, "steps": 8, "warmup": 2, "shapes": [(3, 512), (3, 1024)], "batches": [64, 256],
                 "gen_batches": [1, 64, 1024], "gen_tokens": 256, "gen_repeats": 2},
    },
    "tiny": {  # checks that the harness runs (tests); the numbers mean nothing
        "train": {"batch": 2, "seq_len": 8, "shapes": [Shape(1, 32, 2, 1)]},
        "generate": {"tokens": 16, "repeats": 1, "batches": [1, 2]},
        "coldstart": {"repeats": 1, "busy": [0], "many": 2},
        "corpus": {"repeats": 1, "synth": (20, 200, 50), "train_steps": 1, "corpus": "music21:bach/bwv25*",
                   "valid_fraction": 0.2},
        "cuda": {"seq_len": 8, "steps": 1, "warmup": 1, "shapes": [(1, 32)], "batches": [2],
                 "gen_batches": [1, 2], "gen_tokens": 8, "gen_repeats": 1},
    },
}


def run_section(name: str, sizes: dict) -> Section:
    from benchmarks.suite import coldstart, corpus, generation, gpu, train

    runner = {"train": train.run, "generate": generation.run, "coldstart": coldstart.run, "corpus": corpus.run,
              "cuda": gpu.run}[name]
    section = Section(name, SECTIONS[name])
    print(f"\n== {name}: {SECTIONS[name]}", flush=True)
    start, load = time.perf_counter(), loadavg()
    try:
        runner(section, sizes)
    except Exception as exc:  # a broken section is recorded; the others still run
        section.status = f"failed: {type(exc).__name__}: {exc}"
        print(f"  FAILED: {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc()
    section.settings["seconds"] = round(time.perf_counter() - start, 1)
    section.settings["loadavg_start"], section.settings["loadavg_end"] = load, loadavg()
    return section


# ------------------------------------------------------------------------------------------- writing


def md_table(columns: list[str], rows: list[list]) -> list[str]:
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)] + \
        ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def conditions(record: dict) -> str:
    """One sentence on how loaded the machine was."""
    cpu, start, end = record["cpu"], record["loadavg_start"], record["loadavg_end"]
    parts = []
    if start:
        parts.append(f"load average {start[0]:.2f} at the start, {end[0]:.2f} at the end (1 minute; the end "
                     "includes this run's own processes)")
    if "other_work_share" in cpu:
        parts.append(f"other work used {cpu['other_work_cpu_s']:.0f} CPU-seconds, {100 * cpu['other_work_share']:.0f}% "
                     f"of the {record['machine']['cores']} cores over the run; steal time {cpu['steal_s']:.0f} s")
    shared = record["shared"]
    verdict = ("**The machine was shared with other work while this ran**, so the absolute numbers are slower "
               "than on a quiet machine; the ratios compare code measured in turn under the same load."
               if shared else "The machine was otherwise quiet.")
    return verdict + (" Measured: " + "; ".join(parts) + "." if parts else "")


def markdown(record: dict) -> str:
    m = record["machine"]
    mode = record["mode"]
    lines = ["# Benchmark results", "",
             f"Written by `{record['command']}` on {record['date']} in {record['wall_s']:.0f} s"
             + (" (a `--quick` run: fewer steps, smaller training batches and fewer repeats than the full run; "
                "see benchmarks/README.md)." if mode == "quick" else
                " (a `--tiny` run: it checks the harness, its numbers mean nothing)." if mode == "tiny" else
                " (the full run)."), "",
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, "
             f"{'GPU: ' + m['gpu'] if m['gpu'] else 'no GPU'}; {m['platform']}",
             f"- Python {record['python']}, torch {record['torch']} ({m['torch_threads']} threads by default)",
             f"- conditions: {conditions(record)}", "",
             "Composer's code and the bare baseline take turns step by step (training: each keeps its fastest "
             "step; generation: one token's step each in the same run, tokens/s from the median step); whole "
             "processes are timed best of N, and \"idle\" means without the busy processes the suite starts "
             "itself. Every number, with the medians and each step's or run's time, is in "
             f"[{record['json_name']}]({record['json_link']}).", ""]
    targeted = [(s, m) for s in record["sections"].values() for m in s["measurements"] if m["target"]]
    met = sum(m["met"] is True for _, m in targeted)
    lines += ["## Targets", "", f"{met} of {len(targeted)} met." if targeted else "No targets in these sections.",
              ""]
    if targeted:
        lines += md_table(["section", "measurement", "value", "target", "result"],
                          [[name_of(record, s), m["name"], show(m["value"], m["unit"]), m["target"],
                            f"**{m['verdict']}**" if m["verdict"] == "MISSED" else m["verdict"]] for s, m in targeted])
    for name, s in record["sections"].items():
        lines += ["", f"## {name}: {s['title']}", ""]
        if s["status"] != "ran":
            lines += [f"{s['status']}."]
            continue
        lines += md_table(["measurement", "value", "target", "result", "note"],
                          [[m["name"], show(m["value"], m["unit"]), m["target"] or "-", m["verdict"], m["note"]]
                           for m in s["measurements"]])
        for table in s["tables"]:
            lines += ["", f"{table['title']}:", ""] + md_table(table["columns"], table["rows"])
        shown = {k: v for k, v in s["settings"].items() if k not in ("imports_ms",)}
        lines += ["", "Settings: " + "; ".join(f"{k} {json.dumps(v) if isinstance(v, dict | list) else v}"
                                                for k, v in shown.items()) + "."]
        lines += [f"Note: {n}" for n in s["notes"]]
    return "\n".join(lines) + "\n"


def name_of(record: dict, section: dict) -> str:
    return next(name for name, s in record["sections"].items() if s is section)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer steps, smaller batches, fewer repeats: every "
                      "section in about 3 minutes on 2 CPU cores")
    size.add_argument("--tiny", action="store_true", help="toy sizes that only check the harness runs (tests)")
    parser.add_argument("--only", metavar="SECTION[,SECTION]",
                        help=f"run these sections only, of: {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, metavar="PATH",
                        help="write the tables here, and the JSON beside it (PATH with .json); default for a run of "
                             f"every section: {DEFAULT_MD.relative_to(HERE.parent)} and "
                             f"{DEFAULT_JSON.relative_to(HERE.parent)}; a run with --only or --tiny writes only "
                             "with --out")
    parser.add_argument("--threads", type=int, help="torch threads for the CPU training section (default 1: on a "
                        "shared machine more threads make step times vary many times over)")
    args = parser.parse_args(argv)
    names = list(SECTIONS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in SECTIONS]
        if unknown or not names:
            parser.error(f"unknown section {', '.join(unknown) or '(none)'}; choose from {', '.join(SECTIONS)}")
    args.sections = names
    if args.out is not None and args.out.suffix == ".json":
        parser.error("--out names the Markdown file (the JSON goes beside it, PATH with .json)")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads takes a positive number")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    command = "python -m benchmarks" + "".join(" " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    partial = bool(args.only) or args.tiny
    if args.out is not None:
        md_path, json_path = args.out, args.out.with_suffix(".json")
    elif not partial:
        md_path, json_path = DEFAULT_MD, DEFAULT_JSON
    else:
        md_path = json_path = None

    import torch

    record = {"command": command, "argv": sys.argv if argv is None else [sys.argv[0], *argv], "mode": mode,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "python": platform.python_version(), "torch": torch.__version__, "loadavg_start": loadavg(),
              "env": {k: os.environ[k] for k in ("COMPOSER_THREADS", "OMP_NUM_THREADS") if k in os.environ}}
    print(f"{command}: {mode} sizes; {record['machine']['cpu']}, {record['machine']['cores']} cores, "
          f"torch {record['torch']}; load average {record['loadavg_start']}", flush=True)
    account = CpuAccount()
    sections = {}
    for name in args.sections:
        sizes = dict(SIZES[mode][name])
        if name == "train" and args.threads:
            sizes["threads"] = args.threads
        sections[name] = run_section(name, sizes)
    cpu = account.result()
    record.update({"loadavg_end": loadavg(), "wall_s": cpu["wall_s"], "cpu": cpu,
                   "shared": cpu.get("other_work_share", 0) > SHARED or (record["loadavg_start"] or [0])[0] > 1.0,
                   "sections": {name: s.as_dict() for name, s in sections.items()}})
    targeted = [m for s in sections.values() for m in s.measures if m.target]
    record["summary"] = {"targets": len(targeted), "met": sum(m.met is True for m in targeted),
                         "missed": sum(m.met is False for m in targeted),
                         "failed_sections": [n for n, s in sections.items() if s.status.startswith("failed")]}
    met = f"{record['summary']['met']} of {len(targeted)} targets met" if targeted else "no targets in these sections"
    print(f"\n{met}; {cpu['wall_s']:.0f} s. {conditions(record)}", flush=True)
    if md_path is None:
        print("not written: a run with --only or --tiny writes only where --out says", flush=True)
    else:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        record["json_name"] = json_path.name
        try:
            record["json_link"] = os.path.relpath(json_path, md_path.parent)
        except ValueError:
            record["json_link"] = str(json_path)
        md_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(record, indent=1) + "\n")
        md_path.write_text(markdown(record))
        print(f"wrote {md_path} and {json_path}", flush=True)
    return 1 if record["summary"]["failed_sections"] else 0
