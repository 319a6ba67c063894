"""Output formats: files that other tools open again."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from composer_midi import writers
from composer_midi.examples import example_pieces
from composer_midi.polyphony import PolyphonyEncoder


@pytest.fixture
def cadence() -> pretty_midi.PrettyMIDI:
    encoder = PolyphonyEncoder()
    return encoder.decode(encoder.encode(example_pieces()[1]))


def test_mid_reopens_with_the_same_notes(tmp_path: Path, cadence: pretty_midi.PrettyMIDI) -> None:
    path = tmp_path / "out.mid"
    writers.write_mid(cadence, path)
    again = pretty_midi.PrettyMIDI(str(path))
    assert [inst.name for inst in again.instruments] == ["Soprano", "Alto", "Tenor", "Bass"]
    for a, b in zip(cadence.instruments, again.instruments, strict=True):
        assert [(n.pitch, round(n.start, 3), round(n.end, 3)) for n in a.notes] == [
            (n.pitch, round(n.start, 3), round(n.end, 3)) for n in b.notes
        ]


def test_musicxml_reopens_in_music21_with_parts_and_notes(tmp_path: Path, cadence: pretty_midi.PrettyMIDI) -> None:
    from music21 import converter

    path = tmp_path / "out.musicxml"
    writers.write_musicxml(cadence, path)
    score = converter.parse(str(path))
    assert [part.partName for part in score.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    for inst, part in zip(cadence.instruments, score.parts, strict=True):
        notes = part.stripTies().flatten().notes
        assert [n.pitch.midi for n in notes] == [n.pitch for n in inst.notes]
        assert [float(n.quarterLength) for n in notes] == [2.0, 2.0, 2.0, 6.0]  # the last chord fills its bar
    assert score.parts[0].getTimeSignatures()[0].ratioString == "4/4"
    assert score.parts[0].flatten().keySignature.sharps == 0


def test_musicxml_writes_overlapping_notes_of_one_part_as_chords(tmp_path: Path) -> None:
    from music21 import converter

    phrase = example_pieces()[2]  # a piano arpeggio whose notes overlap
    path = tmp_path / "phrase.musicxml"
    writers.write_musicxml(phrase, path)
    (part,) = converter.parse(str(path)).parts
    pitches = {p.midi for element in part.flatten().notes for p in element.pitches}
    assert pitches == {n.pitch for n in phrase.instruments[0].notes}
    assert any(len(element.pitches) > 1 for element in part.flatten().notes)


def test_png_is_a_picture(tmp_path: Path, cadence: pretty_midi.PrettyMIDI) -> None:
    assert writers.png_available() is None
    path = tmp_path / "roll.png"
    writers.write_png(cadence, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wav_says_so_when_the_chosen_soundfont_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPOSER_SOUNDFONT", str(tmp_path / "missing.sf2"))
    message = writers.wav_available()
    assert message is not None and "\n" not in message
    assert "missing.sf2" in message and "built-in synthesiser" in message


def test_wav_writes_normalized_16_bit_audio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cadence: pretty_midi.PrettyMIDI
) -> None:
    soundfont = tmp_path / "gm.sf2"
    soundfont.write_bytes(b"")
    monkeypatch.setenv("COMPOSER_SOUNDFONT", str(soundfont))
    seen = {}

    def fake_fluidsynth(self: pretty_midi.PrettyMIDI, fs: int, sf2_path: str) -> np.ndarray:
        seen["sf2"] = sf2_path
        return 0.25 * np.sin(np.linspace(0, 100, fs // 10))

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "fluidsynth", fake_fluidsynth)
    monkeypatch.setattr(writers, "fluidsynth_installed", lambda: True)
    path = tmp_path / "out.wav"
    writers.write_wav(cadence, path)
    assert seen["sf2"] == str(soundfont)
    with wave.open(str(path)) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 44100)
        samples = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2")
    assert len(samples) == 4410 and 0.85 * 32767 < np.abs(samples).max() <= 0.9 * 32767 + 1
