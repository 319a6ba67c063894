"""The music21 helpers that the MIDI and text plugins share: the corpus found and listed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from composer_music21 import corpus

from composer import ComposerError


def test_the_corpus_is_found_and_its_absence_names_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (corpus.corpus_dir("music21") / "bach").is_dir()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "music21" else real(name, *a))
    with pytest.raises(ComposerError, match=r"^the abc corpus needs music21: pip install music21$"):
        corpus.corpus_dir("abc")


def test_corpus_files_are_listed_by_suffix_in_any_case(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("b/x.ABC", "a/y.abc", "a/sub/z.mxl", "a/notes.txt", "a/folder.abc/w.krn"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    monkeypatch.setattr(corpus, "corpus_dir", lambda source: tmp_path)
    assert corpus.corpus_files("abc", (".abc",)) == ["a/y.abc", "b/x.ABC"]
    found = corpus.corpus_files("music21", (".mxl", ".krn", ".abc"), "a")
    assert found == ["a/folder.abc/w.krn", "a/sub/z.mxl", "a/y.abc"]  # files only, below the folder


def test_collections_are_named_in_any_case_and_files_by_glob() -> None:
    assert corpus.find_collection("RYANSMAMMOTH", ["bach", "ryansMammoth"]) == "ryansMammoth"
    assert corpus.find_collection("bachh", ["bach"]) is None
    refs = ["bach/bwv1.6.mxl", "bach/bwv10.7.mxl", "beethoven/opus18no1/movement1.mxl"]
    assert corpus.matching(refs, "bach/bwv1.6", ("",)) == []
    assert corpus.matching(refs, "bach/bwv1.6", ("", ".*")) == ["bach/bwv1.6.mxl"]
    assert corpus.matching(refs, "bach/bwv1*", ("",)) == refs[:2]
    assert corpus.matching(refs, "beethoven/opus18no1", ("", "/*")) == refs[2:]
