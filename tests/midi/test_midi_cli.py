"""The MIDI commands end to end with a small untrained polyphony model (fast; quality is not the point)."""

import pretty_midi
import pytest
import torch
from conftest import run_cli

from composer import checkpoint, plugins
from composer.model import ModelConfig, SequenceModel
from composer.training import _head_fields


@pytest.fixture
def poly_checkpoint(tmp_path):
    torch.manual_seed(0)
    encoder = plugins.get_registry().encoder("polyphony")()
    config = ModelConfig.from_dict({"layers": 1, "hidden_size": 32, "embedding_size": 16, **_head_fields(encoder)})
    path = tmp_path / "poly.safetensors"
    checkpoint.save(path, SequenceModel(config).state_dict(), {
        "model": config.to_dict(),
        "encoder": {"name": "polyphony", "modality": "midi", "state": encoder.state_dict()},
        "sampler_defaults": {},
    })
    return path


def test_harmonize_keeps_every_melody_note_and_adds_voices_below(poly_checkpoint, tmp_path):
    melody = [67, 67, 69, 71, 72, 71, 69, 67]
    result = run_cli(["harmonize", "--checkpoint", str(poly_checkpoint), "--melody", " ".join(map(str, melody)),
                      "-n", "3", "--seed", "2", "-o", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr
    for i in (1, 2, 3):
        pm = pretty_midi.PrettyMIDI(str(tmp_path / "out" / f"poly-harmony-2-{i}.mid"))
        notes = sorted((n for inst in pm.instruments for n in inst.notes), key=lambda n: (n.start, -n.pitch))
        onsets = sorted({round(n.start, 3) for n in notes})
        top = [max((n for n in notes if round(n.start, 3) <= t < round(n.end, 3) - 1e-6), key=lambda n: n.pitch)
               for t in onsets]
        tops = []
        for note in top:  # the top line, one entry per melody note
            if not tops or tops[-1] is not note:
                tops.append(note)
        assert [n.pitch for n in tops] == melody
        assert all(n.pitch <= 72 for n in notes)


def test_harmonize_from_a_file_and_bad_melodies(poly_checkpoint, tmp_path):
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(90, p, 0.5 * k, 0.5 * (k + 1)) for k, p in enumerate([72, 74, 76, 77])]
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "tune.mid"))
    ok = run_cli(["harmonize", str(tmp_path / "tune.mid"), "--checkpoint", str(poly_checkpoint), "--seed", "1",
                  "-o", str(tmp_path / "o"), "--format", "mid,musicxml"])
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "o" / "poly-harmony-1-1.musicxml").is_file()
    bad = run_cli(["harmonize", "--checkpoint", str(poly_checkpoint), "--melody", "67 sixty"])
    assert bad.returncode == 1 and "cannot read 'sixty'" in bad.stderr
    neither = run_cli(["harmonize", "--checkpoint", str(poly_checkpoint)])
    assert neither.returncode == 1 and "give a melody" in neither.stderr


def test_sample_writes_named_midi_with_a_summary(poly_checkpoint, tmp_path):
    result = run_cli(["sample", "--checkpoint", str(poly_checkpoint), "-n", "2", "--seed", "5", "--length", "4",
                      "-o", str(tmp_path / "s")])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["poly-5-1.mid", "poly-5-2.mid"]
    assert "bar" in result.stdout and "wrote 2 file(s)" in result.stdout


def test_folder_with_corrupt_empty_and_renamed_files_trains_on_the_good_ones(tmp_path):
    folder = tmp_path / "midis"
    folder.mkdir()
    for k in range(3):
        pm = pretty_midi.PrettyMIDI(initial_tempo=100)
        inst = pretty_midi.Instrument(0)
        inst.notes = [pretty_midi.Note(80, 60 + k + j % 5, 0.3 * j, 0.3 * (j + 1)) for j in range(16)]
        pm.instruments.append(inst)
        pm.write(str(folder / f"good{k}.mid"))
    (folder / "corrupt.mid").write_bytes((folder / "good0.mid").read_bytes()[:30])
    (folder / "empty.mid").write_bytes(b"")
    (folder / "notes.mid").write_text("this is a text file, not MIDI\n")
    result = run_cli(["train", "--encoder", "polyphony", "--corpus", str(folder), "-o", str(tmp_path / "r"),
                      "--epochs", "1", "--layers", "1", "--hidden-size", "16", "--batch-size", "2",
                      "--seq-len", "16", "--workers", "1"])
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 3
    assert {w.split(":")[1].strip().rsplit("/", 1)[-1] for w in warnings} == {"corrupt.mid", "empty.mid", "notes.mid"}
    assert "3 sequences" in result.stderr and "skipped 3 unusable file(s)" in result.stderr
