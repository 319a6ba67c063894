"""`composer inspect` and composer.inspection: recomputed states are the model's own, the encoders' properties
say what each position is in, correlation finds a cell that tracks a property, the picture and the command."""

import math

import numpy as np
import pretty_midi
import pytest
import torch
from conftest import run_cli

from composer import ComposerError, testing
from composer.inspection import LayerTrace, capture, correlate, inspect_sequence
from composer.model import ModelConfig, SequenceModel
from composer.plugins import get_registry

PNG = b"\x89PNG\r\n\x1a\n"
TUNE = ("X:1\nT:Test Reel\nR:reel\nM:4/4\nL:1/8\nK:D\n|:A2FA DAFA|A2FA BEE2|(3ABc dB AFD2:|\n"
        "|:d2fd (adfd)|[DF]2fd ceec:|")


def tiny(cell="lstm", **settings):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=12, embedding_size=6, hidden_size=10, layers=2, cell=cell, **settings)
    return SequenceModel(config).eval()


def random_tokens(n=40, seed=1):
    return torch.randint(0, 12, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


# ----------------------------------------------------------------------------------------- capture


@pytest.mark.parametrize("settings", [
    {"cell": "lstm"}, {"cell": "gru"}, {"cell": "peephole"}, {"cell": "lstm", "recurrent_dropout": 0.2},
    {"cell": "lstm", "layer_norm": True, "residual": True}, {"cell": "lstm", "attention": 3},
], ids=["lstm", "gru", "peephole", "dropout-lstm", "layer-norm-residual", "attention"])
def test_recomputed_states_equal_the_models_own_at_every_step(settings):
    model = tiny(**settings)
    tokens = random_tokens()
    traces = capture(model, tokens)
    state = None
    with torch.no_grad():
        for t, token in enumerate(tokens):
            _, state = model.step(torch.tensor([token]), state)
            for layer, trace in enumerate(traces):
                np.testing.assert_allclose(trace.h[t], state.layers[layer][0][0].numpy(), atol=1e-5)
                if trace.c is not None:
                    np.testing.assert_allclose(trace.c[t], state.layers[layer][1][0].numpy(), atol=1e-5)
    names = {"gru": {"reset", "update"}}.get(settings["cell"], {"input", "forget", "output"})
    for trace in traces:
        assert set(trace.gates) == names and (trace.c is None) == (settings["cell"] == "gru")
        for gate in trace.gates.values():
            assert gate.shape == (len(tokens), 10) and ((gate > 0) & (gate < 1)).all()


def test_capture_follows_a_conditioned_model():
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(vocab_size=12, embedding_size=6, hidden_size=8, layers=1, cond_size=4,
                                      cond_classes=3)).eval()
    tokens = random_tokens(20)
    traces = capture(model, tokens, cond=2)
    with torch.no_grad():
        state = model(torch.tensor([tokens]), cond=torch.tensor([2])).state
    np.testing.assert_allclose(traces[0].c[-1], state.layers[0][1][0].numpy(), atol=1e-5)


def test_capture_refuses_an_autoencoder_in_one_line():
    from composer.vae import SequenceVAE

    config = ModelConfig(vocab_size=12, embedding_size=6, hidden_size=8, layers=1, family="vae", latent_size=4,
                         encoder_size=8)
    with pytest.raises(ComposerError, match=r"^inspect looks inside the stacked recurrent model \(family 'rnn'\); "
                                            r"this model is family 'vae'$"):
        capture(SequenceVAE(config), random_tokens())


def test_saturation_counts_the_steps_a_gate_is_shut_or_open():
    gate = np.array([[0.05, 0.5], [0.95, 0.5], [0.05, 0.99], [0.5, 0.01]])
    trace = LayerTrace("lstm", np.zeros((4, 2)), np.zeros((4, 2)), {"forget": gate})
    left, right = trace.saturation()["forget"]
    np.testing.assert_allclose(left, [0.5, 0.25])
    np.testing.assert_allclose(right, [0.25, 0.25])


# ------------------------------------------------------------------------------------- correlation


def test_correlate_finds_a_planted_cell_and_skips_undefined_positions():
    rng = np.random.default_rng(0)
    values = rng.normal(size=300)
    activations = rng.normal(size=(300, 50))
    activations[:, 17] = -2 * values + 0.1 * rng.normal(size=300)
    values[::10] = np.nan  # undefined there: left out, not a reason to fail
    r = correlate(activations, values)
    assert int(np.nanargmax(np.abs(r))) == 17 and r[17] < -0.99
    assert np.nanmax(np.abs(np.delete(r, 17))) < 0.3
    assert np.isnan(correlate(activations, np.ones(300))).all()  # a constant property: nothing to find


