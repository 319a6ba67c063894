import os
import sys
from pathlib import Path

import pytest

from composer import plugins

TOY = Path(__file__).parent / "toy_plugin"

# Subprocesses (CLI tests) use one thread too: tiny models gain nothing from more, and on a shared
# 2-core machine spinning OpenMP threads slow everything down.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads; on a busy 2-core machine spinning OpenMP threads
    make tests many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch):
    """No installed third-party plugin loads by accident; user data and caches go to a temp folder."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "")
    monkeypatch.setenv("COMPOSER_HOME", str(home))
    monkeypatch.delenv("COMPOSER_CACHE", raising=False)
    plugins.reset()
    yield home
    plugins.reset()


def install_plugin(site: Path, dist: str, module: str, source_dir: Path | None = None, code: str | None = None):
    """Make an installed-looking plugin in ``site``: a module and a dist-info with a ``composer`` entry point."""
    site.mkdir(parents=True, exist_ok=True)
    if source_dir is not None:
        (site / module).symlink_to(source_dir / module)
    else:
        (site / f"{module}.py").write_text(code)
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[composer]\n{dist} = {module}\n")


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy plugin installed through an entry point and allowed to load; returns env for subprocesses."""
    site = tmp_path / "site"
    install_plugin(site, "composer-toy", "composer_toy", source_dir=TOY)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("COMPOSER_LOAD_PLUGINS", "composer-toy")
    plugins.reset()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture
def toy_corpus(tmp_path):
    folder = tmp_path / "toycorpus"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i}.toy").write_text("\n".join(["abcabcabcabcabc", "aabbccaabbccaabbcc", "abcdabcd"][: 1 + i % 3]))
    return folder


def run_cli(args, env=None, cwd=None):
    """Run the installed console script in a subprocess (a real process: exit codes, stderr, Ctrl-C)."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "composer", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )
