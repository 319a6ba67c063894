"""The library layer (composer.load, Session.generate/write/score, train, evaluate) and its agreement with
the command line."""

import pytest
from conftest import run_cli

import composer
from composer import ComposerError


@pytest.fixture(scope="module")
def bach():
    return composer.load("bach", device="cpu")


def test_the_library_writes_the_bytes_the_cli_writes(bach, tmp_path):
    pieces = bach.generate(n=1, seed=1)
    written = bach.write(pieces, tmp_path / "lib", formats=["mid"])
    assert [p.name for p in written.files] == ["bach-1-1.mid"]
    cli = run_cli(["sample", "--style", "bach", "--seed", "1", "-o", str(tmp_path / "cli")])
    assert cli.returncode == 0, cli.stderr
    assert (tmp_path / "lib" / "bach-1-1.mid").read_bytes() == (tmp_path / "cli" / "bach-1-1.mid").read_bytes()


def test_generate_returns_items_with_how_they_were_made(bach):
    pieces = bach.generate(n=2, seed=3, length=2, temperature=0.9)
    assert len(pieces) == 2 and all(type(p).__name__ == "PrettyMIDI" for p in pieces)
    assert pieces.seed == 3 and pieces.sampler == "top-p" and pieces.options == {"temperature": 0.9, "top_p": 0.95}
    assert all(g.log_likelihood < 0 for g in pieces.sequences)
    assert [g.tokens for g in bach.generate(n=2, seed=3, length=2, temperature=0.9).sequences] == \
        [g.tokens for g in pieces.sequences]


def test_beam_search_writes_a_chorale_no_less_likely_than_ancestral_sampling(bach):
    sampled = bach.generate(seed=1)
    beam = bach.generate(seed=1, sampler="beam")
    assert bach.encoder.summarize(beam[0]).startswith("4 parts")
    assert bach.score(beam).nll_per_token <= bach.score(sampled).nll_per_token


def test_score_of_decoded_items_equals_the_score_of_their_tokens(bach):
    pieces = bach.generate(n=2, seed=4, length=2)
    direct, encoded = bach.score(pieces), bach.score(list(pieces))
    assert direct.tokens == encoded.tokens
    assert direct.nll_per_token == pytest.approx(encoded.nll_per_token, abs=1e-6)
    assert direct.nll_per_step == pytest.approx(direct.nll_per_token * direct.tokens / direct.steps)


def test_bad_sampler_options_name_the_valid_ones(bach):
    known = r"\(known: temperature, top_p\)"
    with pytest.raises(ComposerError, match=rf"unknown option 'nosuch' for sampler 'top-p' {known}"):
        bach.generate(nosuch=1)
    with pytest.raises(ComposerError, match="temperature must be 0"):
        bach.generate(temperature=-1)
    with pytest.raises(ComposerError, match="expects int"):
        bach.generate(sampler="beam", beam_size="wide")
    with pytest.raises(ComposerError, match="unknown sampler 'nope'"):
        bach.generate(sampler="nope")
    with pytest.raises(ComposerError, match="number of outputs"):
        bach.generate(n=0)
    with pytest.raises(ComposerError, match=r"length must be at most 512 bars"):
        bach.generate(length=1e9)


def test_write_zero_pads_indices_and_never_overwrites_without_force(bach, tmp_path):
    items = [f"tune {i}" for i in range(10)]
    irish = composer.load("irish", device="cpu")
    written = irish.write(items, tmp_path, formats="abc", stem="t")
    names = sorted(p.name for p in written.files)
    assert names[:2] == ["t-01.abc", "t-02.abc"] and names[-1] == "t-10.abc"
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "t-03.abc").write_text("mine")
    with pytest.raises(ComposerError, match="t-03.abc already exists; use --force"):
        irish.write(items, tmp_path / "new", formats="abc", stem="t")
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["t-03.abc"]  # nothing written, nothing lost
    assert (tmp_path / "new" / "t-03.abc").read_text() == "mine"
    irish.write(items, tmp_path / "new", formats="abc", stem="t", force=True)
    assert (tmp_path / "new" / "t-03.abc").read_text() == "tune 2\n"


def test_train_and_evaluate_as_functions(tmp_path):
    corpus = tmp_path / "texts"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"{i}.txt").write_text("the cat sat on the mat. " * (3 + i))
    result = composer.train(encoder="char", corpus=str(corpus), output=str(tmp_path / "run"), epochs=1, layers=1,
                            hidden_size=16, embedding_size=8, batch_size=2, seq_len=32, workers=1)
    assert result["steps"] > 0 and (tmp_path / "run" / "model.safetensors").is_file()
    scores = composer.evaluate(tmp_path / "run" / "model.safetensors", samples=2)
    assert "held-out split" in scores["data"] and scores["sequences"] == 1 and scores["nll_per_token"] > 0
    with pytest.raises(ComposerError, match="unknown training setting"):
        composer.train(encoder="char", corpus=str(corpus), output=str(tmp_path / "r2"), learning_rate=1)


def test_the_readme_python_example_runs_as_written(tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.search(r"## Python\n.*?```python\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "example.py").write_text(example)
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "bach-1-1.mid" in run.stdout
    cli = run_cli(["sample", "--style", "bach", "--seed", "1", "-o", str(tmp_path / "cli")])
    assert cli.returncode == 0, cli.stderr
    assert (tmp_path / "out" / "bach-1-1.mid").read_bytes() == (tmp_path / "cli" / "bach-1-1.mid").read_bytes()