def line_counter(encoder, cell=3):
    """A one-layer char model whose cell ``cell`` counts the characters of the line: input and forget gates
    open, a constant update of 0.5, and the forget gate shut by a newline."""
    torch.manual_seed(0)
    hidden = 8
    model = SequenceModel(ModelConfig(vocab_size=encoder.head.vocab_size, embedding_size=4, hidden_size=hidden,
                                      layers=1)).eval()
    rnn = model.layers[0].rnn
    with torch.no_grad():
        model.adapter.weight[:, 0] = 0
        model.adapter.weight[encoder.index["\n"], 0] = 1
        rows = [gate * hidden + cell for gate in range(4)]  # i, f, g, o
        rnn.weight_ih_l0[rows] = 0
        rnn.weight_hh_l0[rows] = 0
        rnn.bias_hh_l0[rows] = 0
        rnn.weight_ih_l0[hidden + cell, 0] = -30.0
        rnn.bias_ih_l0[rows] = torch.tensor([15.0, 15.0, math.atanh(0.5), 0.0])
    return model


def test_inspection_finds_a_cell_that_counts_the_position_in_line():
    encoder = get_registry().encoder("char")()
    text = "a line\nand a longer line of text\nshort\n" * 3
    encoder.fit([text])
    model = line_counter(encoder)
    seen = inspect_sequence(model, encoder.encode(text)[:-1], encoder)
    best = seen.top(2)["position in line"][0]
    assert (best.layer, best.cell) == (0, 3) and best.r > 0.999
    assert (seen.chosen(1)[0].layer, seen.chosen(1)[0].cell) == (0, 3)  # the picture shows it first
    assert set(seen.constant()) == {"inside quotes", "inside parentheses", "inside brackets"}


def test_inspection_reads_at_most_max_steps_and_says_how_many_it_left_out():
    encoder = get_registry().encoder("char")()
    text = "abc\n" * 30
    encoder.fit([text])
    seen = inspect_sequence(line_counter(encoder), encoder.encode(text), encoder, max_steps=50)
    assert seen.steps == 50 and seen.left_out == len(text) + 2 - 50
    assert seen.layers[0].c.shape == (50, 8) and all(len(v) == 50 for v in seen.properties.values())


# -------------------------------------------------------------------------------------- properties


def test_char_properties_say_what_each_character_is_inside():
    encoder = get_registry().encoder("char")()
    text = 'say "hi (there)" [x]\nab'
    encoder.fit([text])
    found = encoder.properties(encoder.encode(text)[:-1])
    by_char = {name: "".join(str(int(v)) for v in values[1:]) for name, values in found.items()
               if name != "position in line"}
    #                                  say "hi (there)" [x]\nab
    assert by_char["inside quotes"] == "00001111111111100000000"  # the closing quote is outside
    assert by_char["inside parentheses"] == "00000000111111000000000"
    assert by_char["inside brackets"] == "00000000000000000110000"
    assert found["position in line"].tolist() == [0, *range(1, 21), 0, 1, 2]


def test_abc_properties_know_the_header_slurs_chords_and_time_in_the_bar():
    encoder = get_registry().encoder("abc")()
    tune = "X:1\nM:4/4\nL:1/8\nK:G\n|:G2 (AB) [DG]c/d/ (3efg|"
    encoder.fit([tune])
    found = encoder.properties(encoder.encode(tune)[:-1])
    body = tune.index("|:") + 1  # the start token comes first
    assert found["in header"][:body].all() and not found["in header"][body:].any()
    chars = "\0" + tune
    inside = lambda name: "".join(c for c, v in zip(chars, found[name]) if v)  # noqa: E731
    assert inside("inside a slur") == "(AB"  # (3 opens a tuplet, not a slur
    assert inside("inside a chord") == "[DG"
    onsets = [(c, found["time in bar"][i]) for i, c in enumerate(chars) if i >= body and c in "GABDcdefg"]
    # G2 (AB) [DG] c/ d/ then a triplet of eighths in the time of two
    assert [c for c, _ in onsets] == list("GABDGcdefg")
    assert [t for _, t in onsets] == pytest.approx([0, 2, 3, 4, 4, 5, 5.5, 6, 6 + 2 / 3, 6 + 4 / 3])
    assert np.isnan(found["time in bar"][:body]).all()


