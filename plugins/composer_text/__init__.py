"""The built-in text plugin: character-level models of any UTF-8 text (char-rnn) and of ABC tunes
(folk-rnn).

Encoders: ``char`` (any text; writes ``.txt``) and ``abc`` (the same on ABC tunes, one sequence per tune;
writes ``.abc`` and ``.mid``). Corpora: ``.txt``/``.md`` files (cut into pieces of at most 20,000 characters at blank
lines), ``.abc`` files (one item per tune), and ``abc:NAME`` for the ABC collections music21 ships
(``abc:oneills1850``, ``abc:ryansMammoth``, ``abc:all``, ...). Formats: ``txt``, ``abc``, and for tunes
``mid`` and ``musicxml`` rendered through music21.

A file that is not valid UTF-8 is skipped with a warning naming it; ``-O errors replace`` reads it with
U+FFFD for the bad bytes instead. Importing the plugin is cheap: music21 is imported where it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from composer import CorpusSource, Writer, hookimpl
from composer_text import corpora, writers
from composer_text.char import CharEncoder
from composer_text.tunes import AbcEncoder

MODALITY = "text"


@hookimpl
def register_encoders(register: Callable[[Any], None]) -> None:
    register(CharEncoder)
    register(AbcEncoder)


@hookimpl
def register_corpora(register: Callable[[Any], None]) -> None:
    register(
        CorpusSource(
            name="text-files",
            modality=MODALITY,
            load=corpora.read_text,
            suffixes=corpora.TEXT_SUFFIXES,
            description="UTF-8 text files (.txt, .md), cut into pieces of at most 20,000 characters at blank lines",
        )
    )
    register(
        CorpusSource(
            name="abc-files",
            modality=MODALITY,
            load=corpora.read_abc,
            suffixes=corpora.ABC_SUFFIXES,
            description="ABC files as text, one normalised tune per item",
        )
    )
    register(
        CorpusSource(
            name=corpora.SOURCE,
            modality=MODALITY,
            load=corpora.load_abc,
            list=corpora.list_abc,
            description="ABC tunes of music21's corpus as text, one per tune: abc:oneills1850, abc:ryansMammoth, "
            "abc:essenFolksong, abc:all, ...",
        )
    )


@hookimpl
def register_writers(register: Callable[[Any], None]) -> None:
    register(Writer("txt", MODALITY, ".txt", writers.write_text, description="the text"))
    register(Writer("abc", MODALITY, ".abc", writers.write_text, description="the tune as ABC text"))
    register(Writer("mid", MODALITY, ".mid", writers.write_mid, description="an ABC tune as MIDI (music21)"))
    register(Writer("musicxml", MODALITY, ".musicxml", writers.write_musicxml, description="an ABC tune as MusicXML"))
