"""The MIDI encoders: token layouts, round trips on real chorales, augmentation, fitting into a range."""

from __future__ import annotations

import hashlib
import random

import pretty_midi
import pytest
from composer_midi.corpora import load_music21
from composer_midi.examples import example_pieces
from composer_midi.melody import MelodyEncoder
from composer_midi.notes import Note, merge_restrikes, quantize, skyline, transpose_tokens
from composer_midi.performance import PerformanceEncoder
from composer_midi.polyphony import FIRST_NOTE, STEP_END, PolyphonyEncoder

from composer import ComposerError, Encoder, testing

ENCODERS = (MelodyEncoder, PolyphonyEncoder, PerformanceEncoder)


@pytest.fixture(scope="module")
def chorale() -> pretty_midi.PrettyMIDI:
    (piece,) = load_music21("bach/bwv10.7.mxl")  # four voices, no instrumental part
    return piece


def piece(*notes: tuple[int, float, float], tempo: float = 120.0, velocity: int = 80) -> pretty_midi.PrettyMIDI:
    """One piano track of (pitch, start, end) in seconds."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(velocity, p, s, e) for p, s, e in notes]
    pm.instruments.append(inst)
    return pm


def grid(inst: pretty_midi.Instrument, seconds_per_step: float) -> list[Note]:
    return [Note(n.pitch, round(n.start / seconds_per_step), round(n.end / seconds_per_step)) for n in inst.notes]


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_example_items_round_trip_and_stay_in_vocabulary(encoder_class: type) -> None:
    encoder = encoder_class()
    for item in encoder.example_items():
        seq = encoder.encode(item)
        assert seq[0] == encoder.bos and seq[-1] == encoder.eos
        assert all(0 <= t < encoder.head.vocab_size for t in seq)
        assert encoder.encode(encoder.decode(seq)) == seq
        assert encoder.summarize(encoder.decode(seq))


def test_vocab_sizes_follow_the_documented_layouts() -> None:
    assert MelodyEncoder().head.vocab_size == 2 + 37 + 2
    assert PolyphonyEncoder().head.vocab_size == 3 + 2 * 88
    assert PerformanceEncoder().head.vocab_size == 128 + 128 + 100 + 32 + 2


def test_polyphony_round_trips_a_bach_chorale_note_for_note(chorale: pretty_midi.PrettyMIDI) -> None:
    encoder = PolyphonyEncoder()
    seq = encoder.encode(chorale)
    decoded = encoder.decode(seq)
    assert encoder.encode(decoded) == seq
    assert sorted(encoder.notes(seq)) == sorted(merge_restrikes(quantize(chorale, 4)))
    assert encoder.steps(seq) == max(n.end for n in quantize(chorale, 4))


def test_polyphony_lists_each_step_highest_note_first(chorale: pretty_midi.PrettyMIDI) -> None:
    encoder = PolyphonyEncoder()
    seq = encoder.encode(chorale)
    step: list[int] = []
    for token in seq[1:-1]:
        if token == STEP_END:
            assert step == sorted(step, reverse=True) and len(set(step)) == len(step)
            step = []
        else:
            step.append((token - FIRST_NOTE) % encoder.pitches)
    assert step == []


def test_polyphony_decodes_a_chorale_into_its_four_voices(chorale: pretty_midi.PrettyMIDI) -> None:
    encoder = PolyphonyEncoder()
    decoded = encoder.decode(encoder.encode(chorale))
    assert [inst.name for inst in decoded.instruments] == ["Soprano", "Alto", "Tenor", "Bass"]
    seconds_per_step = 60.0 / (encoder.options.tempo * 4)
    kept = total = 0
    for original, voice in zip(chorale.instruments, decoded.instruments, strict=True):
        expected = set(quantize(_alone(chorale, original), 4))
        found = len(expected & set(grid(voice, seconds_per_step)))
        assert found >= 0.8 * len(expected)  # unisons merge and crossings swap: the encoding loses those
        kept, total = kept + found, total + len(expected)
    assert kept >= 0.85 * total


def _alone(pm: pretty_midi.PrettyMIDI, inst: pretty_midi.Instrument) -> pretty_midi.PrettyMIDI:
    copy = pretty_midi.PrettyMIDI(initial_tempo=pm.get_tempo_changes()[1][0])
    copy.time_signature_changes = pm.time_signature_changes
    copy.instruments.append(inst)
    return copy


def test_polyphony_restruck_and_continued_notes() -> None:
    encoder = PolyphonyEncoder()
    pm = piece((60, 0.0, 0.5), (60, 0.5, 0.75), (64, 0.0, 0.75), tempo=60.0)  # a sixteenth lasts 0.25 s
    seq = encoder.encode(pm)
    new, held = encoder.new_note, encoder.continued_note
    assert seq == [0, new(64), new(60), STEP_END, held(64), held(60), STEP_END, held(64), new(60), STEP_END, 1]
    # A CONTINUED_NOTE without a note to continue starts one; notes missing from a step end there.
    assert encoder.notes([0, held(60), STEP_END, STEP_END, held(60), STEP_END, 1]) == [
        Note(60, 0, 1),
        Note(60, 2, 3),
    ]


def test_restruck_polyphony_has_no_held_note_tokens_and_reads_repeats_as_held_notes() -> None:
    encoder = PolyphonyEncoder(held_notes=False)
    assert encoder.head.vocab_size == 3 + 88  # no CONTINUED_NOTE tokens
    pm = piece((60, 0.0, 0.5), (60, 0.5, 0.75), (64, 0.0, 0.75), (67, 0.5, 0.75), tempo=60.0)  # 0.25 s a step
    seq = encoder.encode(pm)
    new = encoder.new_note
    assert encoder.continued_note(60) == new(60)
    assert seq == [0, new(64), new(60), STEP_END, new(64), new(60), STEP_END, new(67), new(64), new(60), STEP_END, 1]
    # a piano roll: a pitch sounding at consecutive steps is one note, so the re-struck 60 merges with the one held
    assert encoder.notes(seq) == [Note(64, 0, 3), Note(60, 0, 3), Note(67, 2, 3)]
    assert encoder.token_labels(seq)[4:11] == ["E4~", "C4~", "|", "G4", "E4~", "C4~", "|"]
    held = encoder.properties(seq[:-1])["held note"]
    assert list(held[1:3]) == [0, 0] and list(held[4:6]) == [1, 1] and list(held[7:10]) == [0, 1, 1]
    assert encoder.encode(encoder.decode(seq)) == seq


def test_restruck_polyphony_round_trips_a_chorale_frame_for_frame_on_a_quarter_note_grid(
    chorale: pretty_midi.PrettyMIDI,
) -> None:
    encoder = PolyphonyEncoder(held_notes=False, steps_per_quarter=1)
    seq = encoder.encode(chorale)
    assert all(0 <= t < encoder.head.vocab_size for t in seq)
    assert encoder.encode(encoder.decode(seq)) == seq
    frames = [set() for _ in range(encoder.steps(seq))]  # the pitches sounding in each quarter-note frame
    for note in quantize(chorale, 1):
        for step in range(note.start, note.end):
            frames[step].add(note.pitch)
    decoded = [set() for _ in frames]
    for note in encoder.notes(seq):
        for step in range(note.start, note.end):
            decoded[step].add(note.pitch)
    assert decoded == frames
    assert sum(1 for t in seq if t >= FIRST_NOTE) == sum(map(len, frames))  # every sounding note, every frame


def test_restruck_polyphony_meets_the_encoder_contract() -> None:
    encoder = PolyphonyEncoder(held_notes=False, steps_per_quarter=1)
    items = encoder.example_items()
    testing.check_round_trip(encoder, items)
    testing.check_state(encoder, items)
    testing.check_properties(encoder, items)
    testing.check_trains_and_samples(encoder, items)


def test_restruck_polyphony_augment_keeps_the_smaller_vocabulary() -> None:
    encoder = PolyphonyEncoder(held_notes=False, min_pitch=48, max_pitch=72, transpose=6)
    seq = encoder.encode(piece((50, 0.0, 1.0), (72, 0.0, 1.0)))
    rng = random.Random(0)
    shifts = set()
    for _ in range(20):
        out = encoder.augment(seq, rng)
        assert all(0 <= t < encoder.head.vocab_size for t in out)
        (shift,) = {a.pitch - b.pitch for a, b in zip(encoder.notes(out), encoder.notes(seq), strict=True)}
        shifts.add(shift)
    assert shifts == {-2, -1, 0}  # 50 may go down to 48; 72 cannot go up


def test_polyphony_augment_shifts_every_pitch_and_keeps_the_range() -> None:
    encoder = PolyphonyEncoder(min_pitch=48, max_pitch=72, transpose=6)
    seq = encoder.encode(piece((50, 0.0, 0.5), (70, 0.0, 1.0), (60, 0.5, 1.0)))
    rng = random.Random(0)
    shifts = set()
    for _ in range(50):
        out = encoder.augment(seq, rng)
        notes, original = encoder.notes(out), encoder.notes(seq)
        assert [(n.start, n.end) for n in notes] == [(n.start, n.end) for n in original]
        (shift,) = {a.pitch - b.pitch for a, b in zip(notes, original, strict=True)}
        assert -2 <= shift <= 2  # only 48 - 50 and 72 - 70 leave room
        shifts.add(shift)
    assert len(shifts) > 1


def test_polyphony_encode_checked_transposes_by_octaves_or_drops() -> None:
    encoder = PolyphonyEncoder(min_pitch=48, max_pitch=72)
    seq, report = encoder.encode_checked(piece((80, 0.0, 0.5), (75, 0.5, 1.0)))
    assert sorted(n.pitch for n in encoder.notes(seq)) == [63, 68]
    assert (report.transposed, report.dropped) == (2, 0)
    seq, report = encoder.encode_checked(piece((30, 0.0, 0.5), (60, 0.0, 0.5), (100, 0.0, 0.5)))
    assert [n.pitch for n in encoder.notes(seq)] == [60]
    assert report.dropped == 2


def test_polyphony_rejects_bad_options() -> None:
    with pytest.raises(ComposerError, match="min_pitch"):
        PolyphonyEncoder(min_pitch=90, max_pitch=60)
    with pytest.raises(ComposerError, match="unknown option"):
        PolyphonyEncoder(pitch=3)


def test_polyphony_writes_a_track_per_voice_above_four_voices_and_one_piano_track_above_eight() -> None:
    encoder = PolyphonyEncoder()
    # four voices, then a fifth joins: five tracks from the top, not one
    five = piece(*[(p, 0.0, 1.0) for p in (48, 55, 64, 67)], *[(p, 1.0, 2.0) for p in (48, 55, 60, 64, 67)])
    decoded = encoder.decode(encoder.encode(five))
    assert [inst.name for inst in decoded.instruments] == [f"Voice {v}" for v in range(1, 6)]
    assert [inst.notes[-1].pitch for inst in decoded.instruments] == [67, 64, 60, 55, 48]
    assert {inst.program for inst in decoded.instruments} == {encoder.options.program}
    cluster = piece(*[(p, 0.0, 1.0) for p in range(60, 69)])
    decoded = encoder.decode(encoder.encode(cluster))
    assert [(inst.name, len(inst.notes)) for inst in decoded.instruments] == [("Piano", 9)]


def test_melody_takes_the_top_line() -> None:
    encoder = MelodyEncoder()
    # A held C4 under E4 then G4: the line is E4, G4, then C4 surfacing when G4 ends.
    pm = piece((60, 0.0, 1.5), (64, 0.0, 0.5), (67, 0.5, 1.0), tempo=60.0)
    seq = encoder.encode(pm)
    on = [encoder.options.min_pitch + t - 2 for t in seq if 2 <= t < encoder.bos]
    assert on == [64, 67, 60]
    assert encoder.notes(seq) == [Note(64, 0, 2), Note(67, 2, 4), Note(60, 4, 6)]
    assert encoder.steps(seq) == 7  # six steps of notes and the final NOTE_OFF


def test_melody_round_trips_the_top_voice_of_a_chorale(chorale: pretty_midi.PrettyMIDI) -> None:
    encoder = MelodyEncoder()
    seq = encoder.encode(chorale)
    assert encoder.encode(encoder.decode(seq)) == seq
    assert encoder.notes(seq) == skyline(quantize(chorale, 4))


def test_melody_augment_keeps_the_range() -> None:
    encoder = MelodyEncoder()
    seq = encoder.encode(piece((83, 0.0, 0.5), (50, 0.5, 1.0)))
    for seed in range(20):
        notes = encoder.notes(encoder.augment(seq, random.Random(seed)))
        assert all(48 <= n.pitch <= 84 for n in notes)
        assert notes[0].pitch - 83 == notes[1].pitch - 50


def test_performance_round_trip_keeps_timing_within_10_ms() -> None:
    encoder = PerformanceEncoder()
    pm = piece((60, 0.5, 0.5123), (64, 0.5071, 3.2), (67, 0.9, 1.04), (60, 1.25, 1.5), velocity=93)
    decoded = encoder.decode(encoder.encode(pm))
    original = sorted(pm.instruments[0].notes, key=lambda n: (n.start, n.pitch))
    (inst,) = decoded.instruments
    assert len(inst.notes) == len(original)
    for a, b in zip(original, inst.notes, strict=True):
        assert a.pitch == b.pitch
        assert abs((a.start - 0.5) - b.start) <= 0.01 and abs((a.end - 0.5) - b.end) <= 0.01
        assert encoder.velocity_bin(a.velocity) == encoder.velocity_bin(b.velocity)
    assert encoder.steps(encoder.encode(pm)) == 270  # 2.7 s after the first note, in 10 ms ticks


def test_performance_splits_long_silences_into_one_second_shifts() -> None:
    encoder = PerformanceEncoder()
    seq = encoder.encode(piece((60, 0.0, 0.1), (62, 2.55, 2.6)))
    shifts = [t - 256 + 1 for t in seq if 256 <= t < encoder.velocity]
    assert shifts == [10, 100, 100, 45, 5]


def test_performance_augment_transposes_note_ons_and_offs_together() -> None:
    encoder = PerformanceEncoder(transpose=3)
    seq = encoder.encode(piece((60, 0.0, 0.5), (67, 0.25, 1.0)))
    for seed in range(10):
        notes = encoder.decode(encoder.augment(seq, random.Random(seed))).instruments[0].notes
        shift = notes[0].pitch - 60
        assert -3 <= shift <= 3 and notes[1].pitch == 67 + shift


def test_transpose_tokens_moves_every_note_token_by_one_shift_that_fits() -> None:
    notes = range(10, 20)  # two tokens for each of five pitches, like NEW_NOTE and CONTINUED_NOTE
    seq = [0, 11, 16, 3, 13, 19]  # pitches 1, 1, 3 and 4 of 0..4: room for one step down, none up
    outs = [transpose_tokens(seq, random.Random(seed), 3, notes, 5) for seed in range(30)]
    moves = {tuple(b - a for a, b in zip(seq, out, strict=True)) for out in outs}
    assert moves == {(0, 0, 0, 0, 0, 0), (0, -1, -1, 0, -1, -1)}
    rng = random.Random(7)
    assert transpose_tokens([0, 3, 9, 20], rng, 3, notes, 5) == [0, 3, 9, 20]  # no note token: nothing drawn
    assert rng.random() == random.Random(7).random()


@pytest.mark.parametrize(
    ("encoder", "shifts", "digest"),
    [
        pytest.param(
            MelodyEncoder(min_pitch=55, max_pitch=76),
            [2, -4, 0, 0, -2, 0, 0, 0, 3, -3, 0, 0, 0, 0, 0, 0, -1, 2, 0, 0],
            "b4ae978d30ce2fcf",
            id="melody",
        ),
        pytest.param(
            PolyphonyEncoder(min_pitch=36, max_pitch=76),
            [1, 1, -1, 0, 3, 2, -5, 0, 0, 2, -2, 0, -3, 3, -4, 0, 0, 4, -1, 0],
            "648d0d56d9b3325c",
            id="polyphony",
        ),
        pytest.param(
            PerformanceEncoder(transpose=5),
            [2, -3, 4, 0, -1, -2, 1, 0, -1, 3, -2, 0, 5, 2, 0, 0, 1, 3, 4, 0],
            "fcce6f52f13ae787",
            id="performance",
        ),
    ],
)
def test_augment_draws_the_recorded_shifts_from_a_seed(encoder: Encoder, shifts: list[int], digest: str) -> None:
    """The same seed transposes the same way, so that training with it reproduces: recorded before the
    encoders shared one augment. Five rounds over the example pieces and a sequence without notes (which
    draws nothing) from one generator, as training draws for a whole epoch."""
    seqs = [encoder.encode(item) for item in example_pieces()] + [[encoder.bos, encoder.eos]]
    rng = random.Random(2024)
    outs = [encoder.augment(seq, rng) for _ in range(5) for seq in seqs]
    drawn = [next((b - a for a, b in zip(seq, out) if a != b), 0) for seq, out in zip(seqs * 5, outs, strict=True)]
    assert drawn == shifts
    assert hashlib.sha256(repr(outs).encode()).hexdigest()[:16] == digest


def test_summaries_name_parts_bars_key_and_the_ending(chorale: pretty_midi.PrettyMIDI) -> None:
    assert PolyphonyEncoder().summarize(chorale) == "4 parts, 22 bars, G minor, ends on the tonic"


@pytest.mark.parametrize("encoder", [MelodyEncoder(), PolyphonyEncoder(), PerformanceEncoder()], ids=lambda e: e.name)
def test_augment_takes_a_read_only_array_and_draws_as_from_a_list(encoder: Encoder) -> None:
    """Training hands augment a read-only int16 view of the corpus's store: it is left alone, and the same
    generator gives the same tokens as from a list."""
    import numpy as np

    for k, seq in enumerate(encoder.encode(item) for item in example_pieces()):
        view = np.asarray(seq, dtype=np.int16)
        view.flags.writeable = False
        from_array = encoder.augment(view, random.Random(k))
        assert list(np.asarray(from_array)) == encoder.augment(list(seq), random.Random(k))
        assert view.tolist() == list(seq)
