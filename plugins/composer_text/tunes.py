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
meter, unit length (made explicit where ABC leaves it implied), voice and key fields are kept, in that
order; the body keeps its music and its key, meter, unit length, part and voice changes, without
comments, lyrics, notes, directives, quoted chord symbols or annotations (fingerings, tempo words,
"D.C."), line continuations or repeated spaces.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from composer_text.char import CharEncoder

TUNE_START = re.compile(r"X:")
FIELD = re.compile(r"([A-Za-z]):(.*)")
COMMENT = re.compile(r"(?<!\\)%.*")
QUOTED = re.compile(r'"[^"\n]*"')
SPACES = re.compile(r"[ \t]+")
MEMORY_ADDRESS = re.compile(r",? ?id\(\)=\d+| 0x[0-9a-f]+")  # in music21's messages
HEADER_ORDER = ("T", "R", "M", "L", "V")  # kept between X:1 and K:, in this order (V may repeat)
BODY_FIELDS = frozenset("KLMPV")  # field lines kept inside the body
QUARTER_SECONDS = 0.5  # rendered tunes play at 120 quarter notes per minute (normalised tunes have no Q:)
VELOCITY = 90
SECTION_BARS = frozenset({"double", "final", "light-light", "light-heavy", "heavy-light", "heavy-heavy"})
DEFAULT_TUNE_LENGTH = 2000  # characters; longer than nearly every tune in music21's collections

