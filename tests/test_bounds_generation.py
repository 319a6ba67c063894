"""Issue 15, the generation side: every sampling option validated once in the library with one line that names
it; generation, melodies and primers bounded; a large -n made and written batch by batch."""

import time

import pretty_midi
import pytest
import torch
from click.testing import CliRunner

import composer
from composer import ComposerError, checkpoint, plugins
from composer.generate import Decoding
from composer.model import ModelConfig, SequenceModel
from composer.session import BATCH
from composer.training import _head_fields


def tiny_polyphony(path, sampler_defaults=None, attention=0):
    """An untrained 1x32 polyphony model (fast; quality is not the point) with the given stored defaults."""
    torch.manual_seed(0)
    encoder = plugins.get_registry().encoder("polyphony")()
    config = ModelConfig.from_dict({"layers": 1, "hidden_size": 32, "embedding_size": 16, "attention": attention,
                                    **_head_fields(encoder)})
    checkpoint.save(path, SequenceModel(config).state_dict(), {
        "model": config.to_dict(),
        "encoder": {"name": "polyphony", "modality": "midi", "state": encoder.state_dict()},
        "sampler_defaults": sampler_defaults if sampler_defaults is not None else {"sampler": "top-p", "top_p": 0.95},
    })
    return path


@pytest.fixture
def poly(tmp_path):
    return tiny_polyphony(tmp_path / "poly.safetensors")


def cli(*args):
    from composer.cli import cli as group

    return CliRunner().invoke(group, [str(a) for a in args])


def assert_one_line_error(result, *words):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0, result.stdout
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


BAD_OPTIONS = [
    (["--temperature", "nan"], "temperature"),
    (["--temperature", "inf"], "temperature"),
    (["--temperature", "-1"], "temperature must be 0 (always the most likely token) or from 0.001 to 1000"),
    (["--temperature", "1e-300"], "temperature must be 0 (always the most likely token) or from 0.001 to 1000"),
    (["--temperature", "1e300"], "temperature must be 0 (always the most likely token) or from 0.001 to 1000"),
    (["--top-p", "0"], "top_p must be in (0, 1]"),
    (["--top-p", "-1"], "top_p must be in (0, 1]"),
    (["--top-p", "1.5"], "top_p must be in (0, 1]"),
    (["--top-p", "nan"], "top_p"),
    (["--top-k", "-5"], "top_k must be a whole number >= 0"),
    (["--sampler", "top-k", "--top-k", "-1"], "top_k must be a whole number >= 0 (0: no cut)"),
    (["--sampler", "top-p", "--top-k", "5"], "sampler 'top-p' takes no top_k"),
    (["--seed", str(2**64)], "seed must be a whole number from 0 to 2**63 - 1"),
    (["--length", "nan"], "length must be a finite number > 0 (bars)"),
    (["--length", "inf"], "length must be a finite number > 0 (bars)"),
    (["--length", "0"], "length must be a finite number > 0"),
    (["--length", "-3"], "length must be a finite number > 0"),
    (["--length", "0.01"], "length 0.01 bars is less than one step"),
    (["--length", "1e9"], "length must be at most 512 bars"),
    (["-n", "0"], "-n"),
    (["-n", "100000"], "-n"),
    (["--sampler", "beam", "-S", "beam_size", "0"], "beam_size"),
    (["--sampler", "beam", "-S", "beam_size", "1000000"], "beam_size"),
    (["--sampler", "beam", "-S", "branch_factor", "0"], "branch_factor"),
    (["--sampler", "beam", "-S", "beam_size", "1000", "-S", "branch_factor", "1000"], "beam_size x branch_factor"),
    (["--sampler", "beam", "-S", "temperature", "nan"], "temperature"),
]


