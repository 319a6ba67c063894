"""Live MIDI out: a generated piece sent to a MIDI output port in real time, so that a DAW or a hardware
synth can play and record it (``composer play``).

Three parts, each testable without MIDI hardware:

- :func:`messages` turns a PrettyMIDI into time-stamped mido messages: one channel per instrument as
  pretty_midi's own file writer assigns them (drums on channel 10), program changes first, controllers,
  pitch bends, and every note's on and off.
- :func:`play` sends them on time and, when stopped (Ctrl-C) or failing, turns off every note it started.
  The clock and the sleep are arguments, so tests run a minute of music in no time.
- :func:`output_ports` wraps mido's backend (python-rtmidi by default): listing, choosing and opening
  ports, with each way of failing turned into one clear :class:`ComposerError`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pretty_midi

from composer import ComposerError, WriteSkipped

if TYPE_CHECKING:
    import mido

    from composer.session import Session

Timed = tuple[float, "mido.Message"]  # (seconds from the start, message)

DRUM_CHANNEL = 9  # channel 10 as musicians count
MELODIC_CHANNELS = [c for c in range(16) if c != DRUM_CHANNEL]
ALL_NOTES_OFF, SUSTAIN = 123, 64
INSTALL = "pip install 'lstm-composer[midi-out]'"
NO_PORTS = ("no MIDI output ports: start a software synth (FluidSynth, Qsynth), connect a MIDI device, or use "
            "--virtual and connect your DAW to the port it opens")
VIRTUAL_NAME = "composer"

# Messages at the same instant go out in this order: a program before the notes it should colour, and a
# note's off before a new note's on, so that a repeated pitch sounds again instead of being cut.
_ORDER = {"program_change": 0, "note_off": 1, "control_change": 2, "pitchwheel": 3, "note_on": 4}


class Port(Protocol):
    """What :func:`play` needs of an output port (a mido port, or a test's fake)."""

    def send(self, message: mido.Message) -> None: ...


# ---------------------------------------------------------------------------------- the piece


def channels(pm: pretty_midi.PrettyMIDI) -> list[int]:
    """Each instrument's MIDI channel (0-based), as pretty_midi assigns them when it writes a file: drums on
    9, the others on the remaining 15 in turn; so the port hears what the written .mid holds."""
    melodic = 0
    result = []
    for inst in pm.instruments:
        if inst.is_drum:
            result.append(DRUM_CHANNEL)
        else:
            result.append(MELODIC_CHANNELS[melodic % len(MELODIC_CHANNELS)])
            melodic += 1
    return result


def messages(pm: pretty_midi.PrettyMIDI) -> list[Timed]:
    """The piece as (seconds, message) pairs in the order they are to be sent. Notes of no length are left
    out (a synth would not sound them, and their off could overtake their on)."""
    import mido

    def clamp(value: Any, low: int, high: int) -> int:
        return max(low, min(high, int(value)))

    timed: list[Timed] = []
    for inst, channel in zip(pm.instruments, channels(pm)):
        timed.append((0.0, mido.Message("program_change", channel=channel, program=clamp(inst.program, 0, 127))))
        for cc in inst.control_changes:
            timed.append((max(0.0, float(cc.time)), mido.Message("control_change", channel=channel,
                                                                 control=clamp(cc.number, 0, 127),
                                                                 value=clamp(cc.value, 0, 127))))
        for bend in inst.pitch_bends:
            timed.append((max(0.0, float(bend.time)), mido.Message("pitchwheel", channel=channel,
                                                                   pitch=clamp(bend.pitch, -8192, 8191))))
        for note in inst.notes:
            start, end = max(0.0, float(note.start)), float(note.end)
            if end <= start:
                continue
            pitch = clamp(note.pitch, 0, 127)
            timed.append((start, mido.Message("note_on", channel=channel, note=pitch,
                                              velocity=clamp(note.velocity, 1, 127))))
            timed.append((end, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
    timed.sort(key=lambda pair: (pair[0], _ORDER[pair[1].type]))
    return timed


def playable(session: Session) -> None:
    """Refuse, before any generating, a style whose pieces cannot become MIDI: music styles make PrettyMIDI,
    and other modalities play only through a ``mid`` writer (ABC tunes); drawings have none."""
    modality = session.encoder.modality
    if modality != "midi" and (modality, "mid") not in session.registry.writers:
        raise ComposerError(f"play needs a music style; {session.name} makes {modality}, not music "
                            "(`composer styles` lists them)")


def to_midi(session: Session, item: Any) -> pretty_midi.PrettyMIDI:
    """A generated item as PrettyMIDI: a music style's items are; another modality's go through its ``mid``
    writer (an ABC tune rendered by music21) and are read back."""
    if isinstance(item, pretty_midi.PrettyMIDI):
        return item
    playable(session)
    writer = session.registry.writer(session.encoder.modality, "mid")
    with tempfile.TemporaryDirectory(prefix="composer-play-") as folder:
        path = Path(folder) / "piece.mid"
        try:
            writer.write(item, path)
        except WriteSkipped as exc:
            raise ComposerError(f"cannot play this piece as MIDI: {exc}; try another --seed") from None
        return pretty_midi.PrettyMIDI(str(path))


# ------------------------------------------------------------------------------------ playing


def silence(port: Port, sounding: set[tuple[int, int]], used: set[int]) -> None:
    """Turn off what may sound: a note-off for each note started and not ended, then sustain off and
    all-notes-off on every channel used (for a synth that missed a message). Best effort: a port that fails
    here is left alone, so that the reason for stopping is what the user sees."""
    import mido

    try:
        for channel, note in sorted(sounding):
            port.send(mido.Message("note_off", channel=channel, note=note, velocity=0))
        for channel in sorted(used):
            port.send(mido.Message("control_change", channel=channel, control=SUSTAIN, value=0))
            port.send(mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF, value=0))
    except Exception:  # already stopping because of something else
        pass
    sounding.clear()


def play(timed: Sequence[Timed], port: Port, *, clock: Callable[[], float] = time.perf_counter,
         sleep: Callable[[float], None] = time.sleep, progress: Callable[[float], None] | None = None,
         tick: float = 0.1) -> float:
    """Send each message at its time and return the seconds it took.

    Every wait aims at ``start + time`` on one monotonic clock, so a late wake-up delays one message, never
    the rest (sleeping the gaps between messages would add each oversleep to all that follow). Waits are at
    most ``tick`` long so that ``progress(elapsed)`` can be called. Stopped by Ctrl-C (KeyboardInterrupt,
    re-raised) or by a failing port, it first ends every note it started (see :func:`silence`)."""
    sounding: set[tuple[int, int]] = set()
    used: set[int] = set()
    start = clock()
    try:
        for at, message in timed:
            while (left := start + at - clock()) > 0:
                sleep(min(left, tick))
                if progress is not None:
                    progress(clock() - start)
            starts = message.type == "note_on" and message.velocity > 0
            ends = message.type == "note_off" or (message.type == "note_on" and not starts)
            if starts:
                sounding.add((message.channel, message.note))  # before sending: cut off mid-send, it gets its off
            if hasattr(message, "channel"):
                used.add(message.channel)
            port.send(message)
            if ends:
                sounding.discard((message.channel, message.note))
    except BaseException:
        silence(port, sounding, used)
        raise
    elapsed = clock() - start
    if progress is not None:
        progress(elapsed)
    return elapsed


# --------------------------------------------------------------------------------------- ports


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hide what C libraries print straight to file descriptor 2 (ALSA's "open /dev/snd/seq failed" lines)
    while a backend is probed: the exception that follows says it once, in one line."""
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to borrow (a pythonw-like host): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def one_line(exc: BaseException) -> str:
    """An exception's text on one line, without a final full stop (it goes inside our own sentence)."""
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def alsa_hint(text: str) -> str:
    """What to check when rtmidi's ALSA sequencer cannot start (a container or WSL without /dev/snd/seq)."""
    return "; on Linux the ALSA sequencer must be available (/dev/snd/seq, the snd-seq module)" \
        if "alsa" in text.lower() else ""


def backend_error(exc: BaseException) -> ComposerError:
    """A backend's failure to start (no ALSA sequencer in a container, no CoreMIDI) as one line."""
    text = one_line(exc)
    return ComposerError(f"cannot start MIDI output ({text}){alsa_hint(text)}")


class OutputPorts:
    """The MIDI output ports of mido's backend (python-rtmidi unless ``MIDO_BACKEND`` names another)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def names(self) -> list[str]:
        try:
            with quiet_native_stderr():
                return list(dict.fromkeys(self.backend.get_output_names()))
        except Exception as exc:  # a backend's own error types vary by platform
            raise backend_error(exc) from None

    def choose(self, wanted: str | None) -> tuple[str, bool]:
        """The port to play on and whether it was picked for the user: ``wanted`` as an exact name, else as
        a unique part of one (any case); none wanted, the first port."""
        names = self.names()
        if not names:
            raise ComposerError(NO_PORTS)
        if wanted is None:
            return names[0], True
        if wanted in names:
            return wanted, False
        matches = [name for name in names if wanted.lower() in name.lower()]
        if len(matches) == 1:
            return matches[0], False
        if matches:
            raise ComposerError(f"'{wanted}' matches {len(matches)} MIDI output ports: {', '.join(matches)}; "
                                "give more of the name")
        raise ComposerError(f"no MIDI output port matches '{wanted}' (ports: {', '.join(names)})")

    def open(self, name: str, virtual: bool = False) -> Any:
        """An open mido output port; ``virtual``: a new port called ``name`` that other programs connect to
        (under rtmidi, in a client also called ``composer``, so that a DAW lists it as ``composer:NAME``
        rather than ``RtMidiOut Client:NAME``)."""
        named = {"client_name": VIRTUAL_NAME} if virtual and "rtmidi" in str(getattr(self.backend, "name", "")) \
            else {}
        try:
            with quiet_native_stderr():
                return self.backend.open_output(name, virtual=virtual, **named)
        except Exception as exc:
            text = one_line(exc)
            if virtual:
                raise ComposerError(f"cannot open a virtual MIDI port ({text})" + (alsa_hint(text) or (
                    "; virtual ports need ALSA or JACK (Linux) or CoreMIDI (macOS): on Windows use a loopback "
                    "driver such as loopMIDI and --port"))) from None
            raise ComposerError(f"cannot open MIDI output '{name}' ({text}){alsa_hint(text)}") from None


def output_ports() -> OutputPorts:
    """mido's backend, loaded: a clear error naming the extra to install when mido or python-rtmidi is not."""
    try:
        import mido
    except ImportError:
        raise ComposerError(f"live MIDI needs mido and python-rtmidi: {INSTALL}") from None
    backend = mido.backend
    try:
        backend.load()
    except ImportError as exc:
        missing = "python-rtmidi" if "rtmidi" in str(exc) else (getattr(exc, "name", None) or str(exc))
        raise ComposerError(f"live MIDI needs {missing}, which is not installed: {INSTALL}") from None
    return OutputPorts(backend)