EXAMPLE_TUNES = [
    "X:1\nT:Example Jig\nR:jig\nM:6/8\nL:1/8\nK:D\n"
    "A|dfa afd|gfe dcB|AFA dFA|B2A AFA|\ndfa afd|gfe dcB|AFA ABc|d3 d2:|",
    "X:1\nT:Example Reel\nR:reel\nM:4/4\nL:1/8\nK:G\n"
    "|:GABc dBGB|cBAG FDEF|GABc dBGB|AGFA G2 G2:|\n|:gbgb afdf|gbag fdef|gbgb afdf|agfa g2 g2:|",
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
    if key is None or all(FIELD.fullmatch(line) for line in body):
        return None
    header.setdefault("L", [default_unit(header.get("M", [""])[0])])
    fields = ["X:1", *(f"{name}:{value}" for name in HEADER_ORDER for value in header.get(name, [])), f"K:{key}"]
    return "\n".join(fields + body)


def default_unit(meter: str) -> str:
    """The unit note length ABC implies when a tune has no ``L:`` field: 1/16 for meters below 3/4,
    else (and without a meter) 1/8. Written out, so that every normalised tune states it."""
    fraction = {"C": "4/4", "C|": "2/2"}.get(meter, meter)
    numerator, _, denominator = fraction.partition("/")
    if numerator.isdigit() and denominator.isdigit() and int(denominator) and int(numerator) / int(denominator) < 0.75:
        return "1/16"
    return "1/8"


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
    """A text that music21 cannot render as an ABC tune with notes."""


@dataclass(frozen=True)
class Rendering:
    """A tune read by music21: its score and its Standard MIDI file, or why it could not be read."""

    score: Any = None
    midi: bytes = b""
    error: str = ""


@functools.lru_cache(maxsize=32)
def render(text: str) -> Rendering:
    """Read an ABC tune with music21 (making its implied start repeats explicit) and make its MIDI file.
    Cached, because the summary line and every writer render the same tune: treat the score as read-only."""
    import music21

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # music21 prints a line for each token it guesses at
            score = music21.converter.parse(text, format="abc")
        if isinstance(score, music21.stream.Opus):  # several tunes: the first one
            score = score.scores[0]
        if not score.recurse().notes:
            return Rendering(error="no notes in it")
        _open_repeats(score)
        midi = _midi_file(score)
    except Exception as exc:  # music21 raises all kinds of errors on malformed ABC
        lines = str(exc).strip().splitlines()
        first = MEMORY_ADDRESS.sub("", lines[0].split(". ")[0]) if lines else ""
        return Rendering(error=f"{type(exc).__name__}: {first}"[:100].rstrip(": "))
    return Rendering(score, midi)


def _open_repeats(score: Any) -> None:
    """Give every end repeat its start repeat: in ABC a ``:|`` without a ``|:`` goes back to the start of
    its section (after the last double bar or repeat), where music21 would go back to the start of the
    tune, again and again in a tune of many such parts."""
    from music21 import bar

    for part in score.parts:
        measures = list(part.getElementsByClass("Measure"))
        start, opened = 0, False
        for index, measure in enumerate(measures):
            left, right = measure.leftBarline, measure.rightBarline
            if isinstance(left, bar.Repeat) and left.direction == "start":
                start, opened = index, True
            elif left is not None and left.type in SECTION_BARS and not opened:
                start = index
            if isinstance(right, bar.Repeat) and right.direction == "end":
                if not opened:
                    measures[start].leftBarline = bar.Repeat(direction="start")
                start, opened = index + 1, False
            elif right is not None and right.type in SECTION_BARS:
                start, opened = index + 1, False


def _played_out(score: Any) -> Any:
    """A copy of the score with its repeats expanded, or as written where music21 cannot expand them
    sensibly (a tune's repeats at most double it)."""
    try:
        expanded = score.expandRepeats()
    except Exception:  # malformed repeats
        expanded = None
    if expanded is not None and len(expanded.recurse().notes) <= 2 * len(score.recurse().notes):
        return expanded
    return copy.deepcopy(score)


def _midi_file(score: Any) -> bytes:
    """A score's notes, repeats played out, as a Standard MIDI file (pretty_midi), the score itself left as
    it is. music21's own MIDI export rejects many irregular tunes that it reads well enough, and some of
    O'Neill's too."""
    import pretty_midi
    from composer_music21.scores import part_instruments

    score = _played_out(score)
    midi = pretty_midi.PrettyMIDI(initial_tempo=60.0 / QUARTER_SECONDS)
    meters = score.recurse().getElementsByClass("TimeSignature")
    if meters:
        midi.time_signature_changes.append(pretty_midi.TimeSignature(meters[0].numerator, meters[0].denominator, 0))
    midi.instruments = part_instruments(score, QUARTER_SECONDS, velocity=VELOCITY)
    out = io.BytesIO()
    midi.write(out)
    return out.getvalue()


def rendered(text: str) -> Rendering:
    """The rendering of a tune; raises :class:`TuneError` saying why when music21 cannot read it."""
    result = render(text)
    if result.error:
        raise TuneError(f"the tune does not parse as ABC: {result.error}")
    return result


def describe_tune(text: str) -> str:
    """A few words for a summary line: title, meter, bars, and whether music21 can read the tune."""
    result = render(text)
    name = title(text)
    words = [f"'{name}'"] if name else []
    if result.error:
        return ", ".join([*words, "does not parse"])
    meter = re.search(r"^M:(.*)$", text, flags=re.MULTILINE)
    if meter:
        words.append(meter.group(1))
    bars = max((len(part.getElementsByClass("Measure")) for part in result.score.parts), default=0)
    return ", ".join([*words, f"{bars} bars", "parses"])


# ------------------------------------------------------------------------------------ encoder


class AbcEncoder(CharEncoder):
    """The character encoder for ABC tunes (folk-rnn): one generated sequence is one tune, START to END.
    Writes each tune as ``.abc`` and, rendered through music21, ``.mid`` by default (``--format`` also
    offers ``musicxml`` and ``txt``); the summary line says whether each tune parses, and a tune that
    does not gets no MIDI file. ``--length`` caps a tune's characters (default 2000)."""

    name = "abc"
    description = "ABC tunes, one character per token (folk-rnn); writes .abc and .mid (music21)"
    default_format = "abc,mid"
    default_length = DEFAULT_TUNE_LENGTH

    def summarize(self, item: str) -> str:
        return describe_tune(item)

    def example_items(self) -> list[str]:
        return list(EXAMPLE_TUNES)

    def properties(self, tokens: Any) -> dict[str, Any]:
        """The character encoder's ``inside quotes`` (chord symbols) and ``position in line``, and for ABC:
        ``in header`` (the lines from ``X:`` to ``K:``), ``inside a slur`` (``(...)``; ``(3`` opens a
        tuplet, not a slur), ``inside a chord`` (``[CEG]``; not ``[1`` or ``[K:G]``) and ``time in bar``
        (where the current note starts, in unit note lengths ``L:`` since the last bar line; NaN in the
        header and on field lines)."""
        text = self.characters(tokens)
        own = abc_properties(text)
        inherited = super().properties(tokens)
        return {"in header": own["in header"], "inside quotes": inherited["inside quotes"],
                "inside a slur": own["inside a slur"], "inside a chord": own["inside a chord"],
                "time in bar": own["time in bar"], "position in line": inherited["position in line"]}


# ------------------------------------------------------------------------- what a position is in

MUSIC = re.compile(r"""
    (?P<field>\[[A-Za-z]:[^\]\n]*\])                       # an inline field: [K:G]
  | (?P<bar>:*\[?\|[\]|]*:*(?:\[?\d+(?:[,-]\d+)*)? | :: | \[\d+)   # | || |] [| |: :| :|2 |1 [1 ::
  | \((?P<tuplet>\d)(?::\d*){0,2}                        # (3 or (3:2:3
  | (?P<grace>\{[^}\n]*\})                                 # grace notes take no time
  | (?P<chord>\[[^\]\n]*\])(?P<chord_length>\d*/*\d*)      # [CEG]2
  | (?P<note>[_^=]*[A-Ga-gzxZ][,']*)(?P<length>\d*/*\d*)    # ^c'3/2, z2
  | (?P<broken>[<>]+)                                       # broken rhythm: A>B
  | (?P<quoted>"[^"\n]*")                                  # a chord symbol or annotation
""", re.VERBOSE)
TUPLET_TIME = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}  # (p: p notes in the time of q (simple meters)


