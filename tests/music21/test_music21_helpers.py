"""The music21 helpers that the MIDI and text plugins share: the corpus found and listed, parts of scores
as PrettyMIDI instruments."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pretty_midi
import pytest
from composer_music21 import corpus
from composer_music21.scores import part_instruments

from composer import ComposerError

# A pickup A, a tied D, a grace note and a chord.
TUNE = "X:1\nT:Helpers\nM:3/4\nL:1/4\nQ:1/4=60\nK:D\nA|d2-d|{g}f e [DA]|]"


def test_the_corpus_is_found_and_its_absence_names_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (corpus.corpus_dir("music21") / "bach").is_dir()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "music21" else real(name, *a))
    with pytest.raises(ComposerError, match=r"^the abc corpus needs music21: pip install music21$"):
        corpus.corpus_dir("abc")


def test_corpus_files_are_listed_by_suffix_in_any_case(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("b/x.ABC", "a/y.abc", "a/sub/z.mxl", "a/notes.txt", "a/folder.abc/w.krn"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    monkeypatch.setattr(corpus, "corpus_dir", lambda source: tmp_path)
    assert corpus.corpus_files("abc", (".abc",)) == ["a/y.abc", "b/x.ABC"]
    found = corpus.corpus_files("music21", (".mxl", ".krn", ".abc"), "a")
    assert found == ["a/folder.abc/w.krn", "a/sub/z.mxl", "a/y.abc"]  # files only, below the folder


def test_collections_are_named_in_any_case_and_files_by_glob() -> None:
    assert corpus.find_collection("RYANSMAMMOTH", ["bach", "ryansMammoth"]) == "ryansMammoth"
    assert corpus.find_collection("bachh", ["bach"]) is None
    refs = ["bach/bwv1.6.mxl", "bach/bwv10.7.mxl", "beethoven/opus18no1/movement1.mxl"]
    assert corpus.matching(refs, "bach/bwv1.6", ("",)) == []
    assert corpus.matching(refs, "bach/bwv1.6", ("", ".*")) == ["bach/bwv1.6.mxl"]
    assert corpus.matching(refs, "bach/bwv1*", ("",)) == refs[:2]
    assert corpus.matching(refs, "beethoven/opus18no1", ("", "/*")) == refs[2:]


def notes(inst: pretty_midi.Instrument) -> list[tuple[int, float, float, int]]:
    return [(n.pitch, n.start, n.end, n.velocity) for n in inst.notes]


def test_a_part_plays_its_notes_ties_merged_without_grace_notes() -> None:
    from music21 import converter

    score = converter.parse(TUNE, format="abc")
    (inst,) = part_instruments(score, 1.0)
    assert (inst.program, inst.is_drum, inst.name) == (0, False, "")
    assert notes(inst) == [(69, 0.0, 1.0, 80), (74, 1.0, 4.0, 80), (78, 4.0, 5.0, 80), (76, 5.0, 6.0, 80),
                           (62, 6.0, 7.0, 80), (69, 6.0, 7.0, 80)]
    assert not any(note.tie for note in score.recurse().notes)  # the score given loses its ties
    (inst,) = part_instruments(converter.parse(TUNE, format="abc"), 0.5, pickup=2.0, velocity=90)
    assert notes(inst)[:2] == [(69, 1.0, 1.5, 90), (74, 1.5, 3.0, 90)]


def test_each_part_keeps_its_instrument_name_and_velocities() -> None:
    from music21 import instrument, note, stream

    violin = stream.Part([instrument.Violin(), note.Note("E5", quarterLength=2)])
    violin.partName = "Solo"
    loud = note.Note("G5")
    loud.volume.velocity = 110
    violin.append(loud)
    drums = stream.Part([instrument.UnpitchedPercussion(), note.Note(38)])
    score = stream.Score()
    score.insert(0, violin)
    score.insert(0, drums)
    solo, kit = part_instruments(score, 0.5)
    assert (solo.program, solo.is_drum, solo.name, notes(solo)) == (40, False, "Solo", [(76, 0.0, 1.0, 80),
                                                                                       (79, 1.0, 1.5, 110)])
    assert (kit.is_drum, kit.name, notes(kit)) == (True, "Percussion", [(38, 0.0, 0.5, 80)])
