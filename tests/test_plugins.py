import os

import pytest
import torch
from conftest import install_plugin, run_cli

from composer import ComposerError, plugins


def test_builtin_plugins_load_and_register_samplers():
    reg = plugins.get_registry()
    assert reg.plugins["composer_samplers"].error == ""
    assert {"ancestral", "beam", "greedy", "temperature", "top-k", "top-p"} <= set(reg.samplers)


def test_installed_plugin_is_not_loaded_unless_allowed(toy, monkeypatch):
    assert "toy" in plugins.get_registry().encoders
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "")
    plugins.reset()
    assert "toy" not in plugins.get_registry().encoders
    monkeypatch.delenv("COMPOSER_LOAD_PLUGINS")
    plugins.reset()
    assert "toy" in plugins.get_registry().encoders


def test_entry_point_plugin_is_discovered_with_its_distribution(toy):
    info = plugins.get_registry().plugins["composer-toy"]
    assert info.error == "" and info.source == "composer-toy" and info.version == "1.0"
    assert info.provides["encoders"] == ["toy"]
    assert info.provides["writers"] == ["toy/txt", "toy/even"]


def test_plugin_that_raises_on_import_is_reported_and_others_work(tmp_path, monkeypatch, toy):
    site = tmp_path / "broken"
    install_plugin(site, "composer-broken", "composer_broken", code="raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "composer-toy,composer-broken")
    plugins.reset()
    reg = plugins.get_registry()
    assert reg.plugins["composer-broken"].error == "RuntimeError: boom at import"
    assert "toy" in reg.encoders
    env = dict(toy, PYTHONPATH=f"{site}:{toy['PYTHONPATH']}", COMPOSER_LOAD_PLUGINS="composer-toy,composer-broken")
    listing = run_cli(["plugins"], env=env)
    assert listing.returncode == 0
    assert "composer-broken (entry point, composer-broken 1.0): FAILED: RuntimeError: boom at import" in listing.stdout
    encoders = run_cli(["encoders"], env=env)
    assert encoders.returncode == 0 and "toy" in encoders.stdout


def load_with(tmp_path, monkeypatch, dist, code, also=""):
    """The registry with one more installed plugin ``dist`` (module ``dist`` with '_' for '-') allowed,
    besides ``also``."""
    module = dist.replace("-", "_")
    install_plugin(tmp_path / module, dist, module, code=code)
    monkeypatch.syspath_prepend(str(tmp_path / module))
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", ",".join(filter(None, [also, dist])))
    plugins.reset()
    return plugins.get_registry()


def test_plugin_that_raises_while_registering_is_skipped_whole(tmp_path, monkeypatch):
    code = (
        "from composer import hookimpl, Sampler\n"
        "class Half(Sampler):\n"
        "    name = 'half'\n"
        "@hookimpl\n"
        "def register_samplers(register):\n"
        "    register(Half())\n"
        "    raise ValueError('second thoughts')\n"
    )
    reg = load_with(tmp_path, monkeypatch, "composer-half", code)
    assert "half" not in reg.samplers  # what it registered before failing is undone
    assert reg.plugins["composer-half"].error == "ValueError: second thoughts"


def test_duplicate_name_is_refused_naming_both_plugins(tmp_path, monkeypatch):
    code = (
        "from composer import hookimpl, Sampler\n"
        "class Mine(Sampler):\n"
        "    name = 'greedy'\n"
        "@hookimpl\n"
        "def register_samplers(register):\n"
        "    register(Mine())\n"
    )
    reg = load_with(tmp_path, monkeypatch, "composer-dup", code)
    error = reg.plugins["composer-dup"].error
    assert error == ("ComposerError: sampler 'greedy' from plugin 'composer-dup' clashes with the one from plugin "
                     "'composer_samplers'")
    assert reg.owner[("samplers", "greedy")] == "composer_samplers"


def test_unknown_names_are_one_line_errors():
    reg = plugins.get_registry()
    with pytest.raises(ComposerError, match="unknown encoder 'nope'"):
        reg.encoder("nope")
    with pytest.raises(ComposerError, match="unknown style 'nope'"):
        reg.style("nope")
    with pytest.raises(ComposerError, match=r"^unknown corpus source 'nope' \(available: .*music21"):
        reg.get("corpora", "nope")
    with pytest.raises(ComposerError, match="unknown sampler 'nope'.*beam"):
        reg.sampler("nope")


RECORDER = """
import json, os
import click
from composer import hookimpl

def record(hook, **kwargs):
    with open(os.environ["COMPOSER_RECORD"], "a") as f:
        f.write(json.dumps({"hook": hook, "args": sorted(kwargs)}) + "\\n")

@hookimpl
def register_encoders(register): record("register_encoders", register=register)
@hookimpl
def register_samplers(register): record("register_samplers", register=register)
@hookimpl
def register_corpora(register): record("register_corpora", register=register)
@hookimpl
def register_styles(register): record("register_styles", register=register)
@hookimpl
def register_writers(register): record("register_writers", register=register)
@hookimpl
def register_heads(register): record("register_heads", register=register)
@hookimpl
def register_model_families(register): record("register_model_families", register=register)

@click.command("recorded-hello")
def hello():
    click.echo("hello from a plugin command")

@hookimpl
def register_commands(cli):
    record("register_commands", cli=cli)
    cli.add_command(hello)

@hookimpl
def on_epoch_end(metrics):
    record("on_epoch_end", metrics=metrics, epoch=metrics["epoch"], valid_loss=metrics["valid_loss"])

@hookimpl
def on_checkpoint_saved(path, metadata):
    record("on_checkpoint_saved", path=path, metadata=metadata, exists=os.path.isfile(path))
"""


def read_record(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_hook_is_called_through_pluggy_with_its_spec_arguments(tmp_path, monkeypatch):
    """A plugin implementing every hook in hookspecs: loading calls the registration hooks, the CLI calls
    register_commands (and the command it adds runs), training calls the event hooks; each call passes
    exactly the spec's arguments. A hook added to the spec but never called fails here."""
    import inspect

    from composer import hookspecs

    install_plugin(tmp_path / "r", "composer-recorder", "composer_recorder", code=RECORDER)
    monkeypatch.syspath_prepend(str(tmp_path / "r"))
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "composer-recorder")
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("COMPOSER_RECORD", str(record))
    plugins.reset()
    assert plugins.get_registry().plugins["composer-recorder"].error == ""
    corpus = tmp_path / "texts"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"{i}.txt").write_text("abcabcabc abcabc\n" * 20)
    import composer

    composer.train(encoder="char", corpus=str(corpus), output=str(tmp_path / "run"), epochs=2, layers=1,
                   hidden_size=8, embedding_size=4, batch_size=2, seq_len=16, workers=1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "r"), os.environ.get("PYTHONPATH", "")]))
    result = run_cli(["recorded-hello"], env=env)
    assert result.returncode == 0 and result.stdout == "hello from a plugin command\n", result.stderr
    calls = read_record(record)
    specs = {name: sorted(inspect.signature(f).parameters)
             for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name != "HookspecMarker"}
    called = {c["hook"] for c in calls}
    assert called == set(specs), set(specs) ^ called
    for call in calls:
        assert [a for a in call["args"] if a in specs[call["hook"]]] == specs[call["hook"]], call
    epochs = [c for c in calls if c["hook"] == "on_epoch_end"]
    saved = [c for c in calls if c["hook"] == "on_checkpoint_saved"]
    assert len(epochs) == 2 and saved and all("exists" in c["args"] for c in saved)


