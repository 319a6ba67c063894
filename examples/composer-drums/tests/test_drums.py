import subprocess
import sys

import mido
import pretty_midi
import pytest
from composer import ComposerError, plugins

from composer_drums.classes import CLASS_NAMES, CLASS_PITCHES, PITCH_TO_CLASS, REPRESENTATIVE, drum_class
from composer_drums.encoder import BOS, EOS, FIRST_SET, DrumsEncoder
from composer_drums.io import read_drum_file, write_mid
from composer_drums.patterns import ROCK, pattern_to_midi


def test_pitch_table():
    assert len(CLASS_NAMES) == 9
    assert all(drum_class(p) is not None for p in range(35, 82))  # all of General MIDI percussion
    assert sum(map(len, CLASS_PITCHES)) == len(PITCH_TO_CLASS)  # no pitch in two classes
    expected = {
        35: 0,
        36: 0,
        37: 1,
        38: 1,
        40: 1,
        42: 2,
        44: 2,
        46: 3,
        41: 4,
        43: 4,
        45: 4,
        47: 5,
        48: 5,
        50: 6,
        49: 7,
        57: 7,
        51: 8,
        59: 8,
    }
    assert {p: drum_class(p) for p in expected} == expected
    assert REPRESENTATIVE == (36, 38, 42, 46, 45, 48, 50, 49, 51)
    assert drum_class(20) is None and drum_class(100) is None


def test_vocabulary_is_fixed():
    enc = DrumsEncoder()
    assert enc.head.vocab_size == 2 + 512
    assert not enc.needs_fit and enc.bos == BOS and enc.eos == EOS and enc.length_unit == "bars"


def test_round_trip_examples():
    enc = DrumsEncoder()
    items = enc.example_items()
    assert len(items) >= 2
    for item in items:
        seq = enc.encode(item)
        assert seq[0] == BOS and seq[-1] == EOS
        assert all(FIRST_SET <= t < FIRST_SET + 512 for t in seq[1:-1])
        assert (len(seq) - 2) % 16 == 0
        back = enc.decode(seq)
        assert back.instruments[0].is_drum
        assert enc.encode(back) == seq
        assert enc.summarize(back) == enc.summarize(item)


def test_encoding_of_a_rock_bar():
    enc = DrumsEncoder()
    seq = enc.encode(pattern_to_midi([ROCK]))
    kick, snare, hat = 1, 2, 4
    assert seq[1] == FIRST_SET + (kick | hat)
    assert seq[5] == FIRST_SET + (snare | hat)
    assert seq[2] == FIRST_SET  # an empty step
    assert enc.summarize(pattern_to_midi([ROCK])) == "1 bar, 13 hits"


def test_pitches_map_onto_classes_and_quantize():
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    drums = pretty_midi.Instrument(0, is_drum=True)
    drums.notes += [pretty_midi.Note(90, 35, 0.01, 0.1), pretty_midi.Note(90, 40, 0.13, 0.2)]  # step 0, step 1
    pm.instruments.append(drums)
    assert DrumsEncoder().encode(pm)[1:3] == [FIRST_SET + 1, FIRST_SET + 2]


def test_options_and_generation_plan():
    enc = DrumsEncoder(steps_per_quarter=2, tempo=90)
    assert enc.generation_plan(3).max_tokens == 3 * 8 + 1
    assert DrumsEncoder().generation_plan().max_tokens == 4 * 16 + 1
    with pytest.raises(ComposerError):
        DrumsEncoder().generation_plan(-1)
    with pytest.raises(ComposerError):
        DrumsEncoder(steps_per_quarter=0)


def test_written_file_plays_on_channel_10(tmp_path):
    enc = DrumsEncoder()
    path = tmp_path / "beat.mid"
    write_mid(enc.decode(enc.encode(enc.example_items()[0])), path)
    channels = {msg.channel for track in mido.MidiFile(path).tracks for msg in track if msg.type == "note_on"}
    assert channels == {9}


def test_corpus_reads_drums_and_refuses_files_without(tmp_path):
    pm = pattern_to_midi([ROCK])
    pm.instruments.append(pretty_midi.Instrument(0, name="piano"))
    pm.instruments[-1].notes.append(pretty_midi.Note(80, 60, 0, 1))
    pm.write(str(tmp_path / "both.mid"))
    [item] = read_drum_file(tmp_path / "both.mid")
    assert [i.is_drum for i in item.instruments] == [True]
    piano = pretty_midi.PrettyMIDI()
    piano.instruments.append(pretty_midi.Instrument(0))
    piano.instruments[0].notes.append(pretty_midi.Note(80, 60, 0, 1))
    piano.write(str(tmp_path / "piano.mid"))
    with pytest.raises(ComposerError, match="no drum track"):
        read_drum_file(tmp_path / "piano.mid")
    (tmp_path / "junk.mid").write_text("not midi")
    with pytest.raises(ComposerError, match="not a readable MIDI file"):
        read_drum_file(tmp_path / "junk.mid")


def test_registers_through_the_entry_point():
    reg = plugins.load()
    info = reg.plugins["drums"]
    assert not info.error, info.error
    assert reg.encoder("drums") is DrumsEncoder
    assert reg.corpora["drum-files"].modality == "drums"
    assert reg.writer("drums", "mid").suffix == ".mid"


def _composer(env, *args, cwd=None):
    result = subprocess.run(
        [sys.executable, "-m", "composer", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_cli_lists_the_plugin(drums_plugin):
    assert "drums" in _composer(drums_plugin, "encoders")
    out = _composer(drums_plugin, "plugins")
    assert "encoders: drums" in out and "drum-files" in out


@pytest.mark.slow
def test_train_and_sample_end_to_end(tmp_path, drums_plugin):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    try:
        from make_demo_drums import make
    finally:
        sys.path.pop(0)
    make(tmp_path / "corpus", count=6, seed=0)
    run = tmp_path / "run"
    _composer(
        drums_plugin,
        "train",
        "--encoder",
        "drums",
        "--corpus",
        str(tmp_path / "corpus"),
        "--epochs",
        "1",
        "--layers",
        "1",
        "--hidden-size",
        "16",
        "--embedding-size",
        "8",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--device",
        "cpu",
        "--workers",
        "1",
        "-o",
        str(run),
    )
    out = _composer(
        drums_plugin,
        "sample",
        "--checkpoint",
        str(run / "model.safetensors"),
        "--format",
        "mid",
        "--length",
        "2",
        "-n",
        "2",
        "--seed",
        "3",
        "-o",
        str(tmp_path / "out"),
    )
    assert "2 bars" in out
    files = sorted((tmp_path / "out").glob("*.mid"))
    assert len(files) == 2
    for path in files:
        channels = {m.channel for t in mido.MidiFile(path).tracks for m in t if m.type == "note_on"}
        assert channels <= {9}
        [item] = read_drum_file(path) if channels else [None]
        if item is not None:
            assert len(DrumsEncoder().encode(item)) == 2 * 16 + 2
