"""Locks that say who holds them: one training run per run folder, one fine-tune per style name.

A lock is an OS file lock (``flock``) on a small file that records the holder (pid, host, start time). The
kernel lets go of it when the holder exits, however it exits (kill -9 included), so a lock left by a killed
process is taken over by the next run without a question; while the holder lives, a second one is refused
with a message naming it.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from composer.api import ComposerError

try:
    import fcntl
except ImportError:  # Windows: msvcrt locks a byte range instead
    fcntl = None
    import msvcrt


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def holder(path: Path) -> str:
    """Who holds the lock at ``path``, in words (as it recorded itself)."""
    try:
        info = json.loads(Path(path).read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class Lock:
    """An exclusive lock on ``path`` for as long as the ``with`` block runs; ``what`` names the thing locked
    in the refusal (``"run folder runs/x"``) and ``hint`` says what to do instead."""

    def __init__(self, path: str | Path, what: str, hint: str = "") -> None:
        self.path, self.what, self.hint = Path(path), what, hint
        self.fd: int | None = None

    def __enter__(self) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                raise ComposerError(f"{self.what} is in use by {holder(self.path)}"
                                    + (f"; {self.hint}" if self.hint else ""))
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file as we locked it: lock the new one
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still held, so no one locks a file about to vanish
            os.close(self.fd)
            self.fd = None
