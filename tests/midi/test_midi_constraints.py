"""Generation constraints, driven by random logits in place of a model."""

from __future__ import annotations

from pathlib import Path

import pretty_midi
import pytest
import torch
from composer_midi.examples import example_pieces
from composer_midi.melody import MelodyEncoder
from composer_midi.notes import Note, skyline
from composer_midi.performance import PerformanceEncoder
from composer_midi.polyphony import END, FIRST_NOTE, STEP_END, PolyphonyEncoder
from hypothesis import given, settings
from hypothesis import strategies as st

from composer import ComposerError, Constraint


def generate(constraint: Constraint, vocab_size: int, rows: int, max_tokens: int, seed: int) -> list[list[int]]:
    """Sample ``rows`` sequences from random logits under the constraint, as the generator would."""
    generator = torch.Generator().manual_seed(seed)
    constraint.start(rows, torch.device("cpu"))
    chosen = []
    for _ in range(max_tokens):
        logits = torch.randn(rows, vocab_size, generator=generator)
        allowed = constraint.allowed()
        assert allowed.any(dim=1).all(), "every row must have a token to choose"
        logits[~allowed] = float("-inf")
        tokens = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
        constraint.advance(tokens)
        chosen.append(tokens)
    return torch.stack(chosen, dim=1).tolist()


def until_end(seq: list[int], eos: int) -> list[int]:
    assert eos in seq, "the row did not end"
    return seq[: seq.index(eos) + 1]


def steps_of(seq: list[int], pitches: int) -> list[list[int]]:
    """The note tokens of each finished step."""
    steps, current = [], []
    for token in seq:
        if token == STEP_END:
            steps.append(current)
            current = []
        elif token >= FIRST_NOTE:
            current.append(token)
    assert current == [], "the end came inside a step"
    return steps


def test_polyphony_length_in_bars_and_the_step_grammar() -> None:
    encoder = PolyphonyEncoder()
    plan = encoder.generation_plan(length=2)
    rows = generate(plan.constraint, encoder.head.vocab_size, rows=6, max_tokens=plan.max_tokens, seed=1)
    for row in rows:
        seq = until_end(row, END)
        steps = steps_of(seq, encoder.pitches)
        assert 16 <= len(steps) <= 32
        before: set[int] = set()
        for tokens in steps:
            pitches = [(t - FIRST_NOTE) % encoder.pitches for t in tokens]
            assert pitches == sorted(set(pitches), reverse=True)
            continued = {p for t, p in zip(tokens, pitches, strict=True) if t >= FIRST_NOTE + encoder.pitches}
            assert continued <= before
            before = set(pitches)
        assert all(t == END for t in row[len(seq) :])


def test_polyphony_default_window_without_a_cadence_is_8_to_16_bars() -> None:
    plan = PolyphonyEncoder().generation_plan(cadence="none")
    assert (plan.constraint.min_steps, plan.constraint.max_steps) == (8 * 16, 16 * 16)
    assert plan.max_tokens > 16 * 16 * 5


@pytest.mark.parametrize("length", [0, -1.5])
def test_non_positive_length_is_an_error(length: float) -> None:
    with pytest.raises(ComposerError, match="length"):
        PolyphonyEncoder().generation_plan(length=length)


def test_melody_ends_in_its_last_bar() -> None:
    encoder = MelodyEncoder()
    plan = encoder.generation_plan(length=3)
    rows = generate(plan.constraint, encoder.head.vocab_size, rows=8, max_tokens=plan.max_tokens, seed=2)
    for row in rows:
        seq = until_end(row, encoder.eos)
        assert encoder.bos not in seq
        assert 32 <= encoder.steps(seq) <= 48


def test_performance_ends_at_its_length_in_seconds() -> None:
    encoder = PerformanceEncoder()
    plan = encoder.generation_plan(length=2.0)
    rows = generate(plan.constraint, encoder.head.vocab_size, rows=4, max_tokens=plan.max_tokens, seed=3)
    for row in rows:
        seq = until_end(row, encoder.eos)
        assert encoder.steps(seq) >= 180  # the end may come in the last tenth
        assert encoder.steps(seq[:-2]) < 200  # and comes at once when time reaches the length


melodies = st.lists(
    st.tuples(st.integers(55, 80), st.integers(0, 2), st.integers(1, 4)),  # pitch, rest before, length
    min_size=1,
    max_size=8,
)


def as_notes(melody: list[tuple[int, int, int]]) -> list[Note]:
    notes, step = [], 0
    for pitch, rest, length in melody:
        notes.append(Note(pitch, step + rest, step + rest + length))
        step += rest + length
    return notes