def test_polyphony_properties_follow_steps_bars_and_voices():
    encoder = get_registry().encoder("polyphony")()
    from composer_midi.notes import Note

    # a whole note chord (C5 over C3) for one bar, then E4 alone for a step, then a silent step
    tokens = encoder.tokens([Note(72, 0, 16), Note(48, 0, 16), Note(64, 16, 17), Note(60, 18, 19)])[:-1]
    found = encoder.properties(tokens)
    assert all(len(values) == len(tokens) for values in found.values())
    step_end = found["step end"].astype(bool)
    assert step_end.sum() == 19 and np.array_equal(np.asarray(tokens) == 2, step_end)
    bar = found["position in bar"]
    assert bar[:4].tolist() == [0, 0, 0, 0] and bar[4] == 1  # start, C5, C3, step end; then step 1
    second_bar = list(encoder.time_marks(tokens))[1]
    assert bar[second_bar] == 0 and encoder.time_marks(tokens) == {0: "bar 1", second_bar: "bar 2"}
    assert found["note number in step"][:4].tolist() == [0, 1, 2, 0]
    assert found["soprano pitch"][:4].tolist() == [72, 72, 72, 72] and found["bass pitch"][1] == 48
    assert found["held note"][1] == 0 and found["held note"][5] == 1  # struck in step 0, held in step 1
    silent = [t for t in range(second_bar, len(tokens)) if tokens[t] == 2 and tokens[t - 1] == 2][0]
    assert np.isnan(found["soprano pitch"][silent]) and np.isnan(found["pitch"][silent])
    assert encoder.token_labels(tokens)[:4] == ["start", "C5", "C3", "|"]


def test_check_properties_fails_naming_an_encoder_whose_properties_miss_positions():
    class Short(get_registry().encoder("char")):
        name = "short"

        def properties(self, tokens):
            return {"everywhere": np.ones(len(tokens) - 1)}

    encoder = Short()
    encoder.fit(encoder.example_items())
    with pytest.raises(AssertionError, match=r"^encoder 'short': property 'everywhere' of item 0 has shape"):
        testing.check_properties(encoder, encoder.example_items())


# ---------------------------------------------------------------------------------- style and CLI


def test_irish_style_inspection_finds_header_and_bar_cells_and_draws_a_png(tmp_path):
    import composer

    seen = composer.load("irish", device="cpu").inspect(prime=TUNE)
    top = seen.top(3)
    assert abs(top["in header"][0].r) > 0.8 and abs(top["time in bar"][0].r) > 0.6
    assert "inside quotes" in seen.constant()
    report = seen.report()
    assert report["steps"] == len(TUNE) + 1 and set(report["saturation"][0]) == {"input", "forget", "output"}
    png = seen.picture(4, path=tmp_path / "irish.png")
    assert png.startswith(PNG) and (tmp_path / "irish.png").read_bytes() == png


def cadence_midi(tmp_path):
    from composer_midi.examples import example_pieces

    path = tmp_path / "cadence.mid"
    example_pieces()[1].write(str(path))
    assert pretty_midi.PrettyMIDI(str(path)).instruments
    return path


def test_cli_inspect_writes_a_png_and_lists_cells_with_their_correlation(tmp_path):
    out = tmp_path / "irish.png"
    result = run_cli(["inspect", "--style", "irish", "--prime", TUNE.replace("\n", "\\n"), "-o", str(out)])
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(PNG)
    lines = result.stdout.splitlines()
    for name in ("in header", "time in bar", "inside a slur", "position in line"):
        line = next(line for line in lines if line.strip().startswith(name))
        assert line.count(" r=") == 3, line
    assert lines[-1].startswith(f"wrote {out} (8 cells over {len(TUNE) + 1} positions)")

    bach = run_cli(["inspect", "--style", "bach", "--primer", str(cadence_midi(tmp_path)), "-o",
                    str(tmp_path / "bach.png"), "--cells", "0:3,2:7", "--top", "1"])
    assert bach.returncode == 0, bach.stderr
    assert "soprano pitch" in bach.stdout and "wrote" in bach.stdout and "(2 cells over" in bach.stdout
    assert (tmp_path / "bach.png").read_bytes().startswith(PNG)


def test_cli_inspect_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from composer.cli import cli

    bad = tmp_path / "bad.mid"
    bad.write_text("not a MIDI file")
    cases = {
        ("--style", "irish"): "give a primer to inspect",
        ("--style", "bach", "--prime", "X:1"): "bach is a midi model: text (--prime) is for text styles",
        ("--style", "bach", "--primer", str(bad)): "cannot read primer",
        ("--style", "bach", "--primer", str(tmp_path / "none.mid")): "primer not found",
        ("--style", "hershey", "--primer", str(bad)): "hershey is conditioned on labels",
        ("--style", "irish", "--prime", "X:1", "--cells", "0:300"): "no cell 0:300: irish has layers 0..1",
        ("--style", "irish", "--prime", ""): "nothing to inspect",
    }
    for args, message in cases.items():
        result = CliRunner().invoke(cli, ["inspect", *args, "-o", str(tmp_path / "x.png")])
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], (args, result.output)
    assert not (tmp_path / "x.png").exists()
