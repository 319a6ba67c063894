"""Text corpora: text files cut into pieces, invalid UTF-8 skipped with a warning, ABC books split into
normalised tunes, and the ABC collections of music21's corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from composer_text import corpora
from composer_text.char import CharEncoder
from composer_text.tunes import normalize_tune, read_tunes, split_tunes

from composer import ComposerError, plugins
from composer.data import load_corpus, resolve

BOOK = """%abc-2.1
% A book of two tunes and a comment
X: 12
T: The First Tune
T: An Alternative Title
C: Somebody
B: "Some Book 12"
N: "Lively" "collected by someone"
Z: Transcribed by someone
M: 6/8
L: 1/8
R: jig
Q: 3/8=120
%%MIDI program 73
K: D
"D"dfa "4"afd|"^SEGUE"gfe  dcB|\\
AFA dFA % a comment
w: la la la
P:B
|: B2A AFA :|

free text between the tunes

X:13
T:No Length
M:2/4
K:Am
ABcd|e2e2|]
"""


def test_text_is_cut_at_blank_lines_into_pieces_of_bounded_size() -> None:
    paragraphs = [f"Paragraph {i}.\n" + " word" * (i % 30 * 10) for i in range(200)]
    text = "\n\n".join(paragraphs)
    pieces = corpora.split_text(text, limit=2000)
    assert all(len(p) <= 2000 for p in pieces) and len(pieces) > 10
    assert "\n\n".join(pieces) == text.rstrip()  # nothing lost, cut only between paragraphs
    long_line = "x" * 4500
    assert corpora.split_text(long_line, limit=2000) == ["x" * 2000, "x" * 2000, "x" * 500]


def test_text_file_reader_normalises_newlines(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffone\r\ntwo\r\n\r\nthree\n".encode())
    assert corpora.read_text(str(path)) == ["one\ntwo\n\nthree"]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no text"):
        corpora.read_text(str(tmp_path / "empty.txt"))


def test_invalid_utf8_file_is_skipped_with_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "good.txt").write_text("A good file, with some text in it.\n\nAnd a second paragraph.")
    (folder / "bad.txt").write_bytes(b"Latin-1 is not UTF-8: caf\xe9.\n")
    registry = plugins.get_registry()
    warnings: list[str] = []
    encoder = CharEncoder()
    corpus = load_corpus(str(folder), encoder, registry.corpora, workers=1, use_cache=False, progress=False,
                         warn=warnings.append)
    assert [Path(ref).name for ref, _ in corpus.skipped] == ["bad.txt"]
    assert len(warnings) == 1 and "bad.txt" in warnings[0] and "not valid UTF-8" in warnings[0]
    assert [Path(name).name for name in corpus.names] == ["good.txt"]
    assert "\ufffd" not in encoder.chars

    replacing = CharEncoder(errors="replace")
    corpus = load_corpus(str(folder), replacing, registry.corpora, workers=1, use_cache=False, progress=False,
                         warn=warnings.append)
    assert len(corpus.sequences) == 2 and not corpus.skipped
    assert "\ufffd" in replacing.chars


def test_abc_book_splits_into_normalised_tunes() -> None:
    assert len(split_tunes(BOOK)) == 2
    first, second = read_tunes(BOOK)
    assert first == (
        "X:1\nT:The First Tune\nR:jig\nM:6/8\nL:1/8\nK:D\n"
        "dfa afd|gfe dcB|\nAFA dFA\nP:B\n|: B2A AFA :|"
    )
    assert second == "X:1\nT:No Length\nM:2/4\nL:1/16\nK:Am\nABcd|e2e2|]"  # ABC's implied unit, written out


def test_text_without_a_key_or_music_is_no_tune() -> None:
    assert normalize_tune("X:1\nT:Header only\nM:4/4") is None
    assert normalize_tune("X:1\nT:No music\nK:G\n% only a comment") is None
    assert read_tunes("Just some prose, no tunes.") == []


def test_abc_files_are_read_by_the_text_modality(tmp_path: Path) -> None:
    (tmp_path / "book.abc").write_text(BOOK)
    registry = plugins.get_registry()
    [(source, ref)] = resolve(str(tmp_path), "text", registry.corpora)
    assert source.name == "abc-files"
    assert len(source.load(ref)) == 2
    (tmp_path / "prose.abc").write_text("no tunes here")
    with pytest.raises(ValueError, match="no ABC tune"):
        corpora.read_abc(str(tmp_path / "prose.abc"))


def test_oneills_collection_yields_many_clean_tunes() -> None:
    refs = corpora.list_abc("oneills1850")
    assert len(refs) > 30 and all(ref.startswith("oneills1850/") for ref in refs)
    tunes = [tune for ref in refs for tune in corpora.load_abc(ref)]
    assert len(tunes) > 1800
    for tune in tunes:
        header, key, body = tune.partition("\nK:")
        assert header.startswith("X:1\nT:") and key
        assert "%" not in tune and '"' not in body


def test_abc_names_patterns_and_errors() -> None:
    assert corpora.list_abc("ONEILLS1850/0001-0050") == ["oneills1850/0001-0050.abc"]
    both = corpora.list_abc("oneills1850/0001*,ryansMammoth/Acacia*")
    assert both == ["oneills1850/0001-0050.abc", "ryansMammoth/AcaciaReel.abc"]
    assert len(corpora.list_abc("all")) > len(corpora.list_abc("ryansMammoth"))
    with pytest.raises(ComposerError, match="unknown ABC collection 'bach'.*oneills1850"):
        corpora.list_abc("bach")
    with pytest.raises(ComposerError, match="no ABC file"):
        corpora.list_abc("oneills1850/nothing*")
