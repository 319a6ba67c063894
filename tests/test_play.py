"""``composer play``: live MIDI out, tested without MIDI hardware.

The message building and the scheduler are tested with a fake port and a fake clock (a minute of music in
no time); the command end to end through a fake mido backend (tests/fake_midi_backend.py, chosen with
``MIDO_BACKEND`` as a user would choose another backend). Only the last test needs a real backend
(python-rtmidi and a system MIDI service) and is skipped where there is none."""

from __future__ import annotations

import functools
import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import mido
import pretty_midi
import pytest
from click.testing import CliRunner
from composer_midi import live

from composer import ComposerError

TESTS = Path(__file__).parent
INSTALL = "pip install 'lstm-composer[midi-out]'"


def piece(*instruments: tuple[int, bool, list[tuple[int, float, float]]]) -> pretty_midi.PrettyMIDI:
    """A PrettyMIDI of (program, is_drum, [(pitch, start, end), ...]) instruments."""
    pm = pretty_midi.PrettyMIDI()
    for program, is_drum, notes in instruments:
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
        inst.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for p, s, e in notes]
        pm.instruments.append(inst)
    return pm


def still_sounding(sent: list[mido.Message]) -> set[tuple[int, int]]:
    """The notes a synth would still be sounding after these messages (all-notes-off silences a channel)."""
    on: set[tuple[int, int]] = set()
    for msg in sent:
        if msg.type == "note_on" and msg.velocity > 0:
            on.add((msg.channel, msg.note))
        elif msg.type in ("note_on", "note_off"):
            on.discard((msg.channel, msg.note))
        elif msg.type == "control_change" and msg.control == live.ALL_NOTES_OFF:
            on = {key for key in on if key[0] != msg.channel}
    return on


def unpaired(sent: list[mido.Message]) -> Counter:
    """Note-ons minus note-offs per (channel, note): empty when every note that started has ended."""
    count: Counter = Counter()
    for msg in sent:
        if msg.type == "note_on" and msg.velocity > 0:
            count[(msg.channel, msg.note)] += 1
        elif msg.type in ("note_on", "note_off"):
            count[(msg.channel, msg.note)] -= 1
    return +count


class FakeClock:
    """A clock that moves only when slept on; ``late`` seconds are added to every sleep (a busy machine)."""

    def __init__(self, late: float = 0.0, interrupt_at: float | None = None) -> None:
        self.now, self.late, self.interrupt_at, self.sleeps = 100.0, late, interrupt_at, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + self.late
        if self.interrupt_at is not None and self.now - 100.0 >= self.interrupt_at:
            raise KeyboardInterrupt


class FakePort:
    """Records each message with the time (on ``clock``) it was sent."""

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock, self.sent = clock, []

    def send(self, message: mido.Message) -> None:
        self.sent.append((self.clock(), message))

    @property
    def messages(self) -> list[mido.Message]:
        return [message for _, message in self.sent]


# --------------------------------------------------------------------------------- messages


def test_messages_put_programs_first_drums_on_channel_10_and_pair_every_note():
    pm = piece((52, False, [(60, 0.0, 1.0), (62, 1.0, 2.0)]), (33, False, [(36, 0.5, 2.0)]),
               (0, True, [(42, 0.0, 0.1), (38, 1.0, 1.1)]))
    timed = live.messages(pm)
    sent = [message for _, message in timed]
    assert [m.type for m in sent[:3]] == ["program_change"] * 3
    assert [(m.channel, m.program) for m in sent[:3]] == [(0, 52), (1, 33), (9, 0)]
    assert {m.channel for m in sent if m.type == "note_on" and m.note in (42, 38)} == {9}
    assert {m.channel for m in sent if m.type == "note_on" and m.note == 36} == {1}
    assert unpaired(sent) == Counter()
    assert [t for t, _ in timed] == sorted(t for t, _ in timed)
    starts = sorted((t, m.channel, m.note) for t, m in timed if m.type == "note_on")
    assert starts == [(0.0, 0, 60), (0.0, 9, 42), (0.5, 1, 36), (1.0, 0, 62), (1.0, 9, 38)]
    assert (2.0, "note_off", 1, 36) in [(t, m.type, m.channel, m.note) for t, m in timed if m.type == "note_off"]


