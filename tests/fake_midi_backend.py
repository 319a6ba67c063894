"""A mido backend without MIDI hardware, for ``composer play`` tests (``MIDO_BACKEND=fake_midi_backend``).

Its output ports are the comma-separated names in ``FAKE_MIDI_PORTS``; virtual ports open only with
``FAKE_MIDI_VIRTUAL=1``. Every message sent goes into ``FAKE_MIDI_LOG`` as a line ``SECONDS PORT|MESSAGE``
(``time.perf_counter()`` when it was sent), flushed at once so that a process stopped by Ctrl-C leaves
all it sent behind."""

from __future__ import annotations

import os
import time

from mido.ports import BaseOutput


def port_names() -> list[str]:
    return [name for name in os.environ.get("FAKE_MIDI_PORTS", "").split(",") if name]


def get_devices(**kwargs) -> list[dict]:
    return [{"name": name, "is_input": False, "is_output": True} for name in port_names()]


class Output(BaseOutput):
    def _open(self, virtual: bool = False, **kwargs) -> None:
        if virtual and os.environ.get("FAKE_MIDI_VIRTUAL") != "1":
            raise OSError("virtual ports are not supported by this backend")
        if not virtual and self.name not in port_names():
            raise OSError(f"unknown port {self.name!r}")
        self.log = open(os.environ["FAKE_MIDI_LOG"], "a", encoding="utf-8")  # closed in _close

    def _send(self, message) -> None:
        self.log.write(f"{time.perf_counter():.6f} {self.name}|{message}\n")
        self.log.flush()

    def _close(self) -> None:
        self.log.close()
