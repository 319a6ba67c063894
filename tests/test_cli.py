from conftest import run_cli

from composer import __version__


def test_version():
    result = run_cli(["--version"])
    assert result.returncode == 0 and __version__ in result.stdout


def test_unknown_style_is_one_line_and_nonzero():
    result = run_cli(["sample", "--style", "no-such-style"])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: unknown style 'no-such-style'")


def test_listings_run(toy):
    for command, expected in [("plugins", "composer_samplers"), ("samplers", "top-p"), ("encoders", "toy"),
                              ("corpora", "toy:NAME"), ("styles", "bach "), ("samplers", "beam_size 4"),
                              ("writers", "midi     mid"), ("encoders", "length in bars")]:
        result = run_cli([command], env=toy)
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout


def test_missing_checkpoint_and_bad_corpus_are_one_line_errors(toy, tmp_path):
    cases = [
        ["info", str(tmp_path / "none.safetensors")],
        ["sample", "--checkpoint", str(tmp_path / "none.safetensors")],
        ["train", "--encoder", "toy", "--corpus", str(tmp_path / "missing"), "-o", str(tmp_path / "o")],
        ["train", "--encoder", "nope", "--corpus", str(tmp_path), "-o", str(tmp_path / "o")],
        ["train", "--encoder", "toy", "--corpus", str(tmp_path), "-o", str(tmp_path / "o")],
        ["train", "--encoder", "toy", "--corpus", str(tmp_path), "-O", "colour", "red"],
    ]

    for args in cases:
        result = run_cli(args, env=toy)
        assert result.returncode != 0, args
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
    run = run_cli(["train", "--encoder", "toy", "--corpus", str(toy_corpus_dir(tmp_path)), "-o", str(tmp_path / "r"),
                   "--epochs", "1", "--layers", "1", "--hidden-size", "8", "--workers", "1"], env=toy)
    assert run.returncode == 0, run.stderr
    sample = run_cli(["sample", "--checkpoint", str(tmp_path / "r" / "model.safetensors"), "-O", "colour", "red"],
                     env=toy)
    assert sample.returncode == 1
    assert sample.stderr.strip() == "Error: unknown option 'colour' for generating with toy (known: none)"