def test_a_repeated_pitch_ends_before_it_starts_again_and_empty_notes_are_left_out():
    timed = live.messages(piece((0, False, [(60, 0.0, 1.0), (60, 1.0, 2.0), (64, 0.5, 0.5)])))
    assert [(t, m.type) for t, m in timed if m.type.startswith("note")] == [
        (0.0, "note_on"), (1.0, "note_off"), (1.0, "note_on"), (2.0, "note_off")]


def test_channels_follow_the_written_midi_file_past_fifteen_instruments(tmp_path):
    pm = piece(*[(i, False, [(60 + i, 0.0, 0.5)]) for i in range(17)], (0, True, [(36, 0.0, 0.5)]))
    assert live.channels(pm) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 0, 1, 9]
    pm.write(str(tmp_path / "p.mid"))
    written = {(m.channel, m.note) for m in mido.MidiFile(tmp_path / "p.mid") if m.type == "note_on" and m.velocity}
    played = {(m.channel, m.note) for _, m in live.messages(pm) if m.type == "note_on"}
    assert played == written


# ---------------------------------------------------------------------------------- playing


def test_each_message_goes_out_at_its_time():
    clock = FakeClock()
    port = FakePort(clock)
    timed = live.messages(piece((0, False, [(60, 0.0, 0.25), (62, 0.5, 1.5)]), (0, True, [(36, 1.0, 1.2)])))
    reported = []
    elapsed = live.play(timed, port, clock=clock, sleep=clock.sleep, progress=reported.append)
    assert [m for _, m in port.sent] == [m for _, m in timed]
    assert [round(t - 100.0, 9) for t, _ in port.sent] == [t for t, _ in timed]
    assert max(clock.sleeps) <= 0.1 + 1e-9  # short waits, so that progress can be shown
    assert elapsed == pytest.approx(1.5) and reported[-1] == pytest.approx(1.5)
    assert reported == sorted(reported)


def test_late_wake_ups_delay_one_message_and_never_add_up():
    clock = FakeClock(late=0.004)  # every sleep 4 ms long, over a minute of notes every 0.25 s
    port = FakePort(clock)
    timed = live.messages(piece((0, False, [(60 + i % 12, i * 0.25, i * 0.25 + 0.2) for i in range(240)])))
    live.play(timed, port, clock=clock, sleep=clock.sleep)
    lateness = [(sent - 100.0) - at for (sent, _), (at, _) in zip(port.sent, timed)]
    assert min(lateness) >= 0  # never early
    assert max(lateness) <= 0.004 + 1e-9  # one sleep's lateness, not the sum of 480 of them (~1.9 s)


def test_ctrl_c_stops_at_once_and_leaves_no_note_sounding():
    clock = FakeClock(interrupt_at=1.3)
    port = FakePort(clock)
    pm = piece((52, False, [(60, 0.0, 2.0), (64, 1.0, 3.0)]), (40, False, [(48, 0.5, 4.0)]),
               (0, True, [(36, 1.2, 1.25)]))
    with pytest.raises(KeyboardInterrupt):
        live.play(live.messages(pm), port, clock=clock, sleep=clock.sleep)
    sent = port.messages
    assert {(m.channel, m.note) for m in sent if m.type == "note_on"} == {(0, 60), (0, 64), (1, 48), (9, 36)}
    assert unpaired(sent) == Counter() and still_sounding(sent) == set()
    assert all(t - 100.0 < 1.3 + 0.1 for t, _ in port.sent)  # nothing sent after the interrupt but the silence
    cut = [(m.channel, m.control) for m in sent if m.type == "control_change"]
    assert sorted(cut) == sorted((c, n) for c in (0, 1, 9) for n in (live.SUSTAIN, live.ALL_NOTES_OFF))


