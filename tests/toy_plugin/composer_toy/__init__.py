"""A throwaway third-party plugin used by the tests: a tiny character encoder over '.toy' files."""

from dataclasses import dataclass
from pathlib import Path

from composer import Categorical, CorpusSource, Encoder, GenerationPlan, Writer, WriteSkipped, hookimpl

PATTERNS = ["abcabcabcabc", "aabbccaabbcc", "abcdabcdabcd", "cbacbacbacba"]


class ToyEncoder(Encoder):
    name = "toy"
    modality = "toy"
    description = "characters of short lines (test plugin)"
    needs_fit = True
    default_format = "txt"
    length_unit = "characters"
    bos, eos, unknown = 0, 1, 2

    @dataclass
    class Options:
        lowercase: bool = True

    def __init__(self, **options):
        super().__init__(**options)
        self.chars: list[str] = []

    @property
    def head(self):
        return Categorical(3 + len(self.chars))

    def fit(self, items):
        self.chars = sorted({c for item in items for c in self._norm(item)})

    def _norm(self, text):
        return text.lower() if self.options.lowercase else text

    def encode(self, item):
        index = {c: i + 3 for i, c in enumerate(self.chars)}
        return [self.bos] + [index.get(c, self.unknown) for c in self._norm(item)] + [self.eos]

    def decode(self, seq):
        return "".join(self.chars[t - 3] for t in seq if t >= 3)

    def generation_plan(self, length=None, **request):
        return GenerationPlan(max_tokens=int(length) if length else 40)

    def summarize(self, item):
        return f"{len(item)} characters"

    def example_items(self):
        return PATTERNS[:2]

    def state_dict(self):
        return {**super().state_dict(), "chars": self.chars}

    def load_state_dict(self, state):
        self.chars = list(state["chars"])


def read_toy_file(ref):
    lines = [line.strip() for line in Path(ref).read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty toy file")
    return lines


def list_patterns(name):
    if name != "patterns":
        raise ValueError(f"unknown toy collection '{name}'")
    return [f"toy:patterns/{i}" for i in range(len(PATTERNS))]


def load_pattern(ref):
    return [PATTERNS[int(ref.rsplit("/", 1)[1])] * 4]


def write_txt(item, path):
    Path(path).write_text(item + "\n")


def write_even(item, path):
    """A picky format: only items of even length."""
    if len(item) % 2:
        raise WriteSkipped("odd length")
    Path(path).write_text(item)


@hookimpl
def register_encoders(register):
    register(ToyEncoder)


@hookimpl
def register_corpora(register):
    register(CorpusSource("toy-files", "toy", read_toy_file, suffixes=(".toy",)))
    register(CorpusSource("toy", "toy", load_pattern, list=list_patterns))


@hookimpl
def register_writers(register):
    register(Writer("txt", "toy", ".txt", write_txt))
    register(Writer("even", "toy", ".even", write_even))