@pytest.mark.parametrize(("args", "message"), BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_a_bad_sampling_option_is_one_line_naming_it_and_writes_nothing(poly, tmp_path, args, message):
    out = tmp_path / "out"
    assert_one_line_error(cli("sample", "--checkpoint", poly, "-o", out, *args), message)
    assert not out.exists()


def test_an_empty_output_folder_is_refused_not_read_as_the_current_one(poly, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli("sample", "--checkpoint", poly, "-o", ""), "output folder is empty")
    assert list(tmp_path.iterdir()) == [poly]


def test_the_library_refuses_what_the_command_line_refuses(poly):
    session = composer.load(poly, device="cpu")
    for kwargs, message in [({"temperature": float("nan")}, "temperature"), ({"seed": 2**64}, "seed"),
                            ({"seed": -1}, "seed"), ({"length": float("inf")}, "length"), ({"n": 1.5}, "-n"),
                            ({"top_p": 0.0}, "top_p"), ({"sampler": "beam", "beam_size": 10**30}, "beam_size")]:
        with pytest.raises(ComposerError, match=message):
            session.generate(**kwargs)


@pytest.mark.parametrize("settings", [{"top_p": 1e-300}, {"temperature": 1e-3}, {"temperature": 1e3},
                                      {"sampler": "beam", "sample": True, "top_p": 1e-30}])
def test_extreme_but_valid_filters_still_draw_pieces(poly, settings):
    pieces = composer.load(poly, device="cpu").generate(2, seed=1, length=1, **settings)
    assert all(g.new_tokens >= 1 for g in pieces.sequences)


def test_top_k_on_a_style_that_samples_with_top_p_applies_top_k(poly):
    session = composer.load(poly, device="cpu")
    pieces = session.generate(2, seed=4, length=1, top_k=1)
    assert pieces.sampler == "ancestral" and pieces.options["top_k"] == 1
    greedy = session.generate(2, seed=4, length=1, sampler="greedy")
    assert [g.tokens for g in pieces.sequences] == [g.tokens for g in greedy.sequences]  # top 1 is the argmax


@pytest.mark.parametrize(("defaults", "message"), [
    ({"length": 1e9}, "the default length stored with"),
    ({"length": float("nan")}, "the default length stored with"),
    ({"sampler": "top-p", "temperature": float("inf")}, "a default stored with the style"),
    ({"sampler": "top-p", "top_p": 7}, "top_p must be in (0, 1]"),
])
def test_bad_defaults_stored_in_a_checkpoint_are_refused_at_once(tmp_path, defaults, message):
    path = tiny_polyphony(tmp_path / "odd.safetensors", defaults)
    start = time.time()
    assert_one_line_error(cli("sample", "--checkpoint", path, "-o", tmp_path / "out"), message)
    assert time.time() - start < 20
    assert not (tmp_path / "out").exists()


def test_a_format_given_twice_is_written_and_counted_once(poly, tmp_path):
    result = cli("sample", "--checkpoint", poly, "--seed", 1, "--length", 1, "--format", "mid,mid", "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in tmp_path.glob("*.mid")] == ["poly-1-1.mid"]
    assert "wrote 1 file(s)" in result.stdout


def test_a_piece_without_notes_is_not_written_and_not_counted(poly, tmp_path):
    session = composer.load(poly, device="cpu")
    written = session.write([pretty_midi.PrettyMIDI()], tmp_path / "out", "mid,png", stem="empty")
    assert written.files == [] and written.skipped == {"mid": 1, "png": 1}
    assert not list((tmp_path / "out").iterdir()) and "the piece has no notes" in written.warnings[0]


# ------------------------------------------------------------------------------------------ melodies


@pytest.mark.parametrize(("melody", "message"), [
    ("60:1e9", "the melody lasts 4,000,000,000 steps; the most a piece may hold is"),
    ("60:1e6 62", "the most a piece may hold is"),
    ("60:1e4", "the melody lasts 40,000 steps; the most a piece may hold is 8,192 steps (2,048 quarter notes)"),
    ("60:inf", "'60:inf' in the melody: a length must be a finite number"),
    ("60:nan", "'60:nan' in the melody: a length must be a finite number"),
    (" ".join(["60"] * 120) + " sixty", "cannot read 'sixty' in the melody"),
])
def test_a_melody_too_long_or_unreadable_is_one_line_at_once(poly, tmp_path, melody, message):
    start = time.time()
    assert_one_line_error(cli("harmonize", "--checkpoint", poly, "--melody", melody, "-o", tmp_path / "o"), message)
    assert time.time() - start < 20


def test_a_length_over_the_longest_piece_is_one_line_at_once(poly, tmp_path):
    start = time.time()
    assert_one_line_error(cli("sample", "--checkpoint", poly, "--length", 600, "-o", tmp_path / "o"),
                          "length must be at most 512 bars, got 600")
    assert time.time() - start < 20 and not (tmp_path / "o").exists()


def test_melody_text_longer_than_a_file_name_is_read_as_a_melody(poly, tmp_path):
    melody = " ".join(["67:0.25", "69:0.25"] * 40)  # 479 characters: more than a file name may hold
    result = cli("harmonize", "--checkpoint", poly, "--melody", melody, "--seed", 1, "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    top = [max(notes, key=lambda n: n.pitch).pitch for notes in _onsets(tmp_path / "poly-harmony-1-1.mid")]
    assert top == [67, 69] * 40


def _onsets(path):
    """The notes struck together, onset by onset."""
    by_start = {}
    for inst in pretty_midi.PrettyMIDI(str(path)).instruments:
        for note in inst.notes:
            by_start.setdefault(round(note.start, 3), []).append(note)
    return [by_start[t] for t in sorted(by_start)]


# ------------------------------------------------------------------------------------------- primers


def test_a_text_primer_on_a_midi_model_is_a_clear_error(poly, tmp_path):
    session = composer.load(poly, device="cpu")
    with pytest.raises(ComposerError, match="is a midi model: it cannot continue a primer of type str"):
        session.generate(primer="hello")
    (tmp_path / "p.txt").write_text("hello\n")
    assert_one_line_error(cli("sample", "--checkpoint", poly, "--primer", tmp_path / "p.txt", "-o", tmp_path / "o"),
                          "this model reads midi")


@pytest.mark.parametrize("attention", [0, 5])
def test_a_long_primer_runs_in_windows_with_the_result_of_one_call(tmp_path, monkeypatch, attention):
    import composer.generate as gen

    session = composer.load(tiny_polyphony(tmp_path / "p.safetensors", attention=attention), device="cpu")
    prefix = [0] + [3 + (i * 7) % 40 if i % 3 else 2 for i in range(3000)]

    def start(window):
        monkeypatch.setattr(gen, "PRIME_WINDOW", window)
        run = Decoding(session.model, prefix, n=3, max_tokens=4, eos=None, constraint=None, seed=0,
                       device=torch.device("cpu"), history_from=1)
        return run.start(3)

    whole_logits, whole_state = start(10_000)
    logits, state = start(256)
    assert torch.allclose(logits, whole_logits, atol=1e-5)
    for a, b in zip(state.layers, whole_state.layers):
        assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b))


def test_a_primer_longer_than_a_window_never_goes_through_the_model_in_one_call(poly, monkeypatch):
    import composer.generate as gen

    session = composer.load(poly, device="cpu")
    monkeypatch.setattr(gen, "PRIME_WINDOW", 512)
    seen = []
    forward = session.model.forward
    monkeypatch.setattr(session.model, "forward", lambda x, *a, **k: seen.append(x.shape[1]) or forward(x, *a, **k))
    primer = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes = [pretty_midi.Note(80, 60 + i % 12, i * 0.125, i * 0.125 + 0.125) for i in range(1200)]
    primer.instruments.append(piano)
    tokens = session.primer(primer)
    assert len(tokens) > 3 * 512
    pieces = session.generate(2, seed=1, length=80, primer=primer)
    assert len(seen) >= 4 and max(seen) <= 512
    assert all(g.tokens[1: len(tokens) + 1] == tokens for g in pieces.sequences)


# ------------------------------------------------------------------------------------------- batches


def test_batches_keep_the_pieces_of_a_smaller_run_with_the_same_seed(poly):
    session = composer.load(poly, device="cpu")
    parts = list(session.batches(5, seed=7, length=1, batch_size=2))
    assert [len(p) for p in parts] == [2, 2, 1]
    assert [g.tokens for g in parts[0].sequences] == [g.tokens for g in session.generate(2, seed=7, length=1).sequences]
    later = [g.tokens for p in parts[1:] for g in p.sequences]
    assert later != [g.tokens for g in parts[0].sequences][: len(later)]  # later batches draw from other seeds
    again = [g.tokens for p in session.batches(5, seed=7, length=1, batch_size=2) for g in p.sequences]
    assert again == [g.tokens for p in parts for g in p.sequences]


def test_beam_search_chooses_its_sequences_in_one_batch(poly):
    session = composer.load(poly, device="cpu")
    parts = list(session.batches(3, seed=1, length=1, sampler="beam", batch_size=2))
    assert [len(p) for p in parts] == [3]


def test_a_large_n_is_written_batch_by_batch_with_progress(poly, tmp_path, monkeypatch):
    from composer.session import Session

    n = BATCH + 6
    batches = Session.batches
    seen_on_disk = []

    def watched(self, *args, **kwargs):
        for pieces in batches(self, *args, **kwargs):
            yield pieces
            seen_on_disk.append(len(list(tmp_path.glob("*.mid"))))  # resumed: the batch is written by now

    monkeypatch.setattr(Session, "batches", watched)
    result = cli("sample", "--checkpoint", poly, "-n", n, "--seed", 2, "--length", 0.25, "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert seen_on_disk == [BATCH, n]
    assert sorted(p.name for p in tmp_path.iterdir())[:2] == ["poly-2-01.mid", "poly-2-02.mid"]
    assert f"wrote {n} file(s)" in result.stdout
    assert "generating" in result.stderr  # the bar (cleared at the end on a terminal)


# ------------------------------------------------------------------------------------------- scoring


def test_scoring_in_bounded_batches_gives_the_scores_of_one_pass(poly, monkeypatch):
    import numpy as np

    import composer.session as library
    from composer.data import Sequences
    from composer.training import evaluate_sequences

    session = composer.load(poly, device="cpu")
    rng = np.random.default_rng(0)
    vocab = session.encoder.head.vocab_size
    sequences = Sequences.from_arrays([rng.integers(0, vocab, size=size) for size in (40, 900, 60, 3000, 75, 41)])
    one_pass = evaluate_sequences(session.model, sequences, torch.device("cpu"), "fp32")
    monkeypatch.setattr(library, "EVAL_POSITIONS", 1000)
    assert [len(g) for g in library.score_groups(sequences.lengths, 16)] == [4, 1, 1]  # the long ones alone
    scores = session.score_sequences(sequences)
    assert scores.tokens == one_pass.count
    assert scores.nll_per_token == pytest.approx(one_pass.loss, rel=1e-6)
    assert scores.token_accuracy == pytest.approx(one_pass.metric("accuracy"), rel=1e-6)


def test_evaluate_refuses_more_samples_than_a_run_may_make(poly):
    with pytest.raises(ComposerError, match="samples must be a whole number from 0 to 10,000"):
        composer.evaluate(poly, samples=10**6, device="cpu")


def test_a_primer_longer_than_the_token_limit_is_refused_in_one_line(poly, monkeypatch):
    import composer.session as library

    session = composer.load(poly, device="cpu")
    monkeypatch.setattr(library, "MAX_TOKENS", 200)
    primer = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes = [pretty_midi.Note(80, 60 + i % 12, i * 0.125, i * 0.125 + 0.125) for i in range(300)]
    primer.instruments.append(piano)
    with pytest.raises(ComposerError, match=r"the primer is [\d,]+ tokens long; the most is 200"):
        session.generate(primer=primer, length=1)
