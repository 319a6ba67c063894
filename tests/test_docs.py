"""The plugin authors' guide (docs/) stays true: the code it shows is the tutorial plugin's code byte for
byte, that plugin installs through its entry point and works, and every hook in composer/hookspecs.py is
documented and has a test of its own."""

import ast
import os
import re
from pathlib import Path

import torch
from conftest import install_plugin, run_cli

from composer import ComposerError, plugins
from composer.generate import generate
from composer.model import ModelConfig, SequenceModel

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIAL = DOCS / "tutorial"
# An included block opens with e.g. ```python file=docs/tutorial/composer_tutorial/__init__.py region=strategy
FENCE = re.compile(r"^```(\w*) file=(\S+)(?: region=(\S+))?\n(.*?)^```$", re.M | re.S)
REGION = re.compile(r"^# \[doc:(\S+)\]\n(.*?)^# \[/doc\]$", re.M | re.S)


def markdown():
    return {path: path.read_text() for path in sorted(DOCS.glob("*.md"))}


def regions(path):
    """``# [doc:NAME]`` ... ``# [/doc]`` regions of a source file, without their blank first and last lines."""
    return {name: body.strip("\n") + "\n" for name, body in REGION.findall(path.read_text())}


def hooks():
    """Every function in composer/hookspecs.py decorated with ``@hookspec``, with its argument names."""
    tree = ast.parse((ROOT / "composer" / "hookspecs.py").read_text())
    return {node.name: [a.arg for a in node.args.args] for node in tree.body
            if isinstance(node, ast.FunctionDef) and any(isinstance(d, ast.Name) and d.id == "hookspec"
                                                         for d in node.decorator_list)}


def test_included_blocks_are_the_source_byte_for_byte():
    shown = set()
    for doc, text in markdown().items():
        for _lang, file, region, body in FENCE.findall(text):
            source = ROOT / file
            assert source.is_file(), f"{doc.name}: included file {file} does not exist"
            expected = regions(source)[region] if region else source.read_text()
            assert body == expected, f"{doc.name}: the block from {file} {region or ''} differs from the source"
            shown.add((file, region))
    tutorial = "docs/tutorial/composer_tutorial/__init__.py"
    assert {(tutorial, name) for name in regions(ROOT / tutorial)} <= shown, "a tutorial region is not shown"
    assert ("docs/tutorial/pyproject.toml", "") in shown


def test_every_hook_is_documented_with_its_signature_and_has_a_test_of_its_own():
    """Documented: ``name(args)`` appears in docs/. A test of its own: the name appears in a test file under
    tests/ other than this one (tests/test_plugins.py calls every hook through a recording plugin)."""
    specs = hooks()
    assert len(specs) >= 10 and "register_model_families" in specs and "on_checkpoint_saved" in specs
    docs = "\n".join(markdown().values())
    tests = {p.name: p.read_text() for p in (ROOT / "tests").rglob("test_*.py") if p.name != "test_docs.py"}
    for name, args in specs.items():
        assert f"{name}({', '.join(args)})" in docs, f"hook {name}({', '.join(args)}) is not documented in docs/"
        assert any(re.search(rf"\b{name}\b", text) for text in tests.values()), f"hook {name} has no test"


def test_the_guide_links_its_pages_and_the_readme_links_the_guide():
    text = (DOCS / "plugins.md").read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (DOCS / target).exists(), f"docs/plugins.md links to missing {target}"
    assert "docs/plugins.md" in (ROOT / "README.md").read_text()


def install_tutorial(tmp_path, monkeypatch):
    site = tmp_path / "site"
    install_plugin(site, "composer-tutorial", "composer_tutorial", source_dir=TUTORIAL)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "composer-tutorial")
    plugins.reset()
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))


class Tiny:
    """A token encoder stand-in: start 0, end 1, tokens 2..9."""

    bos, eos = 0, 1


def test_the_tutorial_strategy_loads_through_its_entry_point_and_samples(tmp_path, monkeypatch):
    install_tutorial(tmp_path, monkeypatch)
    reg = plugins.get_registry()
    assert reg.plugins["composer-tutorial"].error == "" and reg.owner[("samplers", "min-p")] == "composer-tutorial"
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(vocab_size=10, layers=1, hidden_size=16, embedding_size=8))
    min_p = reg.sampler("min-p")
    first = generate(model, Tiny, min_p, n=4, max_tokens=30, seed=2, options=min_p.options({"min_p": "0.05"}))
    again = generate(model, Tiny, min_p, n=4, max_tokens=30, seed=2, options=min_p.options({"min_p": 0.05}))
    assert [g.tokens for g in first] == [g.tokens for g in again] and len({tuple(g.tokens) for g in first}) > 1
    for g in first:  # scored with the model's own, unfiltered log-probabilities
        x = torch.tensor([g.tokens])
        log_probs = torch.log_softmax(model(x[:, :-1]).output.float(), -1)[0]
        expected = log_probs.gather(-1, x[0, 1:, None]).sum().item()
        assert abs(g.log_likelihood - expected) < 1e-3 and g.tokens[0] == 0
    # min_p = 1 keeps only the most likely token: greedy decoding
    only_top = generate(model, Tiny, min_p, n=2, max_tokens=12, seed=5, options=min_p.options({"min_p": 1}))
    greedy = generate(model, Tiny, reg.sampler("greedy"), n=2, max_tokens=12, seed=9)
    assert [g.tokens for g in only_top] == [g.tokens for g in greedy]
    for bad in ({"min_p": 0}, {"min_p": 1.5}, {"temperature": 0}, {"top_k": 3}):
        try:
            min_p.options(bad)
        except ComposerError as exc:
            assert "\n" not in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_the_tutorial_command_runs_from_the_cli(tmp_path, monkeypatch):
    env = install_tutorial(tmp_path, monkeypatch)
    corpus = tmp_path / "texts"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"{i}.txt").write_text("abcabcabc abcabc\n" * 20)
    import composer

    composer.train(encoder="char", corpus=str(corpus), output=str(tmp_path / "run"), epochs=1, layers=1,
                   hidden_size=8, embedding_size=4, batch_size=2, seq_len=16, workers=1)
    checkpoint = str(next((tmp_path / "run").glob("*.safetensors")))
    out = tmp_path / "out"
    result = run_cli(["min-p-sample", "--checkpoint", checkpoint, "-n", "2", "--seed", "1", "--min-p", "0.2",
                      "--length", "30", "-o", str(out)], env=env)
    assert result.returncode == 0, result.stderr
    assert "sampler min-p" in result.stdout and len(list(out.iterdir())) == 2
    same = run_cli(["sample", "--checkpoint", checkpoint, "-n", "2", "--seed", "1", "--sampler", "min-p",
                    "-S", "min_p", "0.2", "--length", "30", "-o", str(tmp_path / "same")], env=env)
    assert same.returncode == 0, same.stderr
    assert sorted(p.read_text() for p in out.iterdir()) == sorted(p.read_text() for p in (tmp_path / "same").iterdir())
    bad = run_cli(["min-p-sample", "--checkpoint", checkpoint, "--min-p", "2", "-o", str(out)], env=env)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "min_p must be in (0, 1]" in bad.stderr