def test_a_hook_with_the_wrong_arguments_fails_pluggy_validation_alone(tmp_path, monkeypatch, toy):
    code = (
        "from composer import hookimpl\n"
        "@hookimpl\n"
        "def register_encoders(registry):\n"
        "    pass\n"
    )
    reg = load_with(tmp_path, monkeypatch, "composer-wrong", code, also="composer-toy")
    assert "PluginValidationError" in reg.plugins["composer-wrong"].error
    assert "toy" in reg.encoders and reg.pm.get_plugin("composer-wrong") is None


def test_trace_switch_prints_the_traceback_of_a_plugin_that_fails_at_import(tmp_path, toy):
    site = tmp_path / "broken"
    install_plugin(site, "composer-broken", "composer_broken", code="raise RuntimeError('boom at import')\n")
    env = dict(toy, PYTHONPATH=f"{site}:{toy['PYTHONPATH']}", COMPOSER_LOAD_PLUGINS="composer-broken")
    quiet = run_cli(["plugins"], env=env)
    traced = run_cli(["plugins"], env=dict(env, COMPOSER_TRACE_PLUGINS="1"))
    assert "Traceback" not in quiet.stderr
    assert "plugin composer-broken" in traced.stderr and "RuntimeError: boom at import" in traced.stderr
    assert "Traceback" in traced.stderr and traced.returncode == 0