def test_a_port_that_fails_mid_piece_gets_the_sounding_notes_turned_off():
    class Flaky(FakePort):
        def send(self, message):
            if message.type == "note_on" and message.note == 64:
                raise OSError("device unplugged")
            super().send(message)

    clock = FakeClock()
    port = Flaky(clock)
    with pytest.raises(OSError, match="unplugged"):
        live.play(live.messages(piece((0, False, [(60, 0.0, 2.0), (64, 1.0, 3.0)]))), port, clock=clock,
                  sleep=clock.sleep)
    sent = port.messages
    offs = [m.note for m in sent if m.type == "note_off"]
    assert 60 in offs and 64 in offs  # 64 too: its note-on failed, but it may have reached the synth
    assert still_sounding(sent) == set()


def test_with_the_real_clock_no_message_goes_out_early():
    port = FakePort()
    timed = live.messages(piece((0, False, [(60, 0.0, 0.1), (62, 0.1, 0.2), (64, 0.2, 0.3)])))
    start = time.perf_counter()
    live.play(timed, port)
    assert all(sent - start >= at for (sent, _), (at, _) in zip(port.sent, timed))
    assert time.perf_counter() - start < 0.3 + 2.0


def test_progress_redraws_one_line_on_a_terminal_and_stays_quiet_in_a_log():
    from composer_midi.commands import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, log = Terminal(), io.StringIO()
    for stream in (shown, log):
        progress = Progress(2.0, stream)
        for elapsed in (0.0, 0.05, 0.1, 1.0, 2.01):
            progress(elapsed)
        progress.close()
    assert shown.getvalue() == "\r     0.0 / 2.0 s\r     0.1 / 2.0 s\r     1.0 / 2.0 s\r     2.0 / 2.0 s\n"
    assert log.getvalue() == "" and progress.elapsed == 2.01


# ------------------------------------------------------------------------------------ ports


class FakeBackend:
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def get_output_names(self) -> list[str]:
        return self.names


def test_a_port_is_chosen_by_exact_name_or_unique_part_else_the_first():
    ports = live.OutputPorts(FakeBackend(["FLUID Synth (123):Synth input port (123:0) 128:0",
                                          "Midi Through:Midi Through Port-0 14:0", "IAC Driver Bus 1"]))
    assert ports.choose(None) == ("FLUID Synth (123):Synth input port (123:0) 128:0", True)
    assert ports.choose("fluid") == ("FLUID Synth (123):Synth input port (123:0) 128:0", False)
    assert ports.choose("IAC Driver Bus 1") == ("IAC Driver Bus 1", False)
    with pytest.raises(ComposerError, match="'port' matches 2 MIDI output ports: FLUID.*; give more of the name"):
        ports.choose("port")
    with pytest.raises(ComposerError, match=r"no MIDI output port matches 'nope' \(ports: FLUID Synth"):
        ports.choose("nope")
    with pytest.raises(ComposerError, match="no MIDI output ports: start a software synth"):
        live.OutputPorts(FakeBackend([])).choose(None)


# ------------------------------------------------------------------- the command, in process


@pytest.fixture
def fake_midi(tmp_path, monkeypatch):
    """mido's backend replaced by the fake one, with ports 'Fake Synth' and 'Other Synth'; returns the log."""
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("FAKE_MIDI_PORTS", "Fake Synth,Other Synth")
    monkeypatch.setenv("FAKE_MIDI_LOG", str(tmp_path / "midi.log"))
    monkeypatch.setattr(mido, "backend", mido.Backend("fake_midi_backend"))
    return tmp_path / "midi.log"


def invoke(args: list[str]):
    from composer.cli import cli

    return CliRunner().invoke(cli, args)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_list_ports_prints_one_per_line_or_says_there_are_none(fake_midi, monkeypatch):
    result = invoke(["play", "--list-ports"])
    assert result.exit_code == 0 and result.stdout == "Fake Synth\nOther Synth\n"
    monkeypatch.setenv("FAKE_MIDI_PORTS", "")
    result = invoke(["play", "--list-ports"])
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.startswith("no MIDI output ports: start a software synth (FluidSynth, Qsynth)")