@settings(max_examples=20, deadline=None, database=None, derandomize=True)
@given(melody=melodies, seed=st.integers(0, 2**16))
def test_harmonization_keeps_the_soprano_whatever_the_model_chooses(
    melody: list[tuple[int, int, int]], seed: int
) -> None:
    encoder = PolyphonyEncoder()
    soprano = as_notes(melody)
    plan = encoder.generation_plan(melody=soprano)
    rows = generate(plan.constraint, encoder.head.vocab_size, rows=4, max_tokens=plan.max_tokens, seed=seed)
    seconds_per_step = 60.0 / (encoder.options.tempo * 4)
    for row in rows:
        seq = [encoder.bos, *until_end(row, END)]
        assert encoder.steps(seq) == soprano[-1].end
        assert all(len(step) <= 4 for step in steps_of(seq, encoder.pitches))
        assert skyline(encoder.notes(seq)) == soprano
        top = encoder.decode(seq).instruments[0]
        assert top.name == "Soprano"
        assert [
            Note(n.pitch, round(n.start / seconds_per_step), round(n.end / seconds_per_step)) for n in top.notes
        ] == soprano


def test_re_struck_polyphony_keeps_the_grammar_and_a_harmonized_melody_in_its_smaller_vocabulary() -> None:
    encoder = PolyphonyEncoder(held_notes=False)
    plan = encoder.generation_plan(length=1, cadence="none")
    for row in generate(plan.constraint, encoder.head.vocab_size, rows=6, max_tokens=plan.max_tokens, seed=1):
        for tokens in steps_of(until_end(row, END), encoder.pitches):
            assert tokens == sorted(set(tokens), reverse=True) and all(t < FIRST_NOTE + encoder.pitches for t in tokens)
    soprano = [Note(67, 0, 3), Note(69, 3, 4), Note(64, 4, 6), Note(67, 6, 8)]  # a lower voice may sing 67 and 69
    plan = encoder.generation_plan(melody=soprano)
    for row in generate(plan.constraint, encoder.head.vocab_size, rows=8, max_tokens=plan.max_tokens, seed=2):
        seq = [encoder.bos, *until_end(row, END)]
        assert skyline(encoder.notes(seq)) == soprano
    # below the melody's 69, a lower voice may not strike its 67 of the step before: it would read back as held
    constraint = plan.constraint
    constraint.start(1, torch.device("cpu"))
    for token in [encoder.new_note(67), STEP_END] * 3 + [encoder.new_note(69)]:
        constraint.advance(torch.tensor([token]))
    allowed = constraint.allowed()[0]
    assert not allowed[encoder.new_note(67)] and allowed[encoder.new_note(66)] and allowed[encoder.new_note(68)]


def test_harmonization_takes_the_top_line_of_a_piece_and_fits_it_by_octaves() -> None:
    encoder = PolyphonyEncoder(min_pitch=36, max_pitch=84)
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0)
    # Two beats of E6 over C4 (E6 is above the range), then two of D6.
    inst.notes = [
        pretty_midi.Note(80, 88, 0.0, 1.0),
        pretty_midi.Note(80, 60, 0.0, 2.0),
        pretty_midi.Note(80, 86, 1.0, 2.0),
    ]
    pm.instruments.append(inst)
    constraint = encoder.harmonization(pm)
    assert (
        constraint.soprano_tokens
        == [encoder.new_note(76)]
        + [encoder.continued_note(76)] * 7
        + [encoder.new_note(74)]
        + [encoder.continued_note(74)] * 7
    )


def test_harmonization_reads_a_melody_file(tmp_path: Path) -> None:
    encoder = PolyphonyEncoder()
    path = tmp_path / "tune.mid"
    example_pieces()[0].write(str(path))  # a scale in eighth notes
    plan = encoder.generation_plan(melody=str(path))
    tokens = plan.constraint.soprano_tokens
    assert tokens[:3] == [encoder.new_note(60), encoder.continued_note(60), encoder.new_note(62)]
    assert len(tokens) == 36 and plan.max_tokens == 36 * 5 + 1


@pytest.mark.parametrize(
    ("melody", "message"),
    [
        ([(60, 0, 4), (62, 2, 6)], "overlap"),
        ([(60, 3, 3)], "start < end"),
        ([(10, 0, 4), (120, 4, 8)], "spans more than"),
        ([], "no notes"),
    ],
)
def test_bad_melodies_are_clear_errors(melody: list[tuple[int, int, int]], message: str) -> None:
    with pytest.raises(ComposerError, match=message):
        PolyphonyEncoder().generation_plan(melody=melody)


@pytest.mark.parametrize("options", [{}, {"steps_per_iteration": 5, "branch_factor": 3},
                                     {"sample": True, "steps_per_iteration": 4}])
def test_beam_search_under_harmonization_keeps_the_melody(options: dict) -> None:
    from composer import plugins
    from composer.generate import generate as run
    from composer.model import ModelConfig, SequenceModel

    encoder = PolyphonyEncoder()
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(vocab_size=encoder.head.vocab_size, layers=1, hidden_size=16,
                                      embedding_size=8)).eval()
    soprano = as_notes([(67, 0, 4), (69, 0, 2), (71, 1, 4), (72, 0, 8)])
    plan = encoder.generation_plan(melody=soprano)
    beam = plugins.get_registry().sampler("beam")
    results = run(model, encoder, beam, n=2, max_tokens=plan.max_tokens, constraint=plan.constraint, seed=1,
                  options=beam.options(options))
    assert results[0].tokens != results[1].tokens
    for result in results:
        assert result.tokens[-1] == END and encoder.steps(result.tokens) == soprano[-1].end
        assert skyline(encoder.notes(result.tokens)) == soprano
