"""Character-level text in the manner of char-rnn: one token per Unicode character."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from composer import Categorical, ComposerError, Encoder, EncodeReport, GenerationPlan

START, END, UNKNOWN = 0, 1, 2
FIRST_CHAR = 3
REPLACEMENT = "\ufffd"  # what UNKNOWN decodes to
DEFAULT_LENGTH = 1000

# Readers decode files with ``surrogateescape``, so each byte that is not valid UTF-8 arrives as a lone
# surrogate in this range; the encoder's ``errors`` option decides what becomes of it.
INVALID_BYTES = re.compile("[\udc80-\udcff]+")

EXAMPLES = [
    "Hello, world!\nA second line.",
    "Café, naïve façade, Straße; 日本語; emoji 🎻🎶.",
]


class CharEncoder(Encoder):
    """One token per character of any UTF-8 text. The vocabulary is the sorted set of characters of the
    training corpus (those seen at least ``min_count`` times).

    Token ids: 0 START, 1 END, 2 UNKNOWN (a character outside the vocabulary; decoded as U+FFFD), then
    one id per vocabulary character. ``--length`` counts characters; generation stops at END."""

    name = "char"
    modality = "text"
    description = "characters of any UTF-8 text (char-rnn); unseen characters become UNKNOWN"
    needs_fit = True
    default_format = "txt"
    length_unit = "characters"
    generation_options = ("prime",)  # -O prime TEXT: continue this text (\n in it stands for a newline)
    bos, eos = START, END
    default_length = DEFAULT_LENGTH

    @dataclass
    class Options:
        lowercase: bool = False  # fold case before counting and encoding
        min_count: int = 1  # characters seen fewer times in the corpus become UNKNOWN
        unknown: str = "map"  # a character outside the vocabulary: "map" to UNKNOWN, or "drop" it
        errors: str = "strict"  # text that is not valid UTF-8: "strict" rejects it, "replace" uses U+FFFD

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        opts = self.options
        if opts.unknown not in ("map", "drop"):
            raise ComposerError(f"{self.name}: option 'unknown' must be 'map' or 'drop', got '{opts.unknown}'")
        if opts.errors not in ("strict", "replace"):
            raise ComposerError(f"{self.name}: option 'errors' must be 'strict' or 'replace', got '{opts.errors}'")
        if opts.min_count < 1:
            raise ComposerError(f"{self.name}: option 'min_count' must be at least 1, got {opts.min_count}")
        self.chars: list[str] = []
        self.index: dict[str, int] = {}

    @property
    def head(self) -> Categorical:
        return Categorical(FIRST_CHAR + len(self.chars))

    # -- data
    def normalize(self, text: str) -> str:
        """The text as the model sees it: invalid UTF-8 rejected (``ValueError``) or replaced, case folded
        if asked."""
        found = INVALID_BYTES.search(text)
        if found:
            if self.options.errors == "strict":
                byte = ord(found.group()[0]) - 0xDC00
                raise ValueError(
                    f"not valid UTF-8 (byte 0x{byte:02x} at character {found.start()}); "
                    "-O errors replace reads it with U+FFFD"
                )
            text = INVALID_BYTES.sub(REPLACEMENT, text)
        return text.lower() if self.options.lowercase else text

    def fit(self, items: Iterable[str]) -> None:
        """The vocabulary: every character seen at least ``min_count`` times, sorted. Items that are not
        valid UTF-8 (under ``errors = "strict"``) are left out here and reported when they are encoded."""
        counts: Counter[str] = Counter()
        for item in items:
            try:
                counts.update(self.normalize(item))
            except ValueError:
                continue
        chars = sorted(c for c, n in counts.items() if n >= self.options.min_count)
        if counts and not chars:
            raise ComposerError(f"{self.name}: no character occurs min_count ({self.options.min_count:,}) times in "
                                f"the corpus (the most frequent, {max(counts.values()):,} times), so the vocabulary "
                                "would be empty; lower -O min_count")
        self._set_chars(chars)

    def _set_chars(self, chars: list[str]) -> None:
        self.chars = chars
        self.index = {c: FIRST_CHAR + i for i, c in enumerate(chars)}

    def encode(self, item: str) -> list[int]:
        return self.encode_checked(item)[0]

    def encode_checked(self, item: str) -> tuple[list[int], EncodeReport]:
        """START, one token per character, END; characters outside the vocabulary are mapped to UNKNOWN or
        dropped (option ``unknown``) and counted."""
        seq, report = [START], EncodeReport()
        for char in self.normalize(item):
            token = self.index.get(char)
            if token is not None:
                seq.append(token)
            elif self.options.unknown == "map":
                seq.append(UNKNOWN)
                report.mapped += 1
            else:
                report.dropped += 1
        seq.append(END)
        return seq, report

    def decode(self, seq: Sequence[int]) -> str:
        """The text of a sequence: START skipped, everything after END ignored, UNKNOWN as U+FFFD."""
        out = []
        for token in seq:
            if token == END:
                break
            if token >= FIRST_CHAR:
                out.append(self.chars[token - FIRST_CHAR])
            elif token == UNKNOWN:
                out.append(REPLACEMENT)
        return "".join(out)

    # -- generation
    def generation_plan(self, length: float | None = None, *, prime: str | None = None,
                        **request: Any) -> GenerationPlan:
        """At most ``length`` characters (default :attr:`default_length`); generation stops earlier at END.
        ``prime``: text to continue (``\\n`` in it stands for a newline, so that a command line can give one)."""
        if length is not None and length < 1:
            raise ComposerError(f"length must be at least 1 character, got {length}")
        primer = self.primer(prime.replace("\\n", "\n")) if prime is not None else []
        return GenerationPlan(max_tokens=int(length) if length is not None else self.default_length, primer=primer)

    def primer(self, item: str) -> list[int]:
        """The primer's characters, without START (the generator adds it) or END."""
        return self.encode(item)[1:-1]

    def summarize(self, item: str) -> str:
        return f"{len(item):,} characters"

    def example_items(self) -> list[str]:
        return list(EXAMPLES)

    # -- looking inside a model
    def characters(self, tokens: Sequence[int]) -> str:
        """The text of tokens position by position: one character per token, NUL for START and END (so
        that positions line up), U+FFFD for UNKNOWN."""
        return "".join(self.chars[t - FIRST_CHAR] if t >= FIRST_CHAR else REPLACEMENT if t == UNKNOWN else "\0"
                       for t in tokens)

    def properties(self, tokens: Sequence[int]) -> dict[str, np.ndarray]:
        """``inside quotes`` (after an opening ``"`` or “, up to and without its closing one),
        ``inside parentheses`` and ``inside brackets`` (``(...)`` and ``[...]``, nested or not; the opening
        character counts as inside, the closing one not) and ``position in line`` (characters read on the
        line so far: 1 for a line's first character, 0 for a newline)."""
        text = self.characters(tokens)
        quotes, parens, brackets, column = (np.zeros(len(text)) for _ in range(4))
        inside, depth = False, {"(": 0, "[": 0}
        closing = {")": "(", "]": "["}
        col = 0
        for t, char in enumerate(text):
            if char == '"':
                inside = not inside
            elif char in "“”":
                inside = char == "“"
            if char in depth:
                depth[char] += 1
            elif char in closing:
                depth[closing[char]] = max(0, depth[closing[char]] - 1)
            col = 0 if char in "\n\0" else col + 1
            quotes[t], parens[t], brackets[t] = inside, depth["("] > 0, depth["["] > 0
            column[t] = col
        return {"inside quotes": quotes, "inside parentheses": parens, "inside brackets": brackets,
                "position in line": column}

    def token_labels(self, tokens: Sequence[int]) -> list[str]:
        """The characters themselves (START and END: empty)."""
        return [c if c != "\0" else "" for c in self.characters(tokens)]

    def time_marks(self, tokens: Sequence[int]) -> dict[int, str]:
        """The first character of every line: ``line 1``, ``line 2``, ..."""
        text = self.characters(tokens)
        starts = [t for t, c in enumerate(text) if c not in "\n\0" and (t == 0 or text[t - 1] in "\n\0")]
        return {t: f"line {n}" for n, t in enumerate(starts, 1)}

    # -- checkpoint state
    def state_dict(self) -> dict:
        return {**super().state_dict(), "chars": list(self.chars)}

    def load_state_dict(self, state: dict) -> None:
        self._set_chars(list(state["chars"]))
