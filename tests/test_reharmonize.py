"""Regenerating voices and bars of a chorale with a bidirectional model: the satb encoder, the gibbs model
family, ``Session.regenerate`` and ``composer reharmonize``."""

import random
from pathlib import Path

import pretty_midi
import pytest
import torch
from composer_midi.satb import RANGES, SatbEncoder
from conftest import run_cli

import composer
from composer import ComposerError
from composer.model import ModelConfig, build_model

PROGRESSION = [(72, 64, 55, 48), (72, 65, 57, 41), (71, 62, 55, 43), (72, 64, 55, 48),
               (69, 65, 60, 53), (67, 64, 60, 48), (67, 62, 59, 43), (67, 64, 55, 36)]


def chorale(seed: int, bars: int = 8) -> pretty_midi.PrettyMIDI:
    """Four named parts in 4/4 at 60 quarters a minute: a half-note chord per two beats, the soprano
    moving in quarters, the alto sometimes in eighths."""
    rng = random.Random(seed)
    pm = pretty_midi.PrettyMIDI(initial_tempo=60)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    parts = [pretty_midi.Instrument(program=52, name=name) for name in ("Soprano", "Alto", "Tenor", "Bass")]
    for i in range(2 * bars):
        chord = PROGRESSION[(i + seed) % len(PROGRESSION)]
        start = 2.0 * i
        for v, pitch in enumerate(chord):
            if v == 0:
                parts[0].notes += [pretty_midi.Note(80, pitch, start, start + 1),
                                   pretty_midi.Note(80, pitch + rng.choice((0, 2, -1)), start + 1, start + 2)]
            elif v == 1 and rng.random() < 0.5:
                parts[1].notes += [pretty_midi.Note(80, pitch, start, start + 0.5),
                                   pretty_midi.Note(80, pitch - 2, start + 0.5, start + 2)]
            else:
                parts[v].notes.append(pretty_midi.Note(80, pitch, start, start + 2))
    pm.instruments = parts
    return pm


def tiny_gibbs(encoder: SatbEncoder, layers: int) -> torch.nn.Module:
    spec = encoder.head.spec()
    config = {"family": "gibbs", "layers": layers, "hidden_size": 16, "embedding_size": 8,
              "vocab_size": spec["vocab_size"], "head": spec}
    return build_model(ModelConfig.from_dict(config)).eval()


def notes_of(pm: pretty_midi.PrettyMIDI, name: str) -> list[tuple[int, float, float]]:
    inst = next(i for i in pm.instruments if i.name == name)
    return [(n.pitch, round(n.start, 3), round(n.end, 3)) for n in inst.notes]


