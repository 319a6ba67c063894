"""The public API that plugins build on: encoders, corpus sources, samplers (generation strategies),
writers, styles, constraints.

A plugin imports only from here (re-exported by ``composer``) and registers its objects through the
hooks in :mod:`composer.hookspecs`.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pluggy

hookimpl = pluggy.HookimplMarker("composer")

MAX_TOKENS = 1_000_000  # new tokens per generated piece: hours of music or a long book


class ComposerError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits with status 1."""


class WriteSkipped(ComposerError):
    """Raised by a writer that cannot write this one item (e.g. a generated tune that does not parse): the
    command goes on with the other items and formats and counts what was skipped."""


# ---------------------------------------------------------------------------------------- heads


@dataclass(frozen=True)
class Categorical:
    """A softmax over ``vocab_size`` tokens. ``frame`` > 0: after the start token the sequence comes in frames
    of that many tokens (one time step of parallel streams), of which the first ``predicted`` are the
    streams a bidirectional model (family ``gibbs``) predicts and the rest what it only reads."""

    vocab_size: int
    frame: int = 0
    predicted: int = 0

    def spec(self) -> dict:
        layout = {"frame": self.frame, "predicted": self.predicted} if self.frame else {}
        return {"type": "categorical", "vocab_size": self.vocab_size, **layout}


@dataclass(frozen=True)
class MixtureDensity:
    """Sketch-RNN's head: a mixture of bivariate normals over (dx, dy) plus a pen-state softmax."""

    components: int = 20
    dims: int = 2
    pen_states: int = 3

    def spec(self) -> dict:
        return {"type": "mdn", "components": self.components, "dims": self.dims, "pen_states": self.pen_states}


HeadSpec = Categorical | MixtureDensity


# ------------------------------------------------------------------------------------- encoders


@dataclass
class EncodeReport:
    """What an encoder had to change to fit an item into its vocabulary (counted, never silent)."""

    transposed: int = 0
    mapped: int = 0
    dropped: int = 0

    def add(self, other: EncodeReport) -> None:
        self.transposed += other.transposed
        self.mapped += other.mapped
        self.dropped += other.dropped

    def __bool__(self) -> bool:
        return bool(self.transposed or self.mapped or self.dropped)


