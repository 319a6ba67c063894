"""The character encoder: any UTF-8 text in and out, unknown characters counted, state in checkpoints."""

from __future__ import annotations

import json

import pytest
from composer_text.char import END, START, UNKNOWN, CharEncoder

from composer import ComposerError

TEXT = "Grüße, naïve café! 日本語 and emoji 🎻🎶\n\ttabs, \"quotes\" and ∑ ≠ ∞."


def fitted(*items: str, **options: str | int | bool) -> CharEncoder:
    encoder = CharEncoder(**options)
    encoder.fit(items)
    return encoder


def test_round_trip_of_utf8_text_with_accents_and_emoji() -> None:
    encoder = fitted(TEXT)
    seq = encoder.encode(TEXT)
    assert seq[0] == START and seq[-1] == END
    assert len(seq) == len(TEXT) + 2  # one token per code point, emoji included
    assert UNKNOWN not in seq
    assert encoder.decode(seq) == TEXT
    assert encoder.head.vocab_size == 3 + len(set(TEXT))


def test_vocabulary_is_the_sorted_characters_of_the_corpus() -> None:
    encoder = fitted("cab", "bad")
    assert encoder.chars == ["a", "b", "c", "d"]


def test_unseen_characters_become_unknown_and_are_counted() -> None:
    encoder = fitted("abc")
    seq, report = encoder.encode_checked("abXcé")
    assert seq == [START, *encoder.encode("ab")[1:-1], UNKNOWN, *encoder.encode("c")[1:-1], UNKNOWN, END]
    assert (report.mapped, report.dropped) == (2, 0)
    assert encoder.decode(seq) == "ab\ufffdc\ufffd"
    assert encoder.encode("abXcé") == seq


def test_unknown_drop_leaves_unseen_characters_out() -> None:
    encoder = fitted("abc", unknown="drop")
    seq, report = encoder.encode_checked("aXbYc")
    assert encoder.decode(seq) == "abc"
    assert (report.mapped, report.dropped) == (0, 2)


def test_rare_characters_fall_below_min_count() -> None:
    encoder = fitted("aaab", "aab", min_count=2)
    assert encoder.chars == ["a", "b"]
    encoder = fitted("aaab", "aaz", min_count=3)
    assert encoder.chars == ["a"]
    assert encoder.decode(encoder.encode("ab")) == "a\ufffd"


def test_lowercase_folds_case() -> None:
    encoder = fitted("Hello World", lowercase=True)
    assert encoder.chars == sorted(set("hello world"))
    assert encoder.decode(encoder.encode("HELLO")) == "hello"


def test_invalid_utf8_is_rejected_or_replaced() -> None:
    text = b"caf\xe9 ok".decode("utf-8", "surrogateescape")  # as the file readers deliver it
    with pytest.raises(ValueError, match="not valid UTF-8"):
        fitted("caf ok").encode(text)
    encoder = fitted(text, errors="replace")
    assert encoder.decode(encoder.encode(text)) == "caf\ufffd ok"
    assert fitted(text, "abc").chars == ["a", "b", "c"]  # strict: fit leaves the bad item out


def test_state_survives_json_and_a_new_encoder() -> None:
    encoder = fitted(TEXT, min_count=1, lowercase=True)
    state = json.loads(json.dumps(encoder.state_dict()))
    again = CharEncoder(**state["options"])
    again.load_state_dict(state)
    assert again.chars == encoder.chars and again.options == encoder.options
    assert again.encode(TEXT) == encoder.encode(TEXT)


def test_decode_stops_at_end() -> None:
    encoder = fitted("ab")
    a, b = encoder.encode("ab")[1:-1]
    assert encoder.decode([START, a, END, b]) == "a"


def test_generation_plan_counts_characters_and_primer_has_no_start_or_end() -> None:
    encoder = fitted("abc")
    assert encoder.generation_plan().max_tokens == 1000
    assert encoder.generation_plan(length=50).max_tokens == 50
    with pytest.raises(ComposerError):
        encoder.generation_plan(length=0)
    primer = encoder.primer("cab")
    assert START not in primer and END not in primer and encoder.decode(primer) == "cab"
    assert encoder.summarize("x" * 1234) == "1,234 characters"


@pytest.mark.parametrize("options", [{"unknown": "keep"}, {"errors": "ignore"}, {"min_count": 0}])
def test_bad_options_are_one_line_errors(options: dict) -> None:
    with pytest.raises(ComposerError, match="char"):
        CharEncoder(**options)
