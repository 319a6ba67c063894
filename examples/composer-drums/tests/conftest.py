"""Make the plugin loadable through its entry point whether or not `pip install -e .` was run: when no
`drums` entry point is installed, a dist-info that declares one is put on the path."""

import importlib.metadata
import os
import sys
from pathlib import Path

import pytest
from composer import plugins

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _installed() -> bool:
    return any(ep.name == "drums" for ep in importlib.metadata.entry_points(group="composer"))


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """A folder for sys.path / PYTHONPATH that makes `import composer_drums` and its entry point work."""
    folder = tmp_path_factory.mktemp("site")
    if not _installed():
        (folder / "composer_drums").symlink_to(ROOT / "composer_drums")
        info = folder / "composer_drums-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: composer-drums\nVersion: 0.1.0\n")
        (info / "entry_points.txt").write_text("[composer]\ndrums = composer_drums\n")
    return folder


@pytest.fixture(autouse=True)
def drums_plugin(site, tmp_path_factory, monkeypatch):
    """Only this plugin (beside the built-ins) loads; user data goes to a temp folder. Returns the env
    for `python -m composer` subprocesses."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "composer-drums")
    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("COMPOSER_CACHE", raising=False)
    plugins.reset()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(site), *sys.path] if p)
    yield env
    plugins.reset()