@pytest.fixture(scope="module")
def reharm(tmp_path_factory):
    """A tiny gibbs model trained for a few steps on six synthetic chorales, and a chorale to reharmonize
    (written at the tempo the encoder decodes at, so that times compare directly)."""
    root = tmp_path_factory.mktemp("reharm")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(6):
        chorale(i).write(str(corpus / f"c{i}.mid"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPOSER_HOME", str(root / "home"))
        mp.setenv("COMPOSER_LOAD_PLUGINS", "")
        result = composer.train(encoder="satb", corpus=str(corpus), output=str(root / "run"), epochs=2, family="gibbs",
                                layers=1, hidden_size=24, embedding_size=8, batch_size=2, valid_fraction=0.2,
                                workers=1, warmup_steps=1, seed=0)
    path = root / "chorale.mid"
    SatbEncoder().decode(SatbEncoder().encode(chorale(7))).write(str(path))
    return Path(result["model"]), path


def test_reharmonize_keeps_soprano_and_bass_note_for_note_and_redraws_the_inner_voices_in_range(reharm, tmp_path):
    model, source = reharm
    out = tmp_path / "out"
    result = run_cli(["reharmonize", str(source), "--keep", "soprano,bass", "--checkpoint", str(model),
                      "--seed", "3", "--sweeps", "4", "-o", str(out)])
    assert result.returncode == 0, result.stderr
    written = sorted(out.glob("*.mid"))
    assert [p.name for p in written] == ["run-reharm-3-1.mid"]
    assert "wrote 1 file(s)" in result.stdout
    before, after = pretty_midi.PrettyMIDI(str(source)), pretty_midi.PrettyMIDI(str(written[0]))
    for voice in ("Soprano", "Bass"):
        assert notes_of(after, voice) == notes_of(before, voice)
    redrawn = notes_of(after, "Alto") + notes_of(after, "Tenor")
    assert notes_of(after, "Alto") != notes_of(before, "Alto") or notes_of(after, "Tenor") != notes_of(before, "Tenor")
    for voice, (low, high) in (("Alto", RANGES[1]), ("Tenor", RANGES[2])):
        assert all(low <= pitch <= high for pitch, _, _ in notes_of(after, voice))
    assert redrawn


def test_regenerating_bars_5_to_8_keeps_everything_outside_them(reharm):
    model, source = reharm
    session = composer.load(model)
    piece = session.regenerate(source, 2, seed=1, requests={"bars": "5-8"}, sweeps=3)[1]
    before = pretty_midi.PrettyMIDI(str(source))
    seconds_per_bar = 4 * 60 / SatbEncoder().options.tempo
    lo, hi = 4 * seconds_per_bar, 8 * seconds_per_bar
    changed = False
    for voice in ("Soprano", "Alto", "Tenor", "Bass"):
        outside = lambda notes: [n for n in notes if n[2] <= lo + 1e-6 or n[1] >= hi - 1e-6]  # noqa: E731
        assert outside(notes_of(piece, voice)) == outside(notes_of(before, voice))
        changed |= notes_of(piece, voice) != notes_of(before, voice)
    assert changed


def test_the_same_seed_regenerates_the_same_chorale(reharm):
    model, source = reharm
    session = composer.load(model)
    a = session.regenerate(source, seed=5, requests={"keep": "s,b"}, sweeps=2)
    b = session.regenerate(source, seed=5, requests={"keep": "s,b"}, sweeps=2)
    assert a.sequences[0].tokens == b.sequences[0].tokens
    assert a.sequences[0].log_likelihood < 0 and a.sequences[0].new_tokens > 0


@pytest.mark.parametrize(("requests", "message"), [
    ({"keep": "soprano,baritone"}, "unknown voice 'baritone'"),
    ({"bars": "12-14"}, r"outside the piece: it has 8 bar\(s\)"),
    ({"bars": "5-x"}, "cannot read bars '5-x'"),
    ({"keep": "s,a,t,b"}, "nothing to regenerate"),
    ({}, "say what to regenerate"),
    ({"melody": "60"}, "unknown option 'melody' for regenerating with satb"),
])
def test_bad_regeneration_requests_are_one_line_errors(reharm, requests, message):
    model, source = reharm
    with pytest.raises(ComposerError, match=message) as caught:
        composer.load(model).regenerate(source, requests=requests)
    assert "\n" not in str(caught.value)


def test_reharmonize_refuses_a_piece_that_is_not_in_four_voices(reharm, tmp_path):
    model, _ = reharm
    melody = pretty_midi.PrettyMIDI()
    line = pretty_midi.Instrument(program=0, name="Melody")
    line.notes = [pretty_midi.Note(80, 60 + i, i * 0.5, i * 0.5 + 0.5) for i in range(8)]
    melody.instruments.append(line)
    path = tmp_path / "melody.mid"
    melody.write(str(path))
    result = run_cli(["reharmonize", str(path), "--keep", "soprano", "--checkpoint", str(model), "-o", str(tmp_path)])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: not a four-part chorale: 1 part(s) singing 1 voice(s); give four voices (soprano, alto, tenor, bass)"]
    assert not list(tmp_path.glob("*-reharm-*"))


def test_a_bidirectional_model_does_not_sample_and_a_left_to_right_one_does_not_regenerate(reharm):
    model, source = reharm
    with pytest.raises(ComposerError, match="use `composer reharmonize`"):
        composer.load(model).generate(seed=1)
    with pytest.raises(ComposerError, match="not a bidirectional one"):
        composer.load("bach").regenerate(source, requests={"keep": "soprano"})


def test_gibbs_conditionals_never_see_the_position_they_predict():
    encoder = SatbEncoder()
    torch.manual_seed(0)
    model = tiny_gibbs(encoder, layers=2)
    frames = torch.tensor(encoder.encode(chorale(1))[1:]).view(1, -1, 5)
    t, voice = 9, 2
    changed = frames.clone()
    changed[0, t, voice] = frames[0, t, voice] + 1
    with torch.no_grad():
        a, b = model.conditionals(frames), model.conditionals(changed)
    assert torch.equal(a[0, t, voice], b[0, t, voice])  # its own token is hidden from it
    assert not torch.allclose(a[0, t, voice - 1], b[0, t, voice - 1])  # the others at the step see it
    assert not torch.allclose(a[0, t - 1], b[0, t - 1]) and not torch.allclose(a[0, t + 1], b[0, t + 1])


def test_gibbs_future_of_a_padded_row_is_that_of_the_row_alone():
    encoder = SatbEncoder()
    torch.manual_seed(0)
    model = tiny_gibbs(encoder, layers=1)
    short = torch.tensor(encoder.encode(chorale(2, bars=2))[1:]).view(1, -1, 5)
    long = torch.tensor(encoder.encode(chorale(3, bars=4))[1:]).view(1, -1, 5)
    padded = torch.cat([torch.nn.functional.pad(short, (0, 0, 0, long.shape[1] - short.shape[1])), long])
    with torch.no_grad():
        alone = model.conditionals(short)
        together = model.conditionals(padded, torch.tensor([short.shape[1], long.shape[1]]))
    assert torch.allclose(alone[0], together[0, : short.shape[1]], atol=1e-6)


def test_reharmonize_with_the_bach_style_uses_its_bidirectional_companion(tmp_path):
    from composer.plugins import get_registry

    if "bach-reharm" not in get_registry().styles:
        pytest.skip("the installed styles have no bach-reharm (an install from another tree)")
    source = tmp_path / "chorale.mid"
    chorale(4).write(str(source))
    result = run_cli(["reharmonize", str(source), "--keep", "soprano,bass", "--style", "bach", "--seed", "1",
                      "--sweeps", "2", "-o", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr
    assert "regenerated with bach-reharm, the bidirectional companion of bach" in result.stderr
    written = pretty_midi.PrettyMIDI(str(tmp_path / "out" / "bach-reharm-1-1.mid"))
    original = SatbEncoder().decode(SatbEncoder().encode(chorale(4)))
    for voice in ("Soprano", "Bass"):
        assert notes_of(written, voice) == notes_of(original, voice)


def test_the_web_page_offers_only_styles_that_write_new_pieces(reharm, isolated):
    import shutil

    from composer import jobs, plugins

    model, _ = reharm
    (isolated / "styles").mkdir(exist_ok=True)
    shutil.copy(model, isolated / "styles" / "mine-reharm.safetensors")
    plugins.reset()
    assert composer.load("mine-reharm").regenerates
    offered = {style["name"] for style in jobs.style_list(plugins.get_registry())}
    assert "bach" in offered and "mine-reharm" not in offered


def test_satb_reads_four_voices_from_named_parts_unnamed_parts_or_one_track():
    encoder = SatbEncoder()
    named = chorale(1)
    expected = encoder.encode(named)
    unnamed = chorale(1)
    unnamed.instruments = [unnamed.instruments[i] for i in (2, 0, 3, 1)]
    for inst in unnamed.instruments:
        inst.name = "Choir"
    one_track = chorale(1)
    piano = pretty_midi.Instrument(program=0, name="Piano")
    piano.notes = [n for inst in one_track.instruments for n in inst.notes]
    one_track.instruments = [piano]
    assert encoder.encode(unnamed) == expected
    assert encoder.encode(one_track) == expected
    voices, bar_steps = encoder.voices(named)
    assert bar_steps == 16 and [min(n.pitch for n in v) for v in voices] == sorted(
        (min(n.pitch for n in v) for v in voices), reverse=True)
