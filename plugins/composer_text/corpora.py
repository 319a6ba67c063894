"""Corpus sources for text: plain text and ABC files, and the ABC collections music21 ships (``abc:NAME``).

Every ``load`` is a module-level function of its reference alone, so that the host can run it in worker
processes. Files are decoded as UTF-8 with ``surrogateescape``: reading never fails on bytes that are not
UTF-8, and the encoder's ``errors`` option decides what becomes of them (by default the file is rejected
and the host skips it, naming it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from composer_music21.corpus import corpus_dir, corpus_files, find_collection, matching

from composer import ComposerError
from composer_text.tunes import read_tunes

TEXT_SUFFIXES = (".txt", ".md")
ABC_SUFFIXES = (".abc",)
CHUNK_CHARS = 20_000  # a long text is cut into pieces of at most this many characters
ALL = "all"
SOURCE = "abc"  # the corpus source of the ABC collections in music21's corpus
PARAGRAPH_END = re.compile(r"(?<=\n\n)")
LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def read_file(path: str | Path) -> str:
    """A file's text, with newlines normalised to ``\\n`` and bytes that are not UTF-8 kept as lone
    surrogates (see the module docstring)."""
    text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


# ------------------------------------------------------------------------------------ text files


def read_text(ref: str) -> list[str]:
    """A ``.txt`` or ``.md`` file as pieces of at most :data:`CHUNK_CHARS` characters, cut at blank lines
    (see :func:`split_text`), so that one long file still shuffles and validates by piece."""
    pieces = split_text(read_file(ref))
    if not pieces:
        raise ValueError("no text in it")
    return pieces


def split_text(text: str, limit: int = CHUNK_CHARS) -> list[str]:
    """Whole paragraphs packed into pieces of at most ``limit`` characters; a paragraph longer than that
    is cut at line ends, and a line longer than that anywhere. Blank lines around a piece are dropped."""
    pieces: list[str] = []
    current = ""
    for part in _parts(text, limit):
        if len(current) + len(part) > limit:
            pieces.append(current)
            current = ""
        current += part
    pieces.append(current)
    trimmed = (LEADING_BLANK_LINES.sub("", piece).rstrip() for piece in pieces)
    return [piece for piece in trimmed if piece]


def _parts(text: str, limit: int) -> Iterator[str]:
    for paragraph in PARAGRAPH_END.split(text):
        if len(paragraph) <= limit:
            yield paragraph
            continue
        for line in paragraph.splitlines(keepends=True):
            for start in range(0, len(line), limit):
                yield line[start : start + limit]


# ------------------------------------------------------------------------------------- ABC files


def read_abc(ref: str) -> list[str]:
    """An ``.abc`` file as its normalised tunes, one item per tune."""
    tunes = read_tunes(read_file(ref))
    if not tunes:
        raise ValueError("no ABC tune in it (a tune starts at an X: line and needs a K: line)")
    return tunes


def abc_collections() -> dict[str, list[str]]:
    """The folders of music21's corpus that hold ABC files, each with its files (paths inside the corpus)."""
    found: dict[str, list[str]] = {}
    for ref in corpus_files(SOURCE, ABC_SUFFIXES):
        found.setdefault(ref.split("/", 1)[0], []).append(ref)
    return found


def list_abc(name: str) -> list[str]:
    """References for ``abc:NAME``: a collection of music21's corpus (any case; ``oneills1850``,
    ``ryansMammoth``, ``essenFolksong``, ...), ``all``, a file pattern inside a collection
    (``oneills1850/0001-0050``, ``ryansMammoth/A*``), or several of these separated by commas."""
    known = abc_collections()
    refs: list[str] = []
    for wanted in (part.strip() for part in name.split(",")):
        collection, _, pattern = wanted.partition("/")
        if collection == ALL and not pattern:
            refs += [ref for files in known.values() for ref in files]
            continue
        matched = find_collection(collection, known)
        if matched is None:
            available = ", ".join([ALL, *sorted(known, key=str.lower)])
            raise ComposerError(f"unknown ABC collection '{collection}' (available: {available})")
        files = known[matched]
        if pattern:
            files = matching(files, f"{matched}/{pattern}", ("", *ABC_SUFFIXES))
            if not files:
                raise ComposerError(f"no ABC file in music21's corpus matches '{wanted}'")
        refs += files
    return list(dict.fromkeys(refs))


def load_abc(ref: str) -> list[str]:
    """The normalised tunes of one ABC file of music21's corpus (a path inside it)."""
    return read_abc(str(corpus_dir(SOURCE) / ref))
