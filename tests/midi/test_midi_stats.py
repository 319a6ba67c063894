import pretty_midi
import pytest
from composer_midi import stats
from composer_midi.notes import Note


def piece(voices):
    """A PrettyMIDI with one track per voice; each voice is a list of (pitch, start_quarter, end_quarter)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=60)
    for notes in voices:
        inst = pretty_midi.Instrument(52)
        inst.notes = [pretty_midi.Note(80, p, float(a), float(b)) for p, a, b in notes]
        pm.instruments.append(inst)
    return pm


def test_parallel_fifths_and_octaves_are_counted():
    soprano = [Note(67, 0, 4), Note(69, 4, 8), Note(71, 8, 12)]
    bass = [Note(60, 0, 4), Note(62, 4, 8), Note(55, 8, 12)]  # fifth -> fifth (parallel), then contrary
    tenor = [Note(55, 0, 4), Note(57, 4, 8), Note(59, 8, 12)]  # an octave below the soprano throughout
    fifths, octaves, moves = stats.parallels([soprano, [], tenor, bass])
    assert moves == 2
    assert fifths == 2  # soprano-bass and tenor-bass from the first to the second chord
    assert octaves == 2  # soprano-tenor, twice


def test_statistics_of_a_chorale_like_piece():
    pm = piece([[(72, 0, 1), (74, 1, 2), (76, 2, 4)], [(67, 0, 2), (67, 2, 4)], [(64, 0, 4)], [(48, 0, 2), (43, 2, 4)]])
    result = stats.statistics([pm], steps_per_quarter=4, bar_steps=16, reference=[pm])
    assert result["pieces"] == 1 and result["bars"] == 1.0
    assert result["pitch-class histogram distance"] == 0.0
    assert result["scale consistency"] == 1.0
    assert result["polyphony"] == 4.0 and result["pieces in 4 voices"] == 1.0
    assert result["soprano range (5-95%)"].startswith("C5") and result["bass range (5-95%)"].startswith("G2")


def test_scale_consistency_of_a_chromatic_line_is_low():
    notes = [Note(60 + k, k, k + 1) for k in range(12)]
    assert stats.scale_consistency(notes) == pytest.approx(7 / 12)
