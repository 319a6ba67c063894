import pytest
import torch
from conftest import install_plugin, run_cli

from composer import ComposerError, plugins


def test_builtin_plugins_load_and_register_samplers():
    reg = plugins.get_registry()
    assert reg.plugins["composer_samplers"].error == ""
    assert {"greedy", "temperature", "top-k", "top-p"} <= set(reg.samplers)


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
    assert "composer-broken (composer-broken 1.0): FAILED: RuntimeError: boom at import" in listing.stdout
    encoders = run_cli(["encoders"], env=env)
    assert encoders.returncode == 0 and "toy" in encoders.stdout


def test_plugin_that_raises_while_registering_is_skipped_whole(tmp_path, monkeypatch):
    code = (
        "from composer import hookimpl, Sampler\n"
        "@hookimpl\n"
        "def register_samplers(register):\n"
        "    register(Sampler('half', lambda logits, g, **o: logits.argmax(-1)))\n"
        "    raise ValueError('second thoughts')\n"
    )
    install_plugin(tmp_path / "s", "composer-half", "composer_half", code=code)
    monkeypatch.syspath_prepend(str(tmp_path / "s"))
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "composer-half")
    plugins.reset()
    reg = plugins.get_registry()
    assert "half" not in reg.samplers  # what it registered before failing is undone
    assert reg.plugins["composer-half"].error == "ValueError: second thoughts"


def test_duplicate_name_is_refused_naming_both_plugins(tmp_path, monkeypatch):
    code = (
        "from composer import hookimpl, Sampler\n"
        "@hookimpl\n"
        "def register_samplers(register):\n"
        "    register(Sampler('greedy', lambda logits, g, **o: logits.argmin(-1)))\n"
    )
    install_plugin(tmp_path / "d", "composer-dup", "composer_dup", code=code)
    monkeypatch.syspath_prepend(str(tmp_path / "d"))
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "composer-dup")
    plugins.reset()
    reg = plugins.get_registry()
    error = reg.plugins["composer-dup"].error
    assert "'greedy'" in error and "composer-dup" in error and "composer_samplers" in error
    assert reg.owner[("samplers", "greedy")] == "composer_samplers"


def test_unknown_names_are_one_line_errors():
    reg = plugins.get_registry()
    with pytest.raises(ComposerError, match="unknown encoder 'nope'"):
        reg.encoder("nope")
    with pytest.raises(ComposerError, match="unknown style 'nope'"):
        reg.style("nope")


def test_every_hookspec_is_documented_and_called_with_keywords():
    import inspect

    from composer import hookspecs

    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name != "HookspecMarker"]
    assert specs
    for spec in specs:
        assert spec.__doc__, spec.__name__


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
    from composer.model import HEADS, ModelConfig, SequenceModel

    assert "clashes with the built-in one" in reg.plugins["composer-clash"].error
    model = SequenceModel(ModelConfig(vocab_size=5, hidden_size=8, embedding_size=4, layers=1,
                                      head={"type": "plain"}))
    assert model(torch.zeros(1, 3, dtype=torch.long)).output.shape == (1, 3, 5)
    plugins.reset()
    plugins.get_registry()  # loading again keeps working
    assert "plain" in HEADS
