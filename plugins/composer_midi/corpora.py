"""Corpus sources: the collections music21 ships (``music21:bach``) and MIDI and score files.

Every ``load`` is a module-level function of its reference alone, so that the host can run it in worker
processes and cache what it returns."""

from __future__ import annotations

import warnings
from pathlib import Path

import pretty_midi
from composer_music21.corpus import corpus_dir, corpus_files, find_collection, matching

from composer import ComposerError
from composer_midi.scores import score_to_midi

MIDI_SUFFIXES = (".mid", ".midi")
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn", ".abc")
NOT_COLLECTIONS = {"demos", "theoryExercises"}  # folders of music21's corpus that are not music to learn
ALL = "all"
# pretty_midi holds a parsed file in memory about 170 times its size (a 7 MB file: 1.2 GB, 40 s to read); a
# larger file is skipped with its size named rather than let memory run out
MAX_MIDI_BYTES = 8 * 2**20
SOURCE = "music21"  # the corpus source of music21's collections


def collections() -> list[str]:
    """Names of the collections in music21's corpus: its folders (bach, essenFolksong, palestrina, ...)."""
    root = corpus_dir(SOURCE)
    if not root.is_dir():
        return []
    return sorted(
        (
            p.name
            for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(("_", ".")) and p.name not in NOT_COLLECTIONS
        ),
        key=str.lower,
    )


def list_music21(name: str) -> list[str]:
    """References (paths inside music21's corpus, such as ``bach/bwv1.6.mxl``) for a collection name (any
    case), ``all``, or a pattern inside a collection: a file with or without its suffix, a folder, a glob
    (``bach/bwv1.6``, ``beethoven/opus18no1``, ``bach/bwv2*``)."""
    known = collections()
    collection, _, pattern = name.partition("/")
    if collection == ALL and not pattern:
        return [ref for each in known for ref in corpus_files(SOURCE, SCORE_SUFFIXES, each)]
    matched = find_collection(collection, known)
    if matched is None:
        raise ComposerError(f"unknown music21 collection '{collection}' (available: {', '.join([ALL, *known])})")
    refs = corpus_files(SOURCE, SCORE_SUFFIXES, matched)
    if pattern:
        refs = matching(refs, f"{matched}/{pattern}", ("", ".*", "/*"))
        if not refs:
            raise ComposerError(f"no file in music21's corpus matches '{name}'")
    return refs


def load_music21(ref: str) -> list[pretty_midi.PrettyMIDI]:
    """The pieces of one file of music21's corpus (a path inside it, or an absolute path)."""
    path = Path(ref)
    return read_score(path if path.is_absolute() else corpus_dir(SOURCE) / path)


def read_midi(path: str | Path) -> list[pretty_midi.PrettyMIDI]:
    """A MIDI file as one piece; a file that is not MIDI, holds no pitched notes or is larger than
    MAX_MIDI_BYTES is an error."""
    size = Path(path).stat().st_size
    if size > MAX_MIDI_BYTES:
        raise ComposerError(f"too large to read ({size / 2**20:.1f} MB; MIDI files of up to "
                            f"{MAX_MIDI_BYTES / 2**20:g} MB are read): split it into shorter files")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about meta events on other tracks
            pm = pretty_midi.PrettyMIDI(str(path))
    except OSError as exc:
        if exc.errno is not None:  # the file system's error (a broken or looping link): the corpus names it
            raise
        raise ComposerError(f"not a readable MIDI file ({_reason(exc)})") from exc
    except Exception as exc:
        raise ComposerError(f"not a readable MIDI file ({_reason(exc)})") from exc
    if not any(inst.notes for inst in pm.instruments):
        raise ComposerError("no notes")
    if not any(inst.notes for inst in pm.instruments if not inst.is_drum):
        raise ComposerError("only drum notes")
    return [pm]


def read_file(path: str | Path) -> list[pretty_midi.PrettyMIDI]:
    """The pieces in a MIDI or score file, chosen by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return read_midi(path)
    if suffix in SCORE_SUFFIXES:
        return read_score(path)
    raise ComposerError(f"{path}: not a MIDI or score file (known: {' '.join(MIDI_SUFFIXES + SCORE_SUFFIXES)})")


def read_score(path: str | Path) -> list[pretty_midi.PrettyMIDI]:
    """The pieces in a score file (MusicXML, Humdrum, ABC): one, or one per tune of an ABC book. Tunes
    without notes are left out; a file without any is an error."""
    from music21 import converter, stream

    if not Path(path).is_file():
        raise ComposerError(f"no such file: {path}")
    try:
        parsed = converter.parse(str(path), forceSource=True)
    except Exception as exc:
        raise ComposerError(f"not a readable score ({_reason(exc)})") from exc
    if isinstance(parsed, stream.Opus):
        scores = list(parsed.scores)
        titles = {score.metadata.title if score.metadata else None for score in scores}
        if len(scores) > 1 and len(titles) == 1 and None not in titles:
            scores = [parsed.mergeScores()]  # the parts of one work, written as tunes of the same title
    else:
        scores = [parsed]
    try:
        pieces = [pm for pm in map(score_to_midi, scores) if any(inst.notes for inst in pm.instruments)]
    except Exception as exc:
        raise ComposerError("not a usable score (music21 reads it, but its parts cannot be turned into notes)") \
            from exc
    if not pieces:
        raise ComposerError("no notes")
    return pieces


def _reason(exc: Exception) -> str:
    """The first line of an exception's message, at most 120 characters."""
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    return reason if len(reason) <= 120 else reason[:117] + "..."