def toy_corpus_dir(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.toy").write_text("abcabc\n")
    return folder


def test_help_into_a_closed_pipe_exits_quietly():
    import subprocess
    import sys

    result = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m composer --help | head -1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("Usage:")


def test_bad_sampler_settings_are_one_line_errors(tmp_path):
    cases = {
        ("-S", "nosuch", "1"): "Error: unknown option 'nosuch' for sampler 'top-p' (known: temperature, top_p)",
        ("--temperature", "-1"): "Error: temperature must be 0 (always the most likely token) or from 0.001 to "
                                 "1000, got -1.0",
        ("--sampler", "beam", "-S", "beam_size", "wide"): "Error: option 'beam_size' for sampler 'beam' expects int, "
                                                          "got 'wide'",
    }
    for args, message in cases.items():
        result = run_cli(["sample", "--style", "bach", "-o", str(tmp_path), *args])
        assert result.returncode == 1 and result.stderr.strip() == message, result.stderr
    assert not list(tmp_path.iterdir())


def test_debug_shows_the_traceback():
    result = run_cli(["--debug", "sample", "--style", "no-such-style"])
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_info_describes_a_trained_checkpoint(toy, toy_corpus, tmp_path):
    run = run_cli(["train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(tmp_path / "r"), "--epochs",
                   "1", "--layers", "1", "--hidden-size", "16", "--workers", "1", "--batch-size", "4"], env=toy)
    assert run.returncode == 0, run.stderr
    result = run_cli(["info", str(tmp_path / "r" / "model.safetensors")], env=toy)
    assert result.returncode == 0, result.stderr
    assert "encoder      toy (toy)" in result.stdout and "1x16 lstm" in result.stdout
    assert str(toy_corpus) in result.stdout


def test_evaluate_scores_the_recorded_held_out_split(toy, toy_corpus, tmp_path):
    import json

    run = run_cli(["train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(tmp_path / "r"), "--epochs",
                   "2", "--layers", "1", "--hidden-size", "16", "--workers", "1", "--batch-size", "4"], env=toy)
    assert run.returncode == 0, run.stderr
    ckpt = str(tmp_path / "r" / "model.safetensors")
    result = run_cli(["evaluate", "--checkpoint", ckpt, "--json", "--samples", "2"], env=toy)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    best = min(json.loads(line)["valid_loss"] for line in lines)
    assert "held-out split" in scores["data"]
    assert abs(scores["nll_per_token"] - best) < 1e-3  # the kept model is the best one, scored the same way
    assert abs(scores["nll_per_step"] - scores["nll_per_token"] * scores["tokens"] / scores["steps"]) < 1e-9
    other = run_cli(["evaluate", "--checkpoint", ckpt, "--corpus", "toy:patterns", "--samples", "0"], env=toy)
    assert other.returncode == 0, other.stderr
    assert "toy:patterns, all of it: 4 sequences" in other.stdout
    per_step_without_end = json.loads(run_cli(["evaluate", "--checkpoint", ckpt, "--corpus", "toy:patterns",
                                               "--samples", "0", "--json"], env=toy).stdout)["nll_per_step_without_end"]
    assert f"{per_step_without_end:.4f} nats per step (the end tokens left out" in other.stdout


GOOD_PLUGIN = '''
import click
from composer import hookimpl
from composer.api import Encoder


class Dots(Encoder):
    name = "dots"
    modality = "text"
    description = "a one-off plugin file's encoder"


@hookimpl
def register_encoders(register):
    register(Dots)


@hookimpl
def register_commands(cli):
    @cli.command()
    def hello():
        """Say hello from a plugin file."""
        click.echo("hello from a file")
'''


def plugins_folder(tmp_path):
    folder = tmp_path / "myplugins"
    folder.mkdir()
    (folder / "dots.py").write_text(GOOD_PLUGIN)
    (folder / "broken.py").write_text("raise RuntimeError('broken file')\n")
    (folder / "notes.txt").write_text("not a plugin")
    return folder


def test_plugins_dir_loads_files_reports_broken_ones_and_adds_commands(tmp_path):
    folder = plugins_folder(tmp_path)
    listing = run_cli(["--plugins-dir", str(folder), "plugins"])
    assert listing.returncode == 0, listing.stderr
    assert f"broken (file {folder / 'broken.py'}): FAILED: RuntimeError: broken file" in listing.stdout
    assert f"dots (file {folder / 'dots.py'}): encoders: dots" in listing.stdout
    assert "    hooks: register_commands, register_encoders" in listing.stdout
    assert "composer_samplers (built-in): samplers:" in listing.stdout
    encoders = run_cli(["--plugins-dir", str(folder), "encoders"])
    assert encoders.returncode == 0 and "dots " in encoders.stdout and "[dots]" in encoders.stdout
    hello = run_cli([f"--plugins-dir={folder}", "hello"])
    assert hello.returncode == 0 and hello.stdout == "hello from a file\n", hello.stderr
    assert "dots" not in run_cli(["encoders"]).stdout


def test_plugins_dir_from_the_environment_and_call_trace(tmp_path):
    import os

    folder = plugins_folder(tmp_path)
    env = dict(os.environ, COMPOSER_PLUGINS_DIR=str(folder), COMPOSER_TRACE_PLUGINS="1")
    result = run_cli(["hello"], env=env)
    assert result.returncode == 0 and result.stdout == "hello from a file\n"
    assert "composer: plugin dots: register_encoders" in result.stderr.splitlines()
    assert "composer: plugin dots: register_commands" in result.stderr.splitlines()
    assert "composer: plugin composer_samplers: register_samplers" in result.stderr.splitlines()


def test_plugins_dir_given_in_process(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from composer.cli import cli, plugins_dir_from_argv

    assert plugins_dir_from_argv(["--debug", "--plugins-dir", "D", "x"]) == "D"
    assert plugins_dir_from_argv(["train", "--plugins-dir", "D"]) is None
    monkeypatch.setenv("COMPOSER_PLUGINS_DIR", "")  # restored to unset afterwards: the callback sets it
    monkeypatch.delenv("COMPOSER_PLUGINS_DIR")
    result = CliRunner().invoke(cli, ["--plugins-dir", str(plugins_folder(tmp_path)), "encoders"])
    assert result.exit_code == 0 and "dots " in result.output


def test_usage_errors_are_one_line_naming_the_help_with_exit_2():
    cases = {
        ("sample", "--bogus"): "Error: No such option '--bogus' (see composer sample --help)",
        ("--bogus",): "Error: No such option '--bogus' (see composer --help)",
        ("nosuch",): "Error: No such command 'nosuch' (see composer --help)",
        ("sample", "--length", "abc"): "Error: Invalid value for '--length': 'abc' is not a valid float "
                                       "(see composer sample --help)",
        ("info",): "Error: Missing argument 'TARGET' (see composer info --help)",
    }
    for args, message in cases.items():
        result = run_cli(list(args))
        assert result.returncode == 2 and result.stderr.strip() == message, (args, result.stderr)


WARNING_PLUGIN = '''
import warnings
import click
from composer import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command()
    def grumble():
        warnings.warn("a library grumbles", UserWarning)
        click.echo("done")
'''


def test_library_warnings_are_hidden_unless_debug(tmp_path):
    (tmp_path / "grumbling.py").write_text(WARNING_PLUGIN)
    quiet = run_cli(["--plugins-dir", str(tmp_path), "grumble"])
    assert quiet.returncode == 0 and quiet.stdout == "done\n" and quiet.stderr == ""
    loud = run_cli(["--debug", "--plugins-dir", str(tmp_path), "grumble"])
    assert loud.returncode == 0 and "UserWarning: a library grumbles" in loud.stderr
