"""Notation that a musician keeps: a generated chorale's MusicXML (key, spelling, titles, part names, clefs,
pickup and final bars, fermatas) and MIDI (key and time signatures, part names), instruments and tempo
chosen at sampling time, and the same bytes for the same piece."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pretty_midi
import pytest
from composer_midi import writers
from composer_midi.instruments import decoding
from composer_midi.melody import MelodyEncoder
from composer_midi.notes import Note, spelling
from composer_midi.performance import PerformanceEncoder
from composer_midi.polyphony import PolyphonyEncoder
from conftest import run_cli

import composer
from composer import ComposerError

SATB = ["Soprano", "Alto", "Tenor", "Bass"]
SIGNATURE = ("F", "C", "G", "D", "A", "E", "B")  # letters a key signature alters, in the order of sharps


@pytest.fixture
def bach() -> composer.Session:
    return composer.load("bach", device="cpu")


def written_chorale(bach: composer.Session, folder: Path, seed: int) -> tuple[Path, Path]:
    pieces = bach.generate(seed=seed)
    files = bach.write(pieces, folder, formats=["mid", "musicxml"]).files
    return files[0], files[1]


def chorale_from_grid(voices: list[list[Note]], tempo: float = 60.0) -> pretty_midi.PrettyMIDI:
    """A four-part piece from grid notes in sixteenths, through the polyphony encoder's decoding."""
    encoder = PolyphonyEncoder(tempo=tempo)
    tokens = encoder.tokens(sorted((n for voice in voices for n in voice), key=lambda n: (n.start, -n.pitch)))
    return encoder.decode(tokens)


def measures(path: Path) -> dict[str, list[ET.Element]]:
    """Each part's name and its measures, as the MusicXML file has them."""
    root = ET.parse(path).getroot()
    names = {p.get("id"): p.findtext("part-name") for p in root.iter("score-part")}
    return {names[part.get("id")]: part.findall("measure") for part in root.findall("part")}


def redundant_accidentals(path: Path) -> list[str]:
    """Accidentals shown on notes that would sound the same without them: against the key signature and the
    earlier notes of the bar in the same octave (an accidental holds for its octave only, and a note tied over
    the bar line sets none). One after a bar that wrote the same letter differently is a courtesy, kept."""
    root = ET.parse(path).getroot()
    found = []
    for part in root.findall("part"):
        fifths, before = 0, {}
        for measure in part.findall("measure"):
            fifths = int(measure.findtext("attributes/key/fifths") or fifths)
            flats = SIGNATURE[::-1][: max(0, -fifths)]
            signature = {letter: 1 for letter in SIGNATURE[: max(0, fifths)]} | {letter: -1 for letter in flats}
            state, last = {}, {}
            for element in measure.findall("note"):
                step, octave = element.findtext("pitch/step"), element.findtext("pitch/octave")
                if step is None:
                    continue
                alter = int(float(element.findtext("pitch/alter") or 0))
                shown = element.findtext("accidental")
                current = state.get((step, octave), signature.get(step, 0))
                if shown and current == alter and before.get(step, {alter}) == {alter}:
                    found.append(f"{part.get('id')} bar {measure.get('number')}: {shown} on {step}{octave}{alter:+d}")
                if element.find("tie[@type='stop']") is None:
                    state[step, octave] = alter
                last.setdefault(step, set()).add(alter)
            before = last
    return found


@pytest.mark.parametrize("seed", [3, 11])  # 11 ties its last chord over the bar line
def test_a_generated_chorale_is_written_as_clean_notation(bach: composer.Session, tmp_path: Path, seed: int) -> None:
    mid, xml = written_chorale(bach, tmp_path, seed=seed)
    root = ET.parse(xml).getroot()
    assert root.findtext("work/work-title") == "bach" and root.findtext("movement-title") == "bach"
    assert root.findtext("identification/creator") == "composer (style bach)"
    assert "Music21" not in xml.read_text()
    assert redundant_accidentals(xml) == []
    parts = list(root.iter("score-part"))
    assert [p.findtext("part-name") for p in parts] == SATB
    assert [p.findtext("part-abbreviation") for p in parts] == ["S", "A", "T", "B"]
    bars = measures(xml)
    clefs = {name: bars[name][0].find("attributes/clef") for name in SATB}
    assert [(c.findtext("sign"), c.findtext("line"), c.findtext("clef-octave-change")) for c in clefs.values()] == [
        ("G", "2", None), ("G", "2", None), ("G", "2", "-1"), ("F", "4", None)]
    # every bar is whole except a pickup (numbered 0, implicit) and the last bar, which together make one
    divisions = int(bars["Soprano"][0].findtext("attributes/divisions"))
    for name, part in bars.items():
        lengths = [sum(Fraction(int(n.findtext("duration")), divisions) for n in m.findall("note")
                       if n.find("chord") is None) for m in part]
        pickup = part[0].get("number") == "0"
        assert pickup == (part[0].get("implicit") == "yes")
        assert set(lengths[1:-1]) == {4}, name
        assert lengths[-1] in ((4 - lengths[0], 4) if pickup else (4,)) and (pickup or lengths[0] == 4)
        last = part[-1].findall("note")[-1]
        assert (last.find("notations/fermata") is not None) != (last.find("rest") is not None), name
    assert sum(part[-1].find(".//fermata") is not None for part in bars.values()) >= 3
    assert 'print-object="no"' not in xml.read_text()  # no hidden rests
    played = pretty_midi.PrettyMIDI(str(mid))
    assert [inst.name for inst in played.instruments] == SATB
    assert len(played.key_signature_changes) == 1 and played.key_signature_changes[0].time == 0
    assert [(ts.numerator, ts.denominator) for ts in played.time_signature_changes] == [(4, 4)]


