"""music21's corpus, found and listed without importing music21 (which takes about a second)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from fnmatch import fnmatch
from pathlib import Path

from composer import ComposerError


def corpus_dir(source: str) -> Path:
    """The folder of music21's corpus. ``source`` names the corpus source that reads it, for the error
    where music21 is not installed."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise ComposerError(f"the {source} corpus needs music21: pip install music21")
    return Path(next(iter(spec.submodule_search_locations))) / "corpus"


def corpus_files(source: str, suffixes: tuple[str, ...], folder: str = "") -> list[str]:
    """Paths inside music21's corpus (such as ``bach/bwv1.6.mxl``), sorted, of the files below ``folder``
    (by default the whole corpus) whose suffix, in any case, is one of ``suffixes``."""
    root = corpus_dir(source)
    return sorted(
        path.relative_to(root).as_posix()
        for path in (root / folder).rglob("*")
        if path.suffix.lower() in suffixes and path.is_file()
    )


def find_collection(name: str, known: Iterable[str]) -> str | None:
    """The collection among ``known`` that ``name`` spells in any case, or None."""
    return next((each for each in known if each.lower() == name.lower()), None)


def matching(refs: Iterable[str], pattern: str, tails: tuple[str, ...]) -> list[str]:
    """The references that the glob ``pattern`` followed by one of ``tails`` matches."""
    return [ref for ref in refs if any(fnmatch(ref, pattern + tail) for tail in tails)]
