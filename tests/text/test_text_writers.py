"""Output formats for text and tunes: files that other tools open again."""

from __future__ import annotations

import io
from pathlib import Path

import pretty_midi
import pytest
from composer_text import writers
from composer_text.tunes import EXAMPLE_TUNES, AbcEncoder, TuneError, rendered

from composer import WriteSkipped

BROKEN = "X:1\nT:Broken\nM:4/4\nL:1/8\nK:G\n|] |]"


def test_mid_of_a_good_tune_opens_with_its_notes(tmp_path: Path) -> None:
    path = tmp_path / "jig.mid"
    writers.write_mid(EXAMPLE_TUNES[0], path)
    midi = pretty_midi.PrettyMIDI(str(path))
    notes = [note for inst in midi.instruments for note in inst.notes]
    assert len(notes) == 2 * 44  # 44 notes, played twice: the tune ends in a repeat
    assert notes[0].pitch == 69  # the pickup A
    assert midi.get_end_time() == pytest.approx(24.0)  # 8 bars of 6/8, twice, at 120 quarter notes a minute


def test_each_part_repeats_back_to_its_own_start(tmp_path: Path) -> None:
    """In ABC a ``:|`` without ``|:`` repeats its own part; music21 alone would go back to the top."""
    tune = "X:1\nT:Three Parts\nM:6/8\nL:1/8\nK:G\nGAB cde|d3 d3:|\n||gfe dcB|A3 A3:|\n||BAG FED|G3 G3:|"
    writers.write_mid(tune, tmp_path / "parts.mid")
    pitches = [note.pitch for note in pretty_midi.PrettyMIDI(str(tmp_path / "parts.mid")).instruments[0].notes]
    a, b, c = [67, 69, 71, 72, 74, 76, 74, 74], [79, 78, 76, 74, 72, 71, 69, 69], [71, 69, 67, 66, 64, 62, 67, 67]
    assert pitches == a + a + b + b + c + c


def test_the_midi_file_merges_ties_and_leaves_the_score_its_own() -> None:
    """The MIDI file is made from a copy of the score (here as written: music21 cannot expand these
    repeats), so the score that the MusicXML writer gets keeps its ties."""
    result = rendered("X:1\nT:Tied\nM:4/4\nL:1/4\nK:C\nA B c d-|d2 e2:|f4:|")
    midi = pretty_midi.PrettyMIDI(io.BytesIO(result.midi))
    assert [note.pitch for note in midi.instruments[0].notes] == [69, 71, 72, 74, 76, 77]
    assert sum(1 for note in result.score.recurse().notes if note.tie is not None) == 2


def test_the_midi_file_states_the_first_meter_only() -> None:
    """music21 reads a 1/6 meter into this start of a tune of O'Neill's (its triplets), which a MIDI file
    cannot state."""
    tune = "X:1\nT:The Old Maids Of Galway\nM:C|\nL:1/8\nK:G\ne>B ((3{c}BAB) e2 dB | A2 GA dBgf | ((3efg) df e2 dB :|"
    midi = pretty_midi.PrettyMIDI(io.BytesIO(rendered(tune).midi))
    assert [(ts.numerator, ts.denominator, ts.time) for ts in midi.time_signature_changes] == [(2, 2, 0.0)]


def test_musicxml_of_a_good_tune_opens_in_music21(tmp_path: Path) -> None:
    from music21 import converter

    path = tmp_path / "reel.musicxml"
    writers.write_musicxml(EXAMPLE_TUNES[1], path)
    score = converter.parse(str(path))
    assert len(score.recurse().notes) == 60
    assert score.parts[0].getTimeSignatures()[0].ratioString == "4/4"


def test_a_tune_that_does_not_parse_is_skipped_and_reported(tmp_path: Path) -> None:
    with pytest.raises(TuneError, match="does not parse"):
        rendered(BROKEN)
    for write, name in ((writers.write_mid, "b.mid"), (writers.write_musicxml, "b.musicxml")):
        with pytest.raises(WriteSkipped, match="the tune does not parse"):
            write(BROKEN, tmp_path / name)
        assert not (tmp_path / name).exists()
    assert "does not parse" in AbcEncoder().summarize(BROKEN)
    assert AbcEncoder().summarize(EXAMPLE_TUNES[0]) == "'Example Jig', 6/8, 9 bars, parses"


def test_a_tune_without_notes_is_skipped_not_written_empty(tmp_path: Path) -> None:
    header_only = "X:1\nT:Nothing Yet\nM:6/8\nL:1/8\nK:G\n"
    for write, name in ((writers.write_mid, "h.mid"), (writers.write_musicxml, "h.musicxml")):
        with pytest.raises(WriteSkipped, match="no notes in it"):
            write(header_only, tmp_path / name)
        assert not (tmp_path / name).exists()


def test_text_writer_ends_with_one_newline(tmp_path: Path) -> None:
    writers.write_text("héllo 🎻", tmp_path / "a.txt")
    writers.write_text("tune\n", tmp_path / "b.abc")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo 🎻\n"
    assert (tmp_path / "b.abc").read_text() == "tune\n"


def test_abc_encoder_writes_abc_and_mid_by_default_and_caps_a_tune() -> None:
    encoder = AbcEncoder()
    encoder.fit(EXAMPLE_TUNES)
    assert encoder.default_format == "abc,mid" and encoder.modality == "text"
    assert encoder.generation_plan().max_tokens == 2000
    assert encoder.decode(encoder.encode(EXAMPLE_TUNES[1])) == EXAMPLE_TUNES[1]
