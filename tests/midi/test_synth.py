"""The built-in synthesiser that writes WAV where FluidSynth is not installed."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from composer_midi import synth, writers
from composer_midi.examples import example_pieces


def one_note(pitch: int, program: int = 0, seconds: float = 1.0, velocity: int = 100) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI()
    instrument = pretty_midi.Instrument(program=program)
    instrument.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=0.0, end=seconds))
    midi.instruments.append(instrument)
    return midi


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as audio:
        assert (audio.getnchannels(), audio.getsampwidth()) == (1, 2)
        return np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2"), audio.getframerate()


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.fixture
def no_fluidsynth(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without FluidSynth, whatever this one has."""
    monkeypatch.delenv("COMPOSER_SOUNDFONT", raising=False)
    monkeypatch.setattr(writers, "fluidsynth_installed", lambda: False)


def test_without_fluidsynth_the_wav_writer_uses_the_built_in_synthesiser(tmp_path: Path, no_fluidsynth: None) -> None:
    assert writers.wav_available() is None and writers.synthesizer() == "built-in"
    piece = example_pieces()[1]  # a four-part cadence
    path = tmp_path / "cadence.wav"
    writers.write_wav(piece, path)
    samples, rate = read_wav(path)
    assert rate == synth.RATE
    assert np.abs(samples).max() > 0.8 * 32767  # normalised, not silent
    assert abs(len(samples) / rate - piece.get_end_time()) < 0.5  # lasts as long as the piece (plus a release)
    assert np.sqrt(np.mean(samples[: rate // 2].astype(float) ** 2)) > 1000  # sounds from the start


@pytest.mark.parametrize(("pitch", "program"), [(69, 0), (69, 52), (57, 40), (76, 73), (45, 33)])
def test_a_note_sounds_at_its_pitch(tmp_path: Path, no_fluidsynth: None, pitch: int, program: int) -> None:
    path = tmp_path / "note.wav"
    writers.write_wav(one_note(pitch, program), path)
    samples, rate = read_wav(path)
    assert peak_frequency(samples.astype(float), rate) == pytest.approx(synth.frequency(pitch), rel=0.01)


def test_louder_notes_give_more_signal_and_chords_sum() -> None:
    soft, loud = synth.render(one_note(60, velocity=30)), synth.render(one_note(60, velocity=120))
    assert np.abs(loud).max() > 3 * np.abs(soft).max()
    chord = one_note(60)
    chord.instruments[0].notes.append(pretty_midi.Note(velocity=100, pitch=67, start=0.0, end=1.0))
    audio = synth.render(chord)
    spectrum = np.abs(np.fft.rfft(audio[: synth.RATE]))
    freqs = np.fft.rfftfreq(synth.RATE, 1 / synth.RATE)
    for pitch in (60, 67):
        near = np.abs(freqs - synth.frequency(pitch)) < 3
        assert spectrum[near].max() > 0.3 * spectrum.max()


def test_drums_and_silence_render_without_error() -> None:
    drums = one_note(38, seconds=0.2)
    drums.instruments[0].is_drum = True
    assert np.abs(synth.render(drums)).max() > 0
    assert not np.any(synth.render(pretty_midi.PrettyMIDI()))


def test_soundfont_option_names_the_file_the_wav_writer_uses(tmp_path: Path, monkeypatch) -> None:
    import composer
    from composer.commands import generate_and_write

    monkeypatch.delenv("COMPOSER_SOUNDFONT", raising=False)
    font = tmp_path / "mine.sf2"
    font.write_bytes(b"RIFF")
    session = composer.load("bach", device="cpu")
    generate_and_write(session, n=1, seed=1, sampler="greedy", output_dir=str(tmp_path / "out"), formats="mid",
                       force=False, length=1, soundfont=str(font))
    assert writers.find_soundfont() == font.resolve()


def test_a_missing_soundfont_is_one_line(tmp_path: Path) -> None:
    from conftest import run_cli

    result = run_cli(["sample", "--style", "bach", "--format", "wav", "--soundfont", str(tmp_path / "none.sf2"),
                      "-o", str(tmp_path)])
    assert result.returncode != 0 and "none.sf2" in result.stderr and "Traceback" not in result.stderr