class Encoder:
    """Turns corpus items into sequences and back; owns the state (vocabulary, normalisation) that a
    checkpoint stores.

    Subclasses set ``name`` and ``modality`` and may declare an ``Options`` dataclass: its fields are the
    encoder's settings (``-O key value`` on the command line), validated and converted by the host.
    Token encoders return ``list[int]`` (or an integer numpy array) from :meth:`encode`; feature encoders
    return a float ``numpy`` array of shape ``[T, input_dim]``, and their ``bos`` is the first row (a tuple
    of floats) rather than a token.

    Corpus items may carry two attributes the core honours: ``label`` (a class name, for class-conditional
    models trained with ``--label``) and ``split`` (``"train"``, ``"valid"`` or ``"test"``: a dataset's own
    split, kept instead of a random one). A decoded item with a text ``title`` attribute is given the style's name
    there by :meth:`composer.Session.generate` (writers show it as the title of a score).
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""  # "midi", "text", "strokes": a model fine-tunes only within one
    description: ClassVar[str] = ""
    needs_fit: ClassVar[bool] = False  # True: fit() builds state from the whole corpus before encode()
    default_format: ClassVar[str] = ""  # writer used when --format is not given
    length_unit: ClassVar[str] = "tokens"  # what --length counts: "bars", "characters", ...
    generation_options: ClassVar[tuple[str, ...]] = ()  # requests generation_plan takes (-O on `sample`)
    regeneration_options: ClassVar[tuple[str, ...]] = ()  # requests regeneration takes (what to keep, where)

    @dataclass
    class Options:
        pass

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(self.Options, options, f"encoder '{self.name}'")

    # -- the model's view
    @property
    def head(self) -> HeadSpec:
        raise NotImplementedError

    @property
    def input_dim(self) -> int:
        """Feature width for feature encoders; 0 for token encoders (the model embeds ids)."""
        return 0

    bos: Any = None  # token (or, for features, the row) that starts every sequence (None: no start)
    eos: int | None = None  # token that ends every sequence (None: the head tells, or the length ends it)
    pad_value: Any = None  # a row that pads a sequence and counts as data (Sketch-RNN's end rows, to N_max);
    # None: padding is left out of the loss by the mask

    # -- data
    def fit(self, items: Iterable[Any]) -> None:
        """Build vocabulary / normalisation from the corpus (only called when ``needs_fit``)."""

    def encode(self, item: Any) -> list[int]:
        raise NotImplementedError

    def encode_checked(self, item: Any) -> tuple[list[int], EncodeReport]:
        """Encode an item for a model whose vocabulary is already fixed (fine-tuning), counting what had
        to be transposed, mapped or dropped. The default assumes nothing can fall outside."""
        return self.encode(item), EncodeReport()

    def decode(self, seq: Sequence[int]) -> Any:
        raise NotImplementedError

    def augment(self, seq: Sequence[int], rng: random.Random) -> Sequence[int]:
        """Return a randomly varied copy for training (e.g. a transposition) as a list or an array; default:
        unchanged. ``seq`` is a read-only numpy view of the corpus: never change it in place."""
        return seq

    def steps(self, seq: Sequence[int]) -> int:
        """Number of time steps a sequence spans (for NLL per step); default: one per token."""
        return len(seq)

    # -- generation
    def generation_plan(self, length: float | None = None, **request: Any) -> GenerationPlan:
        """How long to generate and under which constraint, for a user's ``--length`` (in the encoder's own
        unit: bars, characters, strokes)."""
        return GenerationPlan(max_tokens=int(length) if length else 512)

    def regeneration(self, item: Any, **request: Any) -> Regeneration:
        """What of an existing item a bidirectional model regenerates, for requests named in
        ``regeneration_options`` (e.g. the voices to keep). Default: this encoder cannot say."""
        raise ComposerError(f"the {self.name} encoder cannot regenerate parts of a piece")

    def primer(self, item: Any) -> list[int]:
        """Tokens that continue from a primer item (without its start and end tokens)."""
        seq = list(self.encode(item))
        if self.eos is not None and seq and seq[-1] == self.eos:
            seq = seq[:-1]
        if self.bos is not None and seq and seq[0] == self.bos:
            seq = seq[1:]  # generation puts the start token in front itself
        return seq

    def summarize(self, item: Any) -> str:
        """A few words about a decoded item for the command's summary line."""
        return ""

    def statistics(self, items: list[Any], reference: list[Any] | None = None) -> dict[str, float]:
        """Descriptive statistics of decoded items (``composer evaluate`` shows them for generated pieces
        beside the corpus's own); with ``reference`` also distances to the reference items. Default: none."""
        return {}

    def example_items(self) -> list[Any]:
        """A few small items, for the automatic contract tests and smoke checks."""
        return []

    # -- looking inside a model (``composer inspect``, :mod:`composer.inspection`); all optional
    def properties(self, tokens: Sequence[int]) -> dict[str, Any]:
        """Named properties of each position of an encoded sequence, for finding the model's cells that track
        them: ``tokens`` as the model reads them (the start token first, no end token needed); returns
        name -> a float sequence with one value per token, the property once that token is read (e.g.
        "inside quotes", "position in bar"). NaN marks a position where a property is undefined (it is
        left out of the correlation there). Default: none."""
        return {}

    def token_labels(self, tokens: Sequence[int]) -> list[str]:
        """A short label per token for a time axis: the character itself for a character encoding (a
        picture shows such text coloured by a cell), a note name for music. Default: the ids."""
        return [str(t) if isinstance(t, int) else "" for t in tokens]

    def time_marks(self, tokens: Sequence[int]) -> dict[int, str]:
        """Positions worth a line on a time axis, with a label (bar starts, line starts). Default: none."""
        return {}

    # -- checkpoint state
    def state_dict(self) -> dict:
        """JSON-safe state; the default stores the options."""
        return {"options": dataclasses.asdict(self.options)}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (options are restored by the constructor)."""


@dataclass
class GenerationPlan:
    """What an encoder asks of the generator: a token budget, optionally a constraint, optionally tokens
    to start from (a request such as the text encoders' ``prime``), and keyword arguments for
    :meth:`Encoder.decode` (requests that change how tokens become an item, such as the MIDI encoders'
    ``tempo`` and ``program``)."""

    max_tokens: int
    constraint: Constraint | None = None
    primer: list[int] = field(default_factory=list)
    decoding: dict[str, Any] = field(default_factory=dict)


@dataclass
class Regeneration:
    """An encoded item and what of it may change: ``tokens`` (the whole sequence, start token first),
    ``free`` [len(tokens)] bool (the positions to resample) and ``allowed`` [len(tokens), vocab] bool (the
    tokens each free position may take)."""

    tokens: list[int]
    free: Any
    allowed: Any


class Constraint:
    """Forces or forbids tokens step by step during batched generation (e.g. harmonization keeps the
    given soprano). One instance serves one generation call.

    A constraint that keeps state per row lists the attributes holding it in ``row_state``: tensors with
    the row on dim 0. Beam search reorders and copies rows through :meth:`select`, which indexes them."""

    row_state: ClassVar[tuple[str, ...]] = ()

    def start(self, batch_size: int, device: Any) -> None:
        """Called once before the first token is chosen."""

    def allowed(self) -> Any:
        """A bool tensor [batch, vocab] of tokens allowed next, or None for no restriction. A row with a
        single True forces that token."""
        return None

    def advance(self, tokens: Any) -> None:
        """Called with the tokens [batch] just chosen."""

    def select(self, index: Any) -> None:
        """Keep the rows ``index`` [new_batch] (a LongTensor; rows may repeat): beam search follows its beams."""
        for name in self.row_state:
            setattr(self, name, getattr(self, name).index_select(0, index))


# ------------------------------------------------------------------------ registered components


@dataclass
class CorpusSource:
    """Where items come from.

    ``prefix`` sources answer to ``PREFIX:NAME`` (``music21:bach``) through ``list``; file readers answer
    to folders and globs through ``suffixes``. ``load`` turns one reference (a path or a name the
    source understands) into a list of items, raising an exception for bad input.
    """

    name: str
    modality: str
    load: Callable[[str], list[Any]]
    list: Callable[[str], list[str]] | None = None
    suffixes: tuple[str, ...] = ()
    description: str = ""


@dataclass
class Generated:
    """One generated sequence and how likely the model finds it."""

    tokens: Any  # the whole sequence: start token, primer, then the new tokens up to the end token (list[int]);
    # for a feature model the rows, a float array [T, D]
    log_likelihood: float  # sum of the model's log-probabilities of the new tokens (nats; unfiltered, T = 1)
    new_tokens: int  # how many tokens were generated after the primer


class Sampler:
    """A generation strategy: owns the loop that turns a primed model into ``n`` sequences.

    Subclasses declare an ``Options`` dataclass (validated from ``-S key value`` and keyword arguments; its
    ``__post_init__`` may raise ComposerError for bad values) and implement :meth:`generate`, which gets a
    :class:`composer.generate.Decoding` (the model, the primer, n, the token budget, the constraint, the
    seed and the steps every strategy needs) and the options, and returns ``n`` :class:`Generated`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    independent_rows: ClassVar[bool] = True  # each sequence is drawn on its own (from the run's seed), so a
    # large request may be made in batches; False (beam search): the n sequences are chosen together, in one run

    @dataclass
    class Options:
        pass

    @property
    def option_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.Options)]

    def options(self, given: dict[str, Any] | None = None, fallback: dict[str, Any] | None = None) -> Any:
        """The options to run with: ``given`` (the user's: every key must be known) over ``fallback`` (a
        style's defaults: keys this sampler does not take are ignored) over the Options defaults."""
        known = set(self.option_names)
        given = {k.replace("-", "_"): v for k, v in (given or {}).items()}
        values = {k.replace("-", "_"): v for k, v in (fallback or {}).items() if k.replace("-", "_") in known}
        parse_options(self.Options, {k: v for k, v in values.items() if k not in given},
                      f"sampler '{self.name}' (a default stored with the style)")
        values.update(given)
        return parse_options(self.Options, values, f"sampler '{self.name}'")

    def generate(self, run: Any, options: Any) -> list[Generated]:
        raise NotImplementedError


