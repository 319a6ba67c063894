"""The console scripts: ``composer`` and ``lstm-composer`` (for machines where PHP's Composer or MosaicML's
composer already owns ``composer``) are one program."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from test_cli import plugins_folder

ROOT = Path(__file__).parent.parent
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_both_command_names_run_the_same_function():
    assert SCRIPTS["lstm-composer"] == SCRIPTS["composer"] == "composer.cli:main"
    try:
        installed = {ep.name: ep.value for ep in distribution("lstm-composer").entry_points
                     if ep.group == "console_scripts"}
    except PackageNotFoundError:  # a source tree that is not installed: the pyproject is the record
        installed = {}
    # an install made before the second name existed lacks it; what it has must agree with the pyproject
    assert installed.items() <= SCRIPTS.items()


def script(tmp_path: Path, name: str) -> Path:
    """What pip writes for a console script: the entry point's function called with the name in argv[0]."""
    module, function = SCRIPTS[name].split(":")
    path = tmp_path / name
    path.write_text(f"import sys\nfrom {module} import {function}\nsys.exit({function}())\n")
    return path


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_lstm_composer_is_python_m_composer(tmp_path):
    by_module = run(["-m", "composer", "--help"])
    by_script = run([str(script(tmp_path, "lstm-composer")), "--help"])
    assert by_module.returncode == by_script.returncode == 0
    assert by_script.stdout == by_module.stdout and "play" in by_script.stdout


def test_lstm_composer_reads_plugins_dir_before_parsing_like_composer(tmp_path):
    """A plugin file's own command is found through either name (the command line is read at import)."""
    hello = run([str(script(tmp_path, "lstm-composer")), "--plugins-dir", str(plugins_folder(tmp_path)), "hello"])
    assert hello.returncode == 0 and hello.stdout == "hello from a file\n", hello.stderr