def _length(text: str) -> float:
    """An ABC length suffix as a multiple of the unit note length: ``2`` 2, ``/`` 0.5, ``3/2`` 1.5, ``//`` 0.25."""
    number, slashes, denominator = re.fullmatch(r"(\d*)(/*)(\d*)", text).groups()
    value = float(number or 1)
    if slashes:
        value /= float(denominator) if denominator else 2.0 ** len(slashes)
    return value


def abc_properties(text: str) -> dict[str, np.ndarray]:
    """Per character of ABC text: ``in header``, ``inside a slur``, ``inside a chord`` (0/1) and ``time in
    bar`` (see :meth:`AbcEncoder.properties`). A NUL character (the start token) belongs to the header."""
    size = len(text)
    header, slur, chord = np.zeros(size), np.zeros(size), np.zeros(size)
    time = np.full(size, np.nan)
    in_header, depth, now = True, 0, 0.0
    start = 0
    for line in text.splitlines(keepends=True):
        end = start + len(line)
        content = line.rstrip("\n").lstrip("\0")
        if content.startswith("X:"):
            in_header, depth = True, 0
        if in_header or FIELD.fullmatch(content):
            header[start:end] = in_header
            in_header = in_header and not content.startswith("K:")
            start = end
            continue
        onset, last, scale, tuplet_left, stretch = now, 0.0, 1.0, 0, 1.0
        position = start
        for found in MUSIC.finditer(line):
            time[position:start + found.start()] = onset
            position = start + found.start()
            if found.group("bar") is not None:
                now = onset = 0.0
            elif found.group("tuplet") is not None:
                p = int(found.group("tuplet"))
                scale, tuplet_left = TUPLET_TIME.get(p, 2) / p, p
            elif found.group("broken") is not None:
                n = len(found.group("broken"))
                short = 0.5 ** n
                if found.group("broken")[0] == ">":
                    now += last * (1 - short)
                    stretch = short
                else:
                    now -= last * (1 - short)
                    stretch = 2 - short
            elif found.group("note") is not None or found.group("chord") is not None:
                if found.group("chord") is not None:
                    inner = MUSIC.search(found.group("chord")[1:])
                    base = _length(inner.group("length") or "") if inner and inner.group("note") else 1.0
                    duration = base * _length(found.group("chord_length"))
                    chord[position:start + found.end("chord") - 1] = 1  # from [ up to the last note
                else:
                    duration = _length(found.group("length"))
                duration *= stretch * (scale if tuplet_left else 1.0)
                stretch = 1.0
                tuplet_left = max(0, tuplet_left - 1)
                onset, last = now, duration
                now += duration
            time[position:start + found.end()] = onset
            position = start + found.end()
        time[position:end] = onset
        for t in range(start, end):
            char = text[t]
            if char == "(" and not (t + 1 < size and text[t + 1].isdigit()):
                depth += 1
            elif char == ")":
                depth = max(0, depth - 1)
            slur[t] = depth > 0
        start = end
    return {"in header": header, "inside a slur": slur, "inside a chord": chord, "time in bar": time}