def test_port_problems_are_one_line_errors_before_any_generating(fake_midi, monkeypatch):
    assert one_line_error(invoke(["play", "--style", "bach", "--port", "nope"])) == \
        "Error: no MIDI output port matches 'nope' (ports: Fake Synth, Other Synth)"
    assert one_line_error(invoke(["play", "--style", "bach", "--port", "synth"])) == \
        "Error: 'synth' matches 2 MIDI output ports: Fake Synth, Other Synth; give more of the name"
    assert one_line_error(invoke(["play", "--style", "bach", "--virtual"])).startswith(
        "Error: cannot open a virtual MIDI port (virtual ports are not supported by this backend); virtual ports "
        "need ALSA or JACK (Linux) or CoreMIDI (macOS)")
    monkeypatch.setenv("FAKE_MIDI_PORTS", "")
    assert one_line_error(invoke(["play", "--style", "bach"])).startswith(
        "Error: no MIDI output ports: start a software synth (FluidSynth, Qsynth), connect a MIDI device, or use "
        "--virtual")
    assert not fake_midi.exists()  # no port was opened


def test_a_style_that_is_not_music_is_refused(fake_midi):
    assert one_line_error(invoke(["play", "--style", "hershey"])) == \
        "Error: play needs a music style; hershey makes strokes, not music (`composer styles` lists them)"
    assert not fake_midi.exists()


@pytest.fixture
def instant(monkeypatch):
    """The command's playing on a fake clock: a piece plays in no time."""
    clock = FakeClock()
    monkeypatch.setattr(live, "play", functools.partial(live.play, clock=clock, sleep=clock.sleep))