def test_the_same_chorale_gives_the_same_musicxml_bytes(bach: composer.Session, tmp_path: Path) -> None:
    _, first = written_chorale(bach, tmp_path / "a", seed=5)
    _, second = written_chorale(bach, tmp_path / "b", seed=5)
    assert first.read_bytes() == second.read_bytes()
    assert b"encoding-date" not in first.read_bytes()


def test_pitches_are_spelled_in_the_key() -> None:
    names = {key: [letter + {-1: "b", 0: "", 1: "#"}[alter] for letter, alter in spelling(key)] for key in (8, 2, 21)}
    assert names[8][1] == "Db" and names[8][11] == "Cb"  # A-flat major: Db, not C#
    assert names[2][1] == "C#" and names[2][3] == "D#"  # D major
    assert names[21][8] == "G#" and names[21][6] == "F#"  # A minor: the raised 6th and 7th


def test_a_pickup_is_written_as_a_short_bar_and_the_last_chord_completes_the_last_bar(tmp_path: Path) -> None:
    # in A-flat major (its key signature), starting on the fourth beat; the final chord ends a beat into its bar
    soprano = [Note(72, 12, 16), Note(73, 16, 32), Note(72, 32, 36)]
    alto = [Note(68, 12, 16), Note(68, 16, 32), Note(68, 32, 36)]
    tenor = [Note(63, 12, 16), Note(65, 16, 32), Note(63, 32, 36)]
    bass = [Note(56, 12, 16), Note(49, 16, 32), Note(44, 32, 36)]
    piece = chorale_from_grid([soprano, alto, tenor, bass])
    piece.title = "bach"
    piece.key_signature_changes = [pretty_midi.KeySignature(8, 0.0)]
    path = tmp_path / "pickup.musicxml"
    writers.write_musicxml(piece, path)
    bars = measures(path)
    for part in bars.values():
        assert [m.get("number") for m in part] == ["0", "1", "2"] and part[0].get("implicit") == "yes"
        assert [n.findtext("type") for n in part[0].findall("note")] == ["quarter"]  # no hidden rests
        last = part[-1].findall("note")
        assert [(n.findtext("type"), n.find("dot") is not None) for n in last] == [("half", True)]  # no rest after
        assert last[0].find("notations/fermata") is not None
    assert bars["Soprano"][1].findtext("note/pitch/step") == "D"  # D-flat, not C-sharp
    assert bars["Soprano"][1].findtext("note/pitch/alter") == "-1"
    assert redundant_accidentals(path) == []
    assert ET.parse(path).getroot().findtext("part/measure/attributes/key/fifths") == "-4"


@pytest.mark.skipif(shutil.which("mscore3") is None, reason="MuseScore 3 (Debian's musescore3) is not installed")
def test_musescore_renders_a_generated_chorale_headlessly(bach: composer.Session, tmp_path: Path) -> None:
    _, xml = written_chorale(bach, tmp_path, seed=3)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run(["mscore3", "-o", str(tmp_path / "page.png"), str(xml)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages and pages[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tempo_and_instruments_are_chosen_when_sampling(bach: composer.Session) -> None:
    (piece,) = bach.generate(seed=3, requests={"tempo": "72", "programs": "choir,choir,choir,cello"})
    assert round(piece.get_tempo_changes()[1][0]) == 72
    assert [(inst.name, inst.program) for inst in piece.instruments] == [
        ("Soprano", 52), ("Alto", 52), ("Tenor", 52), ("Bass", 42)]
    (organ,) = bach.generate(seed=3, requests={"program": "19"})
    assert {inst.program for inst in organ.instruments} == {19}
    assert [n.pitch for n in organ.instruments[0].notes] == [n.pitch for n in piece.instruments[0].notes]


def test_melodies_take_a_tempo_and_an_instrument() -> None:
    encoder = MelodyEncoder()
    plan = encoder.generation_plan(tempo=60, program="flute")
    melody = encoder.decode([encoder.bos, 2 + 24, 0, 0, 0, 1, encoder.eos], **plan.decoding)
    assert melody.instruments[0].program == 73 and melody.instruments[0].notes[0].end == pytest.approx(1.0)


def test_performances_take_an_instrument() -> None:
    encoder = PerformanceEncoder()
    tokens = [encoder.bos, 60, 256 + 49, 128 + 60, encoder.eos]  # C4 for half a second
    assert encoder.decode(tokens).instruments[0].program == 0
    performance = encoder.decode(tokens, **encoder.generation_plan(1.0, program="flute").decoding)
    assert performance.instruments[0].program == 73 and performance.instruments[0].name == "Flute"
    assert performance.instruments[0].notes[0].end == pytest.approx(0.5)


@pytest.mark.parametrize(("requests", "message"), [
    ({"tempo": "500"}, "tempo must be between 20 and 400"),
    ({"tempo": "fast"}, "tempo is a number"),
    ({"program": "128"}, "program is 0..127"),
    ({"program": "kazoo"}, "unknown instrument 'kazoo'"),
    ({"programs": ""}, "unknown instrument ''"),
    ({"program": "0", "programs": "1,2"}, "not both"),
])
def test_bad_tempo_or_instrument_requests_are_one_line_errors(requests: dict, message: str) -> None:
    with pytest.raises(ComposerError, match=message) as error:
        decoding(**requests)
    assert "\n" not in str(error.value)


def test_the_command_line_refuses_a_tempo_out_of_range(tmp_path: Path) -> None:
    done = run_cli(["sample", "--style", "bach", "-o", str(tmp_path), "-O", "tempo", "1000"])
    assert done.returncode != 0 and done.stderr.strip().splitlines() == [
        "Error: tempo must be between 20 and 400 quarter notes per minute, got 1000"]
    assert not list(tmp_path.iterdir())
