"""Corpus sources: music21's collections, MIDI and score files, bad input, registration."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import composer_midi
import pretty_midi
import pytest
from composer_midi import corpora

from composer import ComposerError, CorpusSource, Encoder, Writer


def test_bach_lists_the_chorales_as_paths_inside_the_corpus() -> None:
    refs = corpora.list_music21("bach")
    assert "bach/bwv1.6.mxl" in refs and len(refs) > 300
    assert not any(ref.endswith(".rntxt") for ref in refs)  # analyses, not music
    assert corpora.list_music21("BACH") == refs


def test_patterns_select_files_and_folders_inside_a_collection() -> None:
    assert corpora.list_music21("bach/bwv1.6") == ["bach/bwv1.6.mxl"]
    assert all(ref.startswith("bach/bwv2") for ref in corpora.list_music21("bach/bwv2*"))
    assert all(ref.startswith("beethoven/opus18no1/") for ref in corpora.list_music21("beethoven/opus18no1"))
    with pytest.raises(ComposerError, match="matches 'bach/nothing'"):
        corpora.list_music21("bach/nothing")


def test_the_collections_music21_ships_are_offered() -> None:
    names = corpora.collections()
    for expected in (
        "bach",
        "palestrina",
        "monteverdi",
        "trecento",
        "beethoven",
        "mozart",
        "haydn",
        "essenFolksong",
        "oneills1850",
        "ryansMammoth",
    ):
        assert expected in names
    assert "demos" not in names
    assert {ref.split("/")[0] for ref in corpora.list_music21("all")} == set(names)


def test_an_unknown_collection_names_the_known_ones() -> None:
    with pytest.raises(ComposerError, match=r"unknown music21 collection 'bachh' \(available: all, .*bach"):
        corpora.list_music21("bachh")


def test_a_chorale_loads_with_its_parts_and_its_pickup_bar() -> None:
    (pm,) = corpora.load_music21("bach/bwv1.6.mxl")
    assert [inst.name for inst in pm.instruments] == ["Horn 2", "Soprano", "Alto", "Tenor", "Bass"]
    bpm = pm.get_tempo_changes()[1][0]
    first = min(n.start for inst in pm.instruments for n in inst.notes)
    assert first == pytest.approx(3 * 60.0 / bpm)  # the one-beat pickup sits at the end of a 4/4 bar
    assert [(ts.numerator, ts.denominator, ts.time) for ts in pm.time_signature_changes] == [(4, 4, 0.0)]
    assert pretty_midi.key_number_to_key_name(pm.key_signature_changes[0].key_number) == "F Major"


def test_an_abc_book_gives_one_piece_per_tune() -> None:
    pieces = corpora.load_music21("nottingham-dataset/reelsa-c.abc")
    assert len(pieces) == 2
    assert all(len(pm.instruments) == 1 and pm.instruments[0].notes for pm in pieces)


def test_midi_files_are_read_and_checked(tmp_path: Path) -> None:
    good = pretty_midi.PrettyMIDI()
    good.instruments.append(pretty_midi.Instrument(0))
    good.instruments[0].notes.append(pretty_midi.Note(90, 60, 0.0, 0.5))
    good.write(str(tmp_path / "good.mid"))
    (pm,) = corpora.read_midi(tmp_path / "good.mid")
    assert [n.pitch for n in pm.instruments[0].notes] == [60]

    empty = pretty_midi.PrettyMIDI()
    empty.instruments.append(pretty_midi.Instrument(0))
    empty.write(str(tmp_path / "empty.mid"))
    with pytest.raises(ComposerError, match="^no notes$"):
        corpora.read_midi(tmp_path / "empty.mid")

    drums = pretty_midi.PrettyMIDI()
    drums.instruments.append(pretty_midi.Instrument(0, is_drum=True))
    drums.instruments[0].notes.append(pretty_midi.Note(90, 36, 0.0, 0.5))
    drums.write(str(tmp_path / "drums.mid"))
    with pytest.raises(ComposerError, match="only drum notes"):
        corpora.read_midi(tmp_path / "drums.mid")


@pytest.mark.parametrize(
    "content", [b"", b"this is a text file, renamed\n", b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff"]
)
def test_files_that_are_not_midi_raise_a_short_message(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(ComposerError, match="^not a readable MIDI file") as info:
        corpora.read_midi(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 160


def test_scores_that_are_not_scores_raise_a_short_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.musicxml"
    path.write_text("<score-partwise><part id='P1'><measure number='1'>")
    with pytest.raises(ComposerError, match="^not a readable score"):
        corpora.read_score(path)
    with pytest.raises(ComposerError, match="no such file"):
        corpora.read_score(tmp_path / "missing.xml")


def test_read_file_chooses_the_reader_by_suffix(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("C D E")
    with pytest.raises(ComposerError, match="not a MIDI or score file"):
        corpora.read_file(path)
    (tmp_path / "x.mid").write_bytes(b"")
    with pytest.raises(ComposerError, match="not a readable MIDI file"):
        corpora.read_file(tmp_path / "x.mid")


def test_loaders_are_picklable_for_worker_processes() -> None:
    for load in (corpora.load_music21, corpora.read_midi, corpora.read_score, corpora.list_music21):
        assert pickle.loads(pickle.dumps(load)) is load


def test_the_plugin_registers_encoders_corpora_and_writers() -> None:
    found: dict[str, list] = {"encoders": [], "corpora": [], "writers": []}
    composer_midi.register_encoders(register=found["encoders"].append)
    composer_midi.register_corpora(register=found["corpora"].append)
    composer_midi.register_writers(register=found["writers"].append)
    assert [e.name for e in found["encoders"]] == ["melody", "polyphony", "performance", "satb"]
    assert all(issubclass(e, Encoder) and e.modality == "midi" for e in found["encoders"])
    sources = {s.name: s for s in found["corpora"]}
    assert all(isinstance(s, CorpusSource) and s.modality == "midi" for s in sources.values())
    assert sources["music21"].list is corpora.list_music21 and "essenFolksong" in sources["music21"].description
    assert ".mid" in sources["midi-files"].suffixes and ".abc" in sources["score-files"].suffixes
    assert [(w.name, w.suffix) for w in found["writers"]] == [
        ("mid", ".mid"),
        ("musicxml", ".musicxml"),
        ("png", ".png"),
        ("wav", ".wav"),
    ]
    assert all(isinstance(w, Writer) for w in found["writers"])


def test_importing_the_plugin_leaves_music21_torch_and_matplotlib_unloaded() -> None:
    code = "import sys, composer_midi; print(sorted({'music21', 'torch', 'matplotlib'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
