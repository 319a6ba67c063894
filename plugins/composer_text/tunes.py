"""ABC tunes as text (the folk-rnn idea): splitting ABC books into tunes, normalising them so that a model
sees clean, uniform tunes, the ``abc`` encoder, and rendering a tune through music21.

A normalised tune reads::

    X:1
    T:The Enchanted Valley
    R:reel
    M:2/4
    L:1/16
    K:Gm
    G3-A (Bcd=e) | f4 (g2dB) | ...

``X:`` is always 1 (the model need not count); of the header only the first title and the rhythm,
meter, unit length, voice and key fields are kept, in that order; the body keeps its music and its
key, meter, unit length, part and voice changes, without comments, lyrics, notes, directives, quoted
chord symbols or annotations (fingerings, tempo words, "D.C."), line continuations or repeated spaces.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from composer_text.char import CharEncoder

TUNE_START = re.compile(r"X:")
FIELD = re.compile(r"([A-Za-z]):(.*)")
COMMENT = re.compile(r"(?<!\\)%.*")
QUOTED = re.compile(r'"[^"\n]*"')
SPACES = re.compile(r"[ \t]+")
HEADER_ORDER = ("T", "R", "M", "L", "V")  # kept between X:1 and K:, in this order (V may repeat)
BODY_FIELDS = frozenset("KLMPV")  # field lines kept inside the body
DEFAULT_TUNE_LENGTH = 2000  # characters; longer than nearly every tune in music21's collections

EXAMPLE_TUNES = [
    "X:1\nT:Example Jig\nR:jig\nM:6/8\nL:1/8\nK:D\n"
    "A|dfa afd|gfe dcB|AFA dFA|B2A AFA|\ndfa afd|gfe dcB|AFA ABc|d3 d2:|",
    "X:1\nT:Example Reel\nR:reel\nM:4/4\nL:1/8\nK:G\n"
    "GABc dBGB|cBAG FDEF|GABc dBGB|AGFA G2 G2:|\ngbgb afdf|gbag fdef|gbgb afdf|agfa g2 g2:|",
]


def split_tunes(text: str) -> list[str]:
    """The tunes of an ABC book, raw: each from its ``X:`` line to the first blank line or the next
    ``X:`` line. Text outside tunes (the book's header, free text between tunes) is left out."""
    tunes: list[list[str]] = []
    inside = False
    for line in text.splitlines():
        if TUNE_START.match(line):
            tunes.append([line])
            inside = True
        elif not line.strip():
            inside = False
        elif inside:
            tunes[-1].append(line)
    return ["\n".join(lines) for lines in tunes]


def normalize_tune(raw: str) -> str | None:
    """A raw tune in the normalised form described in the module docstring, or None when it is no tune
    (no ``K:`` line, or no music after it)."""
    header: dict[str, list[str]] = {}
    key = None
    body: list[str] = []
    for line in raw.splitlines()[1:]:
        line = COMMENT.sub("", line).rstrip().removesuffix("\\").rstrip()
        field = FIELD.fullmatch(line)
        if key is None:
            if field:
                name, value = field.group(1), _clean_value(field.group(2))
                if name == "K":
                    key = value
                elif name in HEADER_ORDER and value and (name == "V" or name not in header):
                    header.setdefault(name, []).append(value)
            continue
        if field:
            if field.group(1) in BODY_FIELDS:
                body.append(f"{field.group(1)}:{_clean_value(field.group(2))}")
            continue
        music = SPACES.sub(" ", QUOTED.sub("", line)).strip()
        if music:
            body.append(music)
    if key is None or not any(not FIELD.fullmatch(line) for line in body):
        return None
    fields = ["X:1", *(f"{name}:{value}" for name in HEADER_ORDER for value in header.get(name, [])), f"K:{key}"]
    return "\n".join(fields + body)


def _clean_value(value: str) -> str:
    return SPACES.sub(" ", value).strip()


def read_tunes(text: str) -> list[str]:
    """The normalised tunes of an ABC book."""
    return [tune for tune in map(normalize_tune, split_tunes(text)) if tune is not None]


def title(tune: str) -> str:
    found = re.search(r"^T:(.*)$", tune, flags=re.MULTILINE)
    return found.group(1).strip() if found else ""


# ---------------------------------------------------------------------------------- rendering


class TuneError(ValueError):
    """A text that music21 cannot read as an ABC tune with notes."""


@functools.lru_cache(maxsize=32)
def _parse(text: str) -> tuple[Any, str]:
    """(score, "") or (None, reason); cached because the summary and every writer parse the same tune."""
    import music21

    try:
        score = music21.converter.parse(text, format="abc")
    except Exception as exc:  # music21 raises many kinds of errors for malformed ABC
        lines = str(exc).strip().splitlines()
        return None, f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")[:200]
    if isinstance(score, music21.stream.Opus):
        score = score.scores[0] if score.scores else None
    if score is None or not score.recurse().notes:
        return None, "no notes in it"
    return score, ""


def parse_tune(text: str) -> Any:
    """A music21 score of an ABC tune; raises :class:`TuneError` saying why when it does not parse.
    The score is shared with later calls for the same text: copy it before changing it."""
    score, reason = _parse(text)
    if score is None:
        raise TuneError(f"the tune does not parse as ABC: {reason}")
    return score


def describe_tune(text: str) -> str:
    """A few words for a summary line: title, meter, key, bars, and whether music21 can read it."""
    score, reason = _parse(text)
    name = title(text)
    words = [f"'{name}'"] if name else []
    if score is None:
        return ", ".join([*words, f"does not parse ({reason})"])
    meter = re.search(r"^M:(.*)$", text, flags=re.MULTILINE)
    if meter:
        words.append(meter.group(1))
    bars = len(score.parts[0].getElementsByClass("Measure")) if score.parts else 0
    return ", ".join([*words, f"{bars} bars", "parses"])


# ------------------------------------------------------------------------------------ encoder


class AbcEncoder(CharEncoder):
    """The character encoder for ABC tunes (folk-rnn): one generated sequence is one tune, START to END.
    Writes ``.abc`` by default (``--format abc,mid,musicxml`` renders tunes through music21); the
    summary line says whether each tune parses. ``--length`` caps a tune's characters (default 2000)."""

    name = "abc"
    description = "ABC tunes, one character per token (folk-rnn); renders to MIDI and MusicXML"
    default_format = "abc"
    default_length = DEFAULT_TUNE_LENGTH

    def summarize(self, item: str) -> str:
        return describe_tune(item)

    def example_items(self) -> list[str]:
        return list(EXAMPLE_TUNES)
