"""Ctrl-C or SIGTERM while worker processes read a corpus stops them, and the caller exits cleanly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

READER = """
import os, signal, sys, time
from composer import CorpusSource, plugins
from composer.data import load_corpus

signal.signal(signal.SIGINT, signal.default_int_handler)  # a test runner in the background ignores SIGINT
if sys.argv[2] == "train":
    from composer.training import _raise_on_sigterm

    _raise_on_sigterm()


def load(ref):
    open(os.path.join(sys.argv[1], f"{os.getpid()}.pid"), "w").close()
    time.sleep(120)
    return ["abc"]


def names(_):
    return [f"slow:{k}" for k in range(16)]


source = CorpusSource("slow", "toy", load, list=names)
encoder = plugins.get_registry().encoder("toy")()
encoder.fit(["abc"])
try:
    load_corpus("slow:all", encoder, {"slow": source}, fitted=True, workers=2, use_cache=False, progress=False)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
    sys.exit(130)
except SystemExit as exc:
    print("SystemExit", exc.code)
    raise
"""


def running(pid: int) -> bool:
    """Whether a process runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; workers fork on Linux only")
@pytest.mark.parametrize("sig, sigterm_handler, ends_with", [
    (signal.SIGINT, "default", ("KeyboardInterrupt", 130)),  # Ctrl-C: the whole process group gets it
    (signal.SIGTERM, "default", ("SystemExit 143", 143)),  # kill PID: only the reading process gets it
    (signal.SIGTERM, "train", ("KeyboardInterrupt", 130)),  # training turns SIGTERM into KeyboardInterrupt
])
def test_a_signal_while_reading_stops_the_workers(toy, tmp_path, sig, sigterm_handler, ends_with):
    marks, out, err = tmp_path / "marks", tmp_path / "out", tmp_path / "err"
    marks.mkdir()
    with open(out, "w") as stdout, open(err, "w") as stderr:  # files: a leaked worker would hold pipes open
        proc = subprocess.Popen([sys.executable, "-c", READER, str(marks), sigterm_handler], env=toy,
                                stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(marks.iterdir())) < 2:  # both workers are reading
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.1)
        workers = [int(mark.stem) for mark in marks.iterdir()]
        assert all(running(pid) for pid in workers)
        sent = time.monotonic()
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        proc.wait(timeout=60)
        assert time.monotonic() - sent < 30  # at once, not when the two-minute reads end
        assert (out.read_text().strip(), proc.returncode) == ends_with, err.read_text()
        assert "Traceback" not in err.read_text()
        assert not [pid for pid in workers if running(pid)]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the reading process's session
        except ProcessLookupError:
            pass