def test_plugin_heads_join_the_model_and_builtin_heads_are_protected(tmp_path, monkeypatch):
    code = (
        "from composer import hookimpl\n"
        "from composer.model import CategoricalHead\n"
        "def factory(hidden, spec):\n"
        "    return CategoricalHead(hidden, spec['vocab_size'])\n"
        "@hookimpl\n"
        "def register_heads(register):\n"
        "    register('plain', factory)\n"
    )
    clash = code.replace("'plain'", "'mdn'")
    install_plugin(tmp_path / "h", "composer-heads", "composer_heads", code=code)
    install_plugin(tmp_path / "c", "composer-clash", "composer_clash", code=clash)
    monkeypatch.syspath_prepend(str(tmp_path / "h"))
    monkeypatch.syspath_prepend(str(tmp_path / "c"))
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "composer-heads,composer-clash")
    plugins.reset()
    reg = plugins.get_registry()
    from composer.model import ModelConfig, SequenceModel

    assert "head 'mdn' from plugin 'composer-clash' clashes with the one from plugin 'composer.heads'" in \
        reg.plugins["composer-clash"].error
    model = SequenceModel(ModelConfig(vocab_size=5, hidden_size=8, embedding_size=4, layers=1,
                                      head={"type": "plain"}))
    assert model(torch.zeros(1, 3, dtype=torch.long)).output.shape == (1, 3, 5)
    assert reg.owner[("heads", "plain")] == "composer-heads"
    plugins.reset()
    assert "plain" in plugins.get_registry().heads  # loading again keeps working


def test_a_family_registered_by_a_plugin_builds_models_and_clashes_name_both(tmp_path, monkeypatch):
    """register_model_families through an installed plugin: its family builds the model a config names; a
    second plugin claiming a core family is refused naming both."""
    code = (
        "from composer import hookimpl\n"
        "from composer.model import SequenceModel\n"
        "class Plain(SequenceModel):\n"
        "    pass\n"
        "@hookimpl\n"
        "def register_model_families(register):\n"
        "    register('plain-rnn', lambda config, heads: Plain(config, heads))\n"
    )
    install_plugin(tmp_path / "f", "composer-family", "composer_family", code=code)
    clash = code.replace("'plain-rnn'", "'vae'")
    install_plugin(tmp_path / "g", "composer-vae-clash", "composer_vae_clash", code=clash)
    monkeypatch.syspath_prepend(str(tmp_path / "f"))
    monkeypatch.syspath_prepend(str(tmp_path / "g"))
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "composer-family,composer-vae-clash")
    plugins.reset()
    reg = plugins.get_registry()
    from composer.model import ModelConfig, build_model

    assert reg.owner[("families", "plain-rnn")] == "composer-family"
    assert "model family 'vae' from plugin 'composer-vae-clash' clashes with the one from plugin 'composer.model'" \
        in reg.plugins["composer-vae-clash"].error
    model = build_model(ModelConfig(vocab_size=5, hidden_size=8, embedding_size=4, layers=1, family="plain-rnn"), reg)
    assert type(model).__name__ == "Plain"
    assert model(torch.zeros(1, 3, dtype=torch.long)).output.shape == (1, 3, 5)