@dataclass
class Writer:
    """Writes one decoded item to a file: ``write(item, path)``; ``available()`` says whether the tools it
    needs are installed, or returns the one-line reason they are not."""

    name: str  # the --format value: "mid", "musicxml", "png", "wav", "txt", "abc", "svg"
    modality: str
    suffix: str
    write: Callable[[Any, Path], None]
    available: Callable[[], str | None] = lambda: None
    description: str = ""
    write_grid: Callable[[list, Path], None] | None = None  # all items of a run in one file (a contact sheet)


@dataclass
class Style:
    """What ``--style NAME`` resolves to."""

    name: str
    checkpoint: Path
    description: str = ""
    defaults: dict = field(default_factory=dict)  # sample defaults: temperature, sampler, length, ...
    source: str = ""  # "built-in", a plugin name, or "user"


# --------------------------------------------------------------------------------------- options


def parse_options(cls: type, values: dict[str, Any], owner: str) -> Any:
    """Build an options dataclass from user strings or values, converting to each field's type; an
    unknown key or a bad value is a ComposerError naming ``owner``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise ComposerError(f"unknown option '{key}' for {owner} (known: {known})")
        kwargs[key] = _convert(value, fields[key], owner)
    return cls(**kwargs)


def _convert(value: Any, f: dataclasses.Field, owner: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if not isinstance(value, str):
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        whole = numeric and (isinstance(value, int) or value.is_integer())
        if kind == "float" and numeric:
            return _finite(value if isinstance(value, float) or abs(value) < 1e308 else math.inf, f, owner)
        if (kind == "int" and not whole) or \
                (kind == "float" and not numeric) or (kind == "bool" and not isinstance(value, bool)):
            raise ComposerError(f"option '{f.name}' for {owner} expects {kind}, got {value!r}")
        return int(value) if kind == "int" else value
    try:
        if kind == "bool":
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return _finite(float(value), f, owner)
        if kind.startswith("tuple") or kind.startswith("list"):
            parts = [p for p in value.replace(",", " ").split() if p]
            conv = int if "int" in kind else float if "float" in kind else str
            return tuple(conv(p) for p in parts)
    except ValueError:
        raise ComposerError(f"option '{f.name}' for {owner} expects {kind}, got '{value}'") from None
    return value


def _finite(value: float, f: dataclasses.Field, owner: str) -> float:
    if not math.isfinite(value):
        raise ComposerError(f"option '{f.name}' for {owner} must be a finite number, got {value}")
    return value
