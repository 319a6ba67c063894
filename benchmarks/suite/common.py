"""What every section of the suite shares: measurements with their targets, the machine's description and
load, child processes timed with their peak memory, busy processes that load the CPU, and statistics."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the repository


@dataclass
class Measure:
    """One number: what it is, its value and unit, its target (empty: none set) and whether it met it."""

    name: str
    value: float | None
    unit: str
    target: str = ""  # e.g. ">= 0.95", "<= 2.5 s"; empty where the issue sets no target
    met: bool | None = None  # None where there is no target
    note: str = ""
    detail: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "-" if self.met is None else "MET" if self.met else "MISSED"

    def shown(self) -> str:
        return show(self.value, self.unit)

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def show(value: Any, unit: str = "") -> str:
    """A value as the tables print it."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if unit == "ratio":
            text = f"{value:.3f}"
        elif unit == "x":
            text = f"{value:.2f}"
        elif abs(value) >= 1000:
            text = f"{value:,.0f}"
        elif abs(value) >= 100:
            text = f"{value:.0f}"
        elif abs(value) >= 10:
            text = f"{value:.1f}"
        else:
            text = f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    if unit in ("", "ratio"):
        return text
    return f"{text}{unit}" if unit == "x" else f"{text} {unit}"


def at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


class Section:
    """The results of one section as it runs: measurements (printed as they come) and detail tables."""

    def __init__(self, name: str, title: str) -> None:
        self.name, self.title = name, title
        self.measures: list[Measure] = []
        self.tables: list[dict] = []  # {"title", "columns", "rows"} for RESULTS.md
        self.settings: dict = {}
        self.notes: list[str] = []
        self.status = "ran"

    def add(self, measure: Measure) -> Measure:
        self.measures.append(measure)
        target = f"  target {measure.target}: {measure.verdict}" if measure.target else ""
        note = f"  ({measure.note})" if measure.note else ""
        print(f"  {measure.name:58} {measure.shown():>10}{target}{note}", flush=True)
        return measure

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.tables.append({"title": title, "columns": columns, "rows": rows})

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def say(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def as_dict(self) -> dict:
        return {"title": self.title, "status": self.status, "settings": self.settings, "notes": self.notes,
                "measurements": [m.as_dict() for m in self.measures], "tables": self.tables}


@dataclass
class Shape:
    """A training shape and how many steps of it to time."""

    layers: int
    hidden: int
    steps: int  # timed steps of each loop
    warmup: int  # untimed steps first

    @property
    def label(self) -> str:
        return f"{self.layers}x{self.hidden}"


# ---------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    return None


def gpu() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return None
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return ", ".join(names)


def machine() -> dict:
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": ram_gib(), "gpu": gpu(),
            "platform": platform.platform(), "torch_threads": torch.get_num_threads()}


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class CpuAccount:
    """CPU time the whole machine spent busy over an interval, minus what this process and the children it
    waited for spent: the share other work took (Linux; elsewhere nothing is reported)."""

    def __init__(self) -> None:
        self.start_wall = time.perf_counter()
        self.start_stat = self._stat()
        self.start_own = self._own()

    @staticmethod
    def _stat() -> list[int] | None:
        try:
            first = Path("/proc/stat").read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        return [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def result(self) -> dict:
        wall = time.perf_counter() - self.start_wall
        end = self._stat()
        own = self._own() - self.start_own
        out = {"wall_s": round(wall, 1), "own_cpu_s": round(own, 1)}
        if self.start_stat is None or end is None:
            return out
        tick = os.sysconf("SC_CLK_TCK")
        delta = [(b - a) / tick for a, b in zip(self.start_stat, end)]
        user, nice, system, idle, iowait, irq, softirq, steal = delta
        busy = user + nice + system + irq + softirq
        cores = os.cpu_count() or 1
        other = max(0.0, busy - own)
        out.update({"machine_busy_cpu_s": round(busy, 1), "other_work_cpu_s": round(other, 1),
                    "other_work_share": round(other / max(wall * cores, 1e-9), 3), "steal_s": round(steal, 1)})
        return out


# ------------------------------------------------------------------------------------------ processes


def child_env(**extra: str) -> dict:
    """The environment for child processes: this checkout's code and plugins first on the path."""
    env = dict(os.environ)
    paths = [str(ROOT), str(ROOT / "plugins")] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra)
    return env


@dataclass
class Ran:
    seconds: float  # wall time from start to exit
    peak_rss_mb: float  # the largest resident size of the process (or of a process it waited for), MiB
    stdout: str
    stderr: str
    returncode: int
    started: float = 0.0  # time.monotonic() as the process was started and when it had ended: one clock for
    ended: float = 0.0  # all processes of the machine, so a child's own readings of it fall in between


# A small Python process starts each measured command and waits for it: the kernel counts the memory of
# the process a command was started from (at the fork) in the command's peak, so it must not be this one,
# which has torch loaded and models built by then.
LAUNCHER = """
import json, os, subprocess, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.monotonic()
child = subprocess.Popen(argv)
_, status, usage = os.wait4(child.pid, 0)
ended = time.monotonic()
with open(report, "w") as f:
    json.dump({"started": started, "ended": ended, "maxrss_kb": usage.ru_maxrss,
               "returncode": os.waitstatus_to_exitcode(status)}, f)
"""


def run_process(argv: list[str], env: dict | None = None, cwd: str | Path | None = ROOT,
                check: bool = True) -> Ran:
    """Run a command to its end (in the repository, by default): wall time and peak resident memory (the
    kernel's record for it and the processes it waited for, from ``os.wait4`` in a small launcher process);
    its output is kept in temporary files so that pipes never stall it."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report, out_path, err_path = (Path(tmp) / name for name in ("report.json", "out", "err"))
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            launched = subprocess.run(python("-c", LAUNCHER, str(report), *argv), env=env, cwd=cwd, stdout=out,
                                      stderr=err, stdin=subprocess.DEVNULL)
        stdout, stderr = (p.read_text(errors="replace") for p in (out_path, err_path))
        if launched.returncode != 0 or not report.exists():
            raise RuntimeError(f"the launcher of {' '.join(argv[:6])} failed: {stderr.strip()[-500:]}")
        info = json.loads(report.read_text())
    ran = Ran(info["ended"] - info["started"], info["maxrss_kb"] / 1024, stdout, stderr, info["returncode"],
              info["started"], info["ended"])
    if check and ran.returncode != 0:
        tail = ran.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{' '.join(argv[:6])} ... exited with {ran.returncode}: {tail[0]}")
    return ran


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` processes spinning in a Python loop for the duration (started here, ended here)."""
    procs = [subprocess.Popen(python("-c", "while True: pass"), stdin=subprocess.DEVNULL) for _ in range(count)]
    try:
        if procs:
            time.sleep(0.5)  # let them get going
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


# ------------------------------------------------------------------------------------------ statistics


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed_alternately(runs: dict[str, Any], rounds: int, warmup: int, sync: Any = None) -> dict[str, list[float]]:
    """Call each of ``runs`` (name -> function of the round number) once per round, in alternating order
    (forward on even rounds, backward on odd ones), so that load on the machine falls on all of them alike;
    the seconds of each call after ``warmup`` rounds, per name. ``sync`` is called before each clock read
    (a CUDA synchronize)."""
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + rounds):
        for name in names if i % 2 == 0 else reversed(names):
            if sync:
                sync()
            start = time.perf_counter()
            runs[name](i)
            if sync:
                sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times