def test_virtual_opens_a_port_named_composer_and_plays_on_it(fake_midi, monkeypatch, instant):
    monkeypatch.setenv("FAKE_MIDI_VIRTUAL", "1")
    result = invoke(["play", "--style", "bach", "--seed", "1", "--length", "1", "--virtual"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "virtual MIDI port 'composer' is open\n"
    assert result.stdout.startswith("played bach-1 (4 parts, 1 bar") and "on 'composer' (seed 1" in result.stdout
    sent = read_log(fake_midi)
    assert {port for _, port, _ in sent} == {"composer"} and unpaired([m for _, _, m in sent]) == Counter()


@pytest.mark.slow
def test_an_abc_tune_plays_through_its_midi_rendering_and_one_that_does_not_parse_is_refused(fake_midi, instant):
    result = invoke(["play", "--style", "irish", "--seed", "1", "--port", "fake"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("played irish-1 ('Ballinawain Maid', C|, 43 bars, parses, ")
    sent = [m for _, _, m in read_log(fake_midi)]
    assert sum(m.type == "note_on" for m in sent) > 100 and unpaired(sent) == Counter()
    cut = invoke(["play", "--style", "irish", "--seed", "1", "--length", "300", "--port", "fake"])
    assert one_line_error(cut).startswith("Error: cannot play this piece as MIDI: the tune does not parse as ABC")


def test_missing_mido_or_rtmidi_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rtmidi", None)  # None in sys.modules: importing it fails
    monkeypatch.delitem(sys.modules, "mido.backends.rtmidi", raising=False)
    monkeypatch.setattr(mido, "backend", mido.Backend("mido.backends.rtmidi"))
    assert one_line_error(invoke(["play", "--list-ports"])) == \
        f"Error: live MIDI needs python-rtmidi, which is not installed: {INSTALL}"
    monkeypatch.setitem(sys.modules, "mido", None)
    assert one_line_error(invoke(["play", "--style", "bach"])) == \
        f"Error: live MIDI needs mido and python-rtmidi: {INSTALL}"


# --------------------------------------------------------------------- the command, for real


def play_env(log: Path, ports: str = "Fake Synth") -> dict[str, str]:
    return dict(os.environ, MIDO_BACKEND="fake_midi_backend", FAKE_MIDI_PORTS=ports, FAKE_MIDI_LOG=str(log),
                PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


def read_log(log: Path) -> list[tuple[float, str, mido.Message]]:
    rows = []
    for line in log.read_text().splitlines():
        stamp, rest = line.split(" ", 1)
        port, text = rest.split("|", 1)
        rows.append((float(stamp), port, mido.Message.from_str(text)))
    return rows


@pytest.mark.slow
def test_play_sends_the_piece_sample_would_write_in_time(tmp_path):
    import composer

    log = tmp_path / "midi.log"
    result = subprocess.run([sys.executable, "-m", "composer", "play", "--style", "bach", "--seed", "3",
                             "--length", "1", "--temperature", "0.9"], capture_output=True, text=True,
                            env=play_env(log), timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "playing on 'Fake Synth', the first MIDI output port (--port picks another)\n"
    assert result.stdout.startswith("played bach-3 (4 parts, 1 bar, ") and \
        result.stdout.endswith(" s) on 'Fake Synth' (seed 3, sampler top-p)\n")
    expected = live.messages(composer.load("bach").generate(1, seed=3, length=1, temperature=0.9)[0])
    rows = read_log(log)
    assert [m for _, _, m in rows] == [m for _, m in expected]
    assert {port for _, port, _ in rows} == {"Fake Synth"}
    start = rows[0][0]
    lateness = [(sent - start) - at for (sent, _, _), (at, _) in zip(rows, expected)]
    assert min(lateness) >= -0.01  # never early (the first message sets the start, a moment after the clock's)
    assert max(lateness) < 0.5  # generous: a shared CI machine may stall; the fake-clock test is the precise one


@pytest.mark.slow
def default_sigint() -> None:
    """A shell's background job (a CI script run with &) ignores SIGINT, and a child inherits that; the user
    at a terminal has it, so the command under test gets it back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_the_command_promptly_with_every_note_off(tmp_path):
    log = tmp_path / "midi.log"
    proc = subprocess.Popen([sys.executable, "-m", "composer", "play", "--style", "bach", "--seed", "1",
                             "--length", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=play_env(log), preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(m.type == "note_on" for _, _, m in
                                                  (read_log(log) if log.exists() else [])) < 6:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - stopped < 3
    assert proc.returncode == 130, err
    assert err.splitlines()[-1].startswith("stopped at ") and err.endswith(" s; all notes off\n"), err
    assert out == ""
    sent = [m for _, _, m in read_log(log)]
    assert sum(m.type == "note_on" for m in sent) >= 6
    assert unpaired(sent) == Counter() and still_sounding(sent) == set()
    assert {m.channel for m in sent if m.type == "control_change" and m.control == live.ALL_NOTES_OFF} == {0, 1, 2, 3}


def test_without_python_rtmidi_the_real_command_says_what_to_install():
    try:
        import rtmidi  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("python-rtmidi is installed here")
    env = {key: value for key, value in os.environ.items() if key != "MIDO_BACKEND"}
    result = subprocess.run([sys.executable, "-m", "composer", "play", "--list-ports"], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 1
    assert result.stderr == f"Error: live MIDI needs python-rtmidi, which is not installed: {INSTALL}\n"


def test_a_real_backend_delivers_the_messages_to_a_virtual_port():
    """Through python-rtmidi and the system's MIDI service (ALSA, JACK, CoreMIDI): skipped where either is
    missing, as in containers without /dev/snd/seq (there, a JACK server with its dummy driver will do:
    ``jackd -d dummy`` and ``MIDO_BACKEND=mido.backends.rtmidi/UNIX_JACK``)."""
    try:
        import rtmidi  # noqa: F401
    except ImportError:
        pytest.skip("python-rtmidi is not installed (the midi-out extra)")
    backend = mido.Backend()  # MIDO_BACKEND's, e.g. mido.backends.rtmidi/UNIX_JACK for a JACK server
    try:
        with live.quiet_native_stderr():
            receiver = backend.open_input("composer-test", virtual=True)
    except Exception as exc:
        pytest.skip(f"no virtual MIDI ports here: {live.one_line(exc)}")
    with receiver:
        ports = live.OutputPorts(backend)
        name, _ = ports.choose("composer-test")
        timed = live.messages(piece((52, False, [(60, 0.0, 0.05), (64, 0.05, 0.1)])))
        port = ports.open(name)
        try:
            live.play(timed, port)
        finally:
            port.close()
        received, deadline = [], time.monotonic() + 2
        while len(received) < len(timed) and time.monotonic() < deadline:
            received += list(receiver.iter_pending())
            time.sleep(0.01)
    assert [m.bytes() for m in received] == [m.bytes() for _, m in timed]
