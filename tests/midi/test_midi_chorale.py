"""Chorale endings, voice ranges and voice leading: the metrics on hand-made pieces, and generation under the
chorale constraint with a small untrained model (whatever it prefers, the rules hold)."""

import pretty_midi
import pytest
import torch
from composer_midi import stats
from composer_midi.harmony import SATB_RANGES, chord_root, ends_on_tonic, in_range
from composer_midi.notes import Note, quantize

import composer
from composer import ComposerError, checkpoint, plugins
from composer.model import ModelConfig, SequenceModel
from composer.training import _head_fields

BAR = 16  # steps per 4/4 bar


def chorale(chords: list[tuple[int, int, int, int]], beats: int = 2) -> list[list[Note]]:
    """Four voices (soprano first) singing ``chords`` (soprano to bass pitches), each ``beats`` quarters long."""
    length = 4 * beats
    return [[Note(chord[v], i * length, (i + 1) * length) for i, chord in enumerate(chords)] for v in range(4)]


def midi(parts: list[list[Note]]) -> pretty_midi.PrettyMIDI:
    """One track per voice at 60 quarters a minute, four grid steps to the quarter."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=60)
    for part in parts:
        inst = pretty_midi.Instrument(52)
        inst.notes = [pretty_midi.Note(80, n.pitch, n.start / 4, n.end / 4) for n in part]
        pm.instruments.append(inst)
    return pm


CADENCE_IN_C = [(72, 67, 64, 48), (72, 69, 65, 53), (71, 67, 62, 55), (72, 67, 64, 48)]  # I IV V I
HALF_CADENCE_IN_C = [(72, 67, 64, 48), (72, 69, 65, 53), (72, 67, 64, 48), (71, 67, 62, 55)]  # I IV I V


@pytest.mark.parametrize(("pitches", "root"), [
    ([60, 64, 67], 0), ([64, 67, 72], 0), ([55, 59, 62, 65], 7), ([48, 55, 64], 0), ([48, 55], 0), ([57, 60, 64], 9),
    ([59, 62, 65], 11), ([], None),
])
def test_chord_root_of_triads_inversions_sevenths_and_bare_fifths(pitches: list[int], root: int | None) -> None:
    assert chord_root(pitches) == root


def test_a_piece_ends_on_the_tonic_after_an_authentic_cadence_and_not_after_a_half_cadence() -> None:
    assert ends_on_tonic([n for part in chorale(CADENCE_IN_C) for n in part])
    assert not ends_on_tonic([n for part in chorale(HALF_CADENCE_IN_C) for n in part])


def test_notes_outside_a_voices_satb_range_are_counted() -> None:
    parts = chorale([(84, 67, 64, 48), (72, 69, 69, 38), (72, 67, 64, 48)])  # soprano C6 once; tenor A4, bass D2
    assert in_range(parts).tolist() == [[2, 3], [3, 3], [2, 3], [2, 3]]


def test_statistics_report_the_tonic_ending_the_ranges_and_known_parallels() -> None:
    parts = chorale([(72, 64, 55, 48), (74, 65, 57, 50), (71, 67, 62, 55), (72, 67, 64, 48)])  # I ii V I
    # tenor and bass rise a fifth apart into ii and again into V; soprano and bass two octaves apart into ii
    assert stats.parallels(parts) == (2, 1, 3)
    result = stats.statistics([midi(parts)], steps_per_quarter=4, bar_steps=BAR)
    assert result["ending on the tonic"] == 1.0
    assert result["parallel 5ths per 100 steps"] == pytest.approx(100 * 2 / 3)
    assert [result[f"{name} notes in {low}-{high}"] for name, low, high in
            zip(stats.VOICE_NAMES, ("C4", "G3", "C3", "E2"), ("G5", "D5", "G4", "C4"))] == [1.0] * 4
    assert len(SATB_RANGES) == 4


def untrained_checkpoint(path, **options) -> dict:
    """Save a polyphony checkpoint with untrained weights whose style asks for SATB voicing, as ``bach`` does;
    returns its metadata."""
    torch.manual_seed(0)
    encoder = plugins.get_registry().encoder("polyphony")(**options)
    config = ModelConfig.from_dict({"layers": 1, "hidden_size": 32, "embedding_size": 16, **_head_fields(encoder)})
    meta = {
        "model": config.to_dict(),
        "encoder": {"name": "polyphony", "modality": "midi", "state": encoder.state_dict()},
        "sampler_defaults": {"voicing": "satb"},
    }
    checkpoint.save(path, SequenceModel(config).state_dict(), meta)
    return meta


@pytest.fixture
def untrained(tmp_path):
    untrained_checkpoint(tmp_path / "chorales.safetensors")
    return composer.load(tmp_path / "chorales.safetensors", device="cpu")


@pytest.fixture
def restruck(tmp_path):
    """As ``untrained``, with held notes re-struck: a vocabulary without CONTINUED_NOTE tokens."""
    untrained_checkpoint(tmp_path / "restruck.safetensors", held_notes=False)
    return composer.load(tmp_path / "restruck.safetensors", device="cpu")


def grid(pm: pretty_midi.PrettyMIDI) -> list[Note]:
    return quantize(pm, 4)


def assert_ends_at_a_held_tonic(notes: list[Note], least_bars: float, most_bars: float) -> None:
    end = max(n.end for n in notes)
    assert least_bars * BAR <= end <= most_bars * BAR and end % (BAR // 2) == 0
    last = [n for n in notes if n.end == end]
    assert ends_on_tonic(notes)
    assert min(n.end - n.start for n in last) >= BAR // 2  # a half or whole note
    assert min(last, key=lambda n: n.pitch).pitch % 12 == chord_root([n.pitch for n in last])  # root in the bass


def test_satb_voicing_keeps_every_voice_in_range_without_parallels_and_ends_on_a_held_tonic(untrained) -> None:
    pieces = untrained.generate(6, seed=3, length=4)
    result = stats.statistics(list(pieces), steps_per_quarter=4, bar_steps=BAR)
    assert result["pieces in 4 voices"] == 1.0 and result["polyphony"] == 4.0
    assert [result[key] for key in result if " notes in " in key] == [1.0] * 4
    assert result["parallel 5ths per 100 steps"] == 0 and result["parallel 8ves per 100 steps"] == 0
    # only where the forced final cadence leaves no other way may two voices move in parallel
    more = stats.statistics(list(untrained.generate(32, seed=2, length=4)), steps_per_quarter=4, bar_steps=BAR)
    assert more["parallel 5ths per 100 steps"] + more["parallel 8ves per 100 steps"] < 0.5
    assert [more[key] for key in more if " notes in " in key] == [1.0] * 4
    for pm in pieces:
        assert_ends_at_a_held_tonic(grid(pm), 3, 4)
        assert untrained.encoder.summarize(pm).endswith("ends on the tonic")


def test_satb_voicing_and_the_cadence_hold_with_re_struck_notes(restruck) -> None:
    assert restruck.model.config.vocab_size == 3 + 88
    pieces = restruck.generate(8, seed=3, length=4)
    assert all(max(g.tokens) < 3 + 88 for g in pieces.sequences)
    result = stats.statistics(list(pieces), steps_per_quarter=4, bar_steps=BAR)
    assert result["pieces in 4 voices"] == 1.0
    assert [result[key] for key in result if " notes in " in key] == [1.0] * 4
    assert result["parallel 5ths per 100 steps"] + result["parallel 8ves per 100 steps"] < 0.5
    for pm in pieces:
        assert_ends_at_a_held_tonic(grid(pm), 3, 4)  # the final chord, re-struck at every step, is held
    for pm in restruck.generate(2, seed=1, length=2, requests={"voicing": "free", "cadence": "none"}):
        assert 1 <= max(n.end for n in grid(pm)) / BAR <= 2


def test_a_checkpoint_from_before_the_held_notes_option_loads_with_held_notes(tmp_path) -> None:
    meta = untrained_checkpoint(tmp_path / "old.safetensors")
    del meta["encoder"]["state"]["options"]["held_notes"]  # as every checkpoint saved before the option was
    weights = checkpoint.load(tmp_path / "old.safetensors").weights
    checkpoint.save(tmp_path / "old.safetensors", weights, meta)
    session = composer.load(tmp_path / "old.safetensors", device="cpu")
    assert session.encoder.options.held_notes is True
    assert session.encoder.head.vocab_size == session.model.config.vocab_size == 3 + 2 * 88
    tokens = session.generate(2, seed=1, length=2).sequences[0].tokens
    assert max(tokens) >= 3 + 88  # it still holds notes with CONTINUED_NOTE tokens


def test_long_pieces_keep_their_voices_in_range(untrained) -> None:
    pieces = untrained.generate(1, seed=1, length=64)
    result = stats.statistics(list(pieces), steps_per_quarter=4, bar_steps=BAR)
    assert [result[key] for key in result if " notes in " in key] == [1.0] * 4
    assert result["ending on the tonic"] == 1.0 and 63 <= result["bars"] <= 64


def test_a_free_voicing_piece_also_ends_at_a_cadence_and_none_ends_anywhere(untrained) -> None:
    for pm in untrained.generate(4, seed=2, length=3, requests={"voicing": "free"}):
        assert_ends_at_a_held_tonic(grid(pm), 2, 3)
    uncadenced = untrained.generate(8, seed=2, length=3, requests={"voicing": "free", "cadence": "none"})
    assert not all(ends_on_tonic(grid(pm)) for pm in uncadenced)


def test_beam_search_follows_the_chorale_constraint(untrained) -> None:
    pieces = untrained.generate(2, seed=1, length=2, sampler="beam", beam_size=3)
    for pm in pieces:
        assert_ends_at_a_held_tonic(grid(pm), 1, 2)


@pytest.mark.parametrize("requests", [{"cadence": "sometimes"}, {"voicing": "choir"}])
def test_unknown_cadence_or_voicing_is_one_clear_error(untrained, requests) -> None:
    with pytest.raises(ComposerError, match="cadence must be one of auto, none and voicing one of satb, free"):
        untrained.generate(1, seed=1, length=2, requests=requests)
