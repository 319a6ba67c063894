"""The library: what every front end (the command line, a notebook, the web page, a benchmark) does.

    import composer
    bach = composer.load("bach")
    pieces = bach.generate(n=4, seed=1, length=8, temperature=0.9)
    bach.write(pieces, "out/", formats=["mid", "png"])
    bach.score(pieces)

Loading a style and merging its defaults, the seed rule, primers, sampler options, decoding, naming and
writing files, scoring, evaluation, training and fine-tuning all live here; the CLI parses and prints.
"""

from __future__ import annotations

import math
import numbers
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from composer.api import MAX_TOKENS, ComposerError, Generated, GenerationPlan, Sampler, Writer, WriteSkipped
from composer.plugins import Registry, get_registry

MAX_OUTPUTS = 10_000  # more pieces than this in one call is a typo, not a request
MAX_SWEEPS = 1_000  # Gibbs sweeps over a piece: DeepBach's own runs take hundreds at most
MAX_SEED = 2**63 - 1  # torch's generators take 64-bit seeds (a latent code's draws use seed + 1)
BATCH = 64  # pieces generated together: a larger -n runs (and the command line writes) batch by batch
DEFAULT_SAMPLER = "ancestral"
FILTER_SAMPLER = "ancestral"  # takes every filter: the sampler for a filter the default sampler lacks


def batch_seed(seed: int, batch: int) -> int:
    """The seed batch ``batch`` of a run draws from: the run's own for the first (so the first 64 pieces of
    ``-n 1000`` are the pieces of ``-n 64``), then one derived from (seed, batch) for each later batch."""
    if batch == 0:
        return seed
    return int(np.random.SeedSequence([seed, batch]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_count(n: Any) -> None:
    if not is_whole(n) or not 1 <= n <= MAX_OUTPUTS:
        raise ComposerError(f"the number of outputs (-n) must be a whole number from 1 to {MAX_OUTPUTS:,}, got {n!r}")


def check_seed(seed: Any) -> None:
    if not is_whole(seed) or not 0 <= seed <= MAX_SEED:
        raise ComposerError(f"seed must be a whole number from 0 to 2**63 - 1 ({MAX_SEED}), got {seed!r}")


def check_folder(folder: str | Path) -> None:
    """Refuse an empty output folder name (it would mean the current folder without saying so)."""
    if not str(folder).strip():
        raise ComposerError("the output folder is empty: give one (-o DIR; -o . for the current folder)")


def new_seed() -> int:
    """A fresh seed for a run the user gave none: small enough to read, type and record in a file name."""
    return random.SystemRandom().randrange(10_000)


def looks_like_path(target: str | Path) -> bool:
    """A Path, or a string with a suffix or a slash, or one naming an existing file; else a style name."""
    return isinstance(target, Path) or bool(Path(target).suffix) or "/" in str(target) or Path(target).exists()


def resolve_checkpoint(target: str | Path, registry: Registry | None = None) -> Path:
    """The checkpoint file of a style name or a path."""
    if looks_like_path(target):
        path = Path(target).expanduser()
        if not path.is_file():
            raise ComposerError(f"checkpoint not found: {target}")
        return path
    return (registry or get_registry()).style(str(target)).checkpoint


def load(target: str | Path, device: str = "auto") -> Session:
    """A style by name (``"bach"``, see ``composer styles``) or a checkpoint file, ready to generate."""
    return Session(target, device=device)


class Pieces(list):
    """Decoded items from one :meth:`Session.generate` call (a list), with how they were made: ``seed``,
    ``sampler`` and its ``options``, the generated ``sequences`` with their log-likelihoods, and for a
    class-conditional model each piece's ``labels``."""

    def __init__(self, items: list, *, seed: int, sampler: str, options: dict, sequences: list[Generated],
                 labels: list[str] | None = None):
        super().__init__(items)
        self.seed, self.sampler, self.options, self.sequences = seed, sampler, options, sequences
        self.labels = labels


@dataclass
class Scores:
    """NLL of items under a model: per token, per time step (as the encoder counts steps), in bits."""

    sequences: int
    tokens: int
    steps: int
    nll_per_token: float
    nll_per_step: float
    bits_per_token: float
    token_accuracy: float  # nan where the model predicts no tokens
    metrics: dict[str, float] = field(default_factory=dict)  # the model's own: accuracy, L_s and L_p, KL, ...
    # the NLL of a step's own tokens, the end tokens left out (a frame's NLL, as music benchmarks count it); nan
    # for an encoder without an end token
    nll_per_step_without_end: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Written:
    """What :meth:`Session.write` wrote: the files, one line per item (names and a summary), how many items
    each format skipped, and warnings (formats that cannot be written here, items a writer refused)."""

    files: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Session:
    """A loaded style or checkpoint: its model (on ``device``), encoder, metadata and generation defaults."""

    def __init__(self, target: str | Path, *, device: str = "auto", registry: Registry | None = None) -> None:
        from composer.checkpoint import load_model
        from composer.training import pick_device

        self.registry = registry or get_registry()
        self.path = resolve_checkpoint(target, self.registry)
        style_defaults: dict = {}
        if looks_like_path(target):
            self.name = self.path.parent.name if self.path.stem == "model" else self.path.stem
        else:
            self.name, style_defaults = str(target), dict(self.registry.styles[str(target)].defaults)
        self.device = pick_device(device)
        self.model, self.encoder, self.meta = load_model(self.path, self.registry, self.device)
        self.defaults: dict = {**self.meta.get("sampler_defaults", {}), **style_defaults}
        self.labels: list[str] = list(self.meta.get("labels") or [])  # a class-conditional model's labels
        self.latent_size: int = int(getattr(self.model.config, "latent_size", 0) or 0) \
            if hasattr(self.model, "encode") else 0  # > 0: an autoencoder (encode, decode, interpolate)
        # a bidirectional model (family gibbs) regenerates parts of a piece instead of writing new ones
        self.regenerates: bool = bool(getattr(self.model, "regenerates", False))

    def __repr__(self) -> str:
        return f"<composer.Session {self.name}: {self.encoder.name} on {self.device}>"

    # -- generation
    def sampler(self, name: str | None = None, options: dict[str, Any] | None = None) -> Sampler:
        """The named sampler, else the style's default one; without a name, a filter among ``options`` that the
        default sampler lacks (``top_k`` for a style that samples with ``top-p``) picks the ``ancestral``
        sampler, which applies every filter. A named sampler without an option given is a clear error."""
        wanted = name or self.defaults.get("sampler", DEFAULT_SAMPLER)
        if not isinstance(wanted, str):
            where = "" if name else f" (the default stored with {self.name})"
            raise ComposerError(f"a sampler is named by a string (see `composer samplers`), got {wanted!r}{where}")
        chosen = self.registry.sampler(wanted)
        lacking = [key.replace("-", "_") for key in options or {} if key.replace("-", "_") not in chosen.option_names]
        if not lacking:
            return chosen
        broad = self.registry.samplers.get(FILTER_SAMPLER)
        if name is None and broad is not None and all(key in broad.option_names for key in lacking):
            return broad
        takes = sorted(s for s, smp in self.registry.samplers.items() if lacking[0] in smp.option_names)
        if not takes:
            return chosen  # an option no sampler knows: the sampler's own message lists what it takes
        raise ComposerError(f"sampler '{chosen.name}' takes no {lacking[0]} (its options: "
                            f"{', '.join(chosen.option_names) or 'none'}; samplers that take it: {', '.join(takes)})")

    def plan(self, length: float | None = None, requests: dict[str, Any] | None = None,
             most: int | None = MAX_TOKENS) -> GenerationPlan:
        """The encoder's plan for a length (in its ``length_unit``; default: the style's) and requests (``-O``:
        only those the encoder declares; a style's defaults may set some, e.g. ``bach``'s ``voicing``). The length
        must be a finite number > 0 that asks for at least one token and at most ``most`` per piece (``None``: a
        front end checks its own, lower limit)."""
        requests = {key.replace("-", "_"): value for key, value in (requests or {}).items()}
        known = self.encoder.generation_options
        requests = {**{k: v for k, v in self.defaults.items() if k in known}, **requests}
        unknown = [key for key in requests if key not in known]
        if unknown:
            raise ComposerError(f"unknown option '{unknown[0]}' for generating with {self.encoder.name} "
                                f"(known: {', '.join(known) or 'none'})")
        unit = self.encoder.length_unit
        given = length is not None
        where = "" if given else f" (the default length stored with {self.name}; give a length)"
        if not given:
            length = self.defaults.get("length")
        if length is not None and (isinstance(length, bool) or not isinstance(length, numbers.Real)
                                   or not 0 < length < math.inf):
            raise ComposerError(f"length must be a finite number > 0 ({unit}), got {length!r}{where}")
        try:
            plan = self.encoder.generation_plan(length=length, **requests)
        except ComposerError as exc:
            if given or length is None:
                raise
            self.encoder.generation_plan(length=None, **requests)  # the requests' own error, if theirs
            raise ComposerError(f"{exc}{where}") from None
        if plan.max_tokens < 1:
            raise ComposerError(f"length {length} {unit} is too short to generate anything{where}")
        if most is not None and plan.max_tokens > most:
            raise ComposerError(f"that asks for up to {plan.max_tokens:,} tokens per piece; the most is "
                                f"{most:,} (length is in {unit}){where}")
        return plan

    def primer(self, primer: Any) -> Any:
        """Tokens to continue from: a file (a Path) read by the corpus readers of the model's modality, or an
        item (a PrettyMIDI for music, a str for text)."""
        if isinstance(primer, Path):
            primer = self._item(primer, "primer ")
        try:
            tokens = self.encoder.primer(primer)
        except ComposerError:
            raise
        except Exception:  # an item the encoder cannot read: a str for a midi model, say
            raise ComposerError(f"{self.name} is a {self.encoder.modality} model: it cannot continue a primer of "
                                f"type {type(primer).__name__}; give a file (a Path) or a {self.encoder.modality} "
                                "item") from None
        return tokens

    def generate(self, n: int = 1, *, seed: int | None = None, length: float | None = None,
                 sampler: str | None = None, primer: Any = None, requests: dict[str, Any] | None = None,
                 label: str | None = None, latent: Any = None, like: Any = None,
                 progress: Callable[[int, int], None] | None = None, **options: Any) -> Pieces:
        """``n`` new pieces, decoded (PrettyMIDI for music, str for text). ``seed``: the same seed and settings
        give the same pieces (default: a fresh one, kept in ``pieces.seed``); ``length`` in the encoder's
        unit; ``sampler``: a registered sampler (see ``composer samplers``); ``primer``: a file (Path) or an
        item to continue; ``requests``: the encoder's generation requests (e.g. ``{"melody": ...}``);
        ``options``: the sampler's options (``temperature=0.9``, ``top_p=0.95``, ``beam_size=8``, ...).

        Class-conditional models take a ``label`` (see ``labels``; default: one drawn per piece from the seed).
        Autoencoders take ``latent`` codes ([latent_size] or [n, latent_size]; default: drawn from the prior)
        or ``like``: an item or file whose code's neighbourhood the pieces are drawn from (variations).
        ``progress(steps, max_tokens)``, if given, is called after every generation step (results do not change).
        The pieces are made in batches of ``BATCH`` (see :meth:`batches`, which hands each over as it is done)."""
        parts = list(self.batches(n, seed=seed, length=length, sampler=sampler, primer=primer, requests=requests,
                                  label=label, latent=latent, like=like, progress=progress, **options))
        first = parts[0]
        labels = None if first.labels is None else [name for part in parts for name in part.labels]
        return Pieces([item for part in parts for item in part], seed=first.seed, sampler=first.sampler,
                      options=first.options, sequences=[g for part in parts for g in part.sequences], labels=labels)

    def batches(self, n: int = 1, *, seed: int | None = None, length: float | None = None,
                sampler: str | None = None, primer: Any = None, requests: dict[str, Any] | None = None,
                label: str | None = None, latent: Any = None, like: Any = None,
                progress: Callable[[int, int], None] | None = None, batch_size: int = BATCH,
                **options: Any) -> Iterator[Pieces]:
        """:meth:`generate`'s pieces, ``batch_size`` at a time, each batch handed over as soon as it is done (a
        front end writes it and frees it: memory stays that of one batch). Every setting is checked here,
        before the first batch starts. Batch ``b`` draws from :func:`batch_seed` (the run's seed for the
        first), and labels and latent codes are drawn for the whole run from the run's seed: the first
        ``batch_size`` pieces of ``n`` are the pieces of ``batch_size`` with the same seed. A sampler that chooses its
        sequences together (beam search) runs all ``n`` in one batch."""
        if self.regenerates:
            raise ComposerError(f"{self.name} regenerates parts of an existing piece rather than writing new ones: "
                                "use `composer reharmonize` (Session.regenerate)")
        check_count(n)
        seed = new_seed() if seed is None else seed
        check_seed(seed)
        if not is_whole(batch_size) or batch_size < 1:
            raise ComposerError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        chosen = self.sampler(sampler, options)
        opts = chosen.options(options, self.defaults)
        plan = self.plan(length, requests)
        tokens = self.primer(primer) if primer is not None else []
        if len(tokens) and len(plan.primer):
            raise ComposerError("give one primer: a primer file or item, or a prime request, not both")
        tokens = tokens if len(tokens) else plan.primer
        if len(tokens) > MAX_TOKENS:
            raise ComposerError(f"the primer is {len(tokens):,} tokens long; the most is {MAX_TOKENS:,}: give a "
                                "shorter one")
        inputs = self._inputs(n, seed, label, latent, like)
        size = batch_size if chosen.independent_rows else n
        return self._batches(n, size, seed, chosen, opts, plan, tokens, inputs, progress, length, requests)

    def _batches(self, n: int, size: int, seed: int, chosen: Sampler, opts: Any, plan: GenerationPlan, tokens: Any,
                 inputs: dict[str, Any], progress: Callable[[int, int], None] | None, length: float | None,
                 requests: dict[str, Any] | None) -> Iterator[Pieces]:
        from composer.generate import generate

        for batch, first in enumerate(range(0, n, size)):
            rows = min(size, n - first)
            if batch:
                plan = self.plan(length, requests)  # a constraint serves one generation call
            part = {key: value[first: first + rows] if value.shape[0] == n else value for key, value in inputs.items()}
            sequences = generate(self.model, self.encoder, chosen, n=rows, max_tokens=plan.max_tokens,
                                 primer=tokens, constraint=plan.constraint, seed=batch_seed(seed, batch),
                                 device=self.device, options=opts, inputs=part, progress=progress)
            items = self._titled([self.encoder.decode(seq.tokens, **plan.decoding) for seq in sequences])
            labels = None
            if "cond" in part:
                labels = [self.labels[i] for i in part["cond"].expand(rows).tolist()]
                for item, name in zip(items, labels):
                    if hasattr(item, "label"):  # a drawing knows what it is meant to be (grids show it)
                        item.label = name
            yield Pieces(items, seed=seed, sampler=chosen.name, options=dict(opts.__dict__), sequences=sequences,
                         labels=labels)

    def regenerate(self, source: Any, n: int = 1, *, seed: int | None = None, requests: dict[str, Any] | None = None,
                   sweeps: int = 20, temperature: float | None = None, start_temperature: float = 1.5,
                   progress: Callable[[int, int], None] | None = None) -> Pieces:
        """``n`` versions of an existing piece with some of it regenerated by a bidirectional model (family
        ``gibbs``, DeepBach's Gibbs sampling); the rest is kept as it is. ``source``: a file (Path or str) or
        an item; ``requests``: what to keep and where, the encoder's ``regeneration_options`` (``satb``:
        ``keep="soprano,bass"``, ``bars="5-8"``); ``sweeps``: passes over the free positions; the
        temperature falls from ``start_temperature`` to ``temperature`` (default: the style's, else 0.8)
        over them. ``progress(sweep, sweeps)`` is called after each sweep. The same seed gives the same
        pieces; ``pieces.sequences`` holds each one's pseudo-log-likelihood (of every regenerated position
        given all the others) and the number of positions regenerated."""
        import torch

        from composer.generate import generation_threads
        from composer.gibbs import resample

        if not self.regenerates:
            raise ComposerError(f"{self.name} cannot regenerate parts of a piece: it is a {self.model.config.family} "
                                "model, not a bidirectional one (family gibbs)")
        check_count(n)
        seed = new_seed() if seed is None else seed
        check_seed(seed)
        temperature = float(self.defaults.get("temperature", 0.8) if temperature is None else temperature)
        if not is_whole(sweeps) or not 1 <= sweeps <= MAX_SWEEPS or not 0 <= temperature <= 10 \
                or not 0 <= start_temperature <= 10:
            raise ComposerError(f"sweeps must be a whole number from 1 to {MAX_SWEEPS:,} and temperatures between 0 "
                                f"and 10; got sweeps {sweeps!r}, temperature {temperature!r}, start temperature "
                                f"{start_temperature!r}")
        requests = {key.replace("-", "_"): value for key, value in (requests or {}).items() if value is not None}
        known = self.encoder.regeneration_options
        unknown = [key for key in requests if key not in known]
        if unknown:
            raise ComposerError(f"unknown option '{unknown[0]}' for regenerating with {self.encoder.name} "
                                f"(known: {', '.join(known) or 'none'})")
        item = self._item(Path(source) if isinstance(source, str) else source)
        plan = self.encoder.regeneration(item, **requests)
        frame, start = self.model.frame, 1 if self.encoder.bos is not None else 0
        tokens = torch.as_tensor(np.asarray(plan.tokens, dtype=np.int64))
        if (len(tokens) - start) % frame:
            raise ComposerError(f"the {self.encoder.name} encoder's sequence does not come in frames of {frame}")
        steps = (len(tokens) - start) // frame
        free = torch.as_tensor(np.asarray(plan.free, dtype=bool))[start:].view(steps, frame)
        allowed = torch.as_tensor(np.asarray(plan.allowed, dtype=bool))[start:].view(steps, frame, -1)
        frames = tokens[start:].view(1, steps, frame).expand(n, -1, -1)
        with generation_threads(self.device, n):
            grid, likelihood = resample(self.model, frames, free, allowed, sweeps=sweeps, temperature=temperature,
                                        start_temperature=start_temperature,
                                        generator=torch.Generator().manual_seed(seed), progress=progress)
        changed = int(free.sum())
        sequences = [Generated([*plan.tokens[:start], *row.reshape(-1).tolist()], float(ll), changed)
                     for row, ll in zip(grid.cpu(), likelihood.tolist())]
        items = self._titled([self.encoder.decode(g.tokens) for g in sequences])
        options = {"sweeps": sweeps, "temperature": temperature, "start_temperature": start_temperature}
        return Pieces(items, seed=seed, sampler="gibbs", options=options, sequences=sequences)

    def _titled(self, items: list[Any]) -> list[Any]:
        """``items`` with the style's name as title where an item has one (a score's), for its writers."""
        for item in items:
            if isinstance(getattr(item, "title", None), str):  # an item that has a title (not str.title)
                item.title = self.name
        return items

    def _inputs(self, n: int, seed: int, label: str | None, latent: Any, like: Any) -> dict[str, Any]:
        """The conditioning of ``n`` pieces: class ids and latent codes, drawn from ``seed`` where not given."""
        import torch

        inputs: dict[str, Any] = {}
        if like is not None:
            if latent is not None:
                raise ComposerError("give a latent code or an item to draw variations of, not both")
            item = self._item(like)
            if label is None and self.labels and getattr(item, "label", None) in self.labels:
                label = item.label
            mu, logvar = self._posterior([item])
            noise = torch.randn((n, self.latent_size), generator=torch.Generator().manual_seed(seed))
            latent = mu + torch.exp(0.5 * logvar) * noise  # samples of the code's posterior: variations
        if self.labels:
            if label is not None:
                if label not in self.labels:
                    shown = " ".join(self.labels[:40]) + (" ..." if len(self.labels) > 40 else "")
                    raise ComposerError(f"unknown label {label!r} for {self.name} (labels: {shown})")
                inputs["cond"] = torch.tensor([self.labels.index(label)])
            else:
                pick = random.Random(seed)
                inputs["cond"] = torch.tensor([pick.randrange(len(self.labels)) for _ in range(n)])
        elif label is not None:
            raise ComposerError(f"{self.name} is not conditioned on labels; leave out the label")
        if self.latent_size:
            if latent is None:
                latent = torch.randn((n, self.latent_size), generator=torch.Generator().manual_seed(seed + 1))
            latent = torch.as_tensor(latent, dtype=torch.float32).reshape(-1, self.latent_size)
            if latent.shape[0] not in (1, n):
                raise ComposerError(f"give one latent code or {n}, not {latent.shape[0]}")
            inputs["latent"] = latent
        elif latent is not None:
            raise ComposerError(f"{self.name} has no latent code (it is not an autoencoder)")
        return inputs

    # -- the latent space of an autoencoder
    def _need_latent(self) -> None:
        if not self.latent_size:
            raise ComposerError(f"{self.name} has no latent code: encode, like and interpolate need an autoencoder "
                                "(a model trained with family 'vae')")

    def _item(self, item: Any, what: str = "") -> Any:
        """An item, or the first item of a file read by the corpus readers of the model's modality."""
        if not isinstance(item, str | Path):
            return item
        from composer.data import resolve

        src, ref = resolve(str(item), self.encoder.modality, self.registry.corpora)[0]
        try:
            items = src.load(ref)
        except Exception as exc:
            raise ComposerError(f"cannot read {what}{item}: {exc}") from None
        if not items:
            raise ComposerError(f"{what}{item} holds nothing usable")
        return items[0]

    def _posterior(self, items: list) -> tuple[Any, Any]:
        """The codes' means and log-variances [len(items), latent_size] of items (or files)."""
        import numpy as np
        import torch

        from composer.data import Sequences, padded_batches

        self._need_latent()
        sequences = []
        for item in items:
            seq = np.asarray(self.encoder.encode_checked(self._item(item))[0])
            if len(seq) < 3:
                raise ComposerError("an item to encode is empty or too long for this model")
            sequences.append(seq)
        mus, logvars = [None] * len(items), [None] * len(items)
        with torch.no_grad():
            for batch in padded_batches(Sequences.from_arrays(sequences), 64):
                x = batch.inputs.to(self.device)
                x = x if x.is_floating_point() else x.long()
                targets, mask = x[:, 1:], batch.mask[:, 1:].to(self.device)
                mu, logvar = self.model.encode(targets, self.model.sequence_lengths(targets, mask))
                for row, index in enumerate(batch.index.tolist()):
                    mus[index], logvars[index] = mu[row].cpu(), logvar[row].cpu()
        return torch.stack(mus), torch.stack(logvars)

    def encode(self, item: Any) -> Any:
        """The latent code (the posterior's mean, a float32 numpy array [latent_size]) of an item or file."""
        return self._posterior([item])[0][0].numpy()

    def decode(self, z: Any, n: int = 1, **kwargs: Any) -> Pieces:
        """``n`` pieces drawn from one latent code ``z`` (or one piece per code of ``z`` [k, latent_size]);
        ``kwargs`` as for :meth:`generate` (seed, length, sampler, label, temperature, ...)."""
        import numpy as np

        self._need_latent()
        z = np.asarray(z, dtype=np.float32).reshape(-1, self.latent_size)
        return self.generate(max(n, len(z)) if len(z) == 1 else len(z), latent=z, **kwargs)

    def interpolate(self, a: Any, b: Any, n: int = 8, **kwargs: Any) -> Pieces:
        """``n`` pieces morphing from item (or file, or code) ``a`` to ``b``: their codes spherically
        interpolated, endpoints included, decoded together with the same settings."""
        import numpy as np
        import torch

        from composer.vae import interpolate

        self._need_latent()
        if n < 2:
            raise ComposerError(f"an interpolation needs at least 2 steps, got {n}")
        ends = [torch.as_tensor(np.asarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else
                torch.as_tensor(self.encode(x)) for x in (a, b)]
        if kwargs.get("label") is None and self.labels:
            first = self._item(a) if not isinstance(a, np.ndarray) else None
            if getattr(first, "label", None) in self.labels:
                kwargs["label"] = first.label
        return self.generate(n, latent=interpolate(ends[0], ends[1], n), **kwargs)

    # -- files
    def writers(self, formats: str | list[str] | None = None) -> tuple[list[Writer], list[str]]:
        """The writers for ``formats`` (a list or a comma-separated string; default: the encoder's), and a
        warning for each one that cannot write here (a tool it needs is missing)."""
        if isinstance(formats, str):
            formats = formats.split(",")
        wanted = [f.strip() for f in (formats or self.encoder.default_format.split(",")) if f.strip()]
        if not wanted:
            raise ComposerError(f"no output format given and no default for {self.encoder.modality}")
        writers, warnings = [], []
        for fmt in dict.fromkeys(wanted):
            writer = self.registry.writer(self.encoder.modality, fmt)
            missing = writer.available()
            if missing:
                warnings.append(f"skipping {fmt}: {missing}")
                continue
            writers.append(writer)
        if not writers:
            raise ComposerError("none of the requested formats can be written here" +
                                (f" ({warnings[0]})" if len(warnings) == 1 else ""))
        return writers, warnings

    def stem(self, seed: int | None = None, prefix: str | None = None) -> str:
        """How output files are named: ``NAME-SEED`` (``NAME-harmony-SEED`` with ``prefix="NAME-harmony"``)."""
        base = prefix or self.name
        return base if seed is None else f"{base}-{seed}"

    def targets(self, count: int, folder: str | Path, writers: list[Writer], stem: str, first: int = 1,
                total: int | None = None) -> list[list[Path]]:
        """The file names ``write`` uses for ``count`` items numbered from ``first``: ``STEM-I.SUFFIX``, I
        zero-padded to the width of ``total`` (the run's size; default the last number) so that ``-10`` sorts
        after ``-2``."""
        check_folder(folder)
        width = len(str(total or first + count - 1))
        return [[Path(folder) / f"{stem}-{i:0{width}d}{w.suffix}" for w in writers]
                for i in range(first, first + count)]

    def check_free(self, paths: list[list[Path]], force: bool = False) -> None:
        """Refuse to overwrite an existing file unless ``force``."""
        existing = [p for row in paths for p in row if p.exists()]
        if existing and not force:
            which = f"{existing[0]} and {len(existing) - 1} more file(s) already exist" if len(existing) > 1 else \
                f"{existing[0]} already exists"
            raise ComposerError(f"{which}; use --force (force=True) to overwrite, or another output folder or seed")

    def write(self, items: list, folder: str | Path = ".", formats: str | list[str] | None = None, *,
              stem: str | None = None, force: bool = False, first: int = 1, total: int | None = None,
              grids: bool = True) -> Written:
        """Decode nothing, write everything: each item in each format as ``STEM-I.SUFFIX`` in ``folder``
        (``STEM`` defaults to ``NAME-SEED`` for pieces from :meth:`generate`), I counting from ``first``
        (``total``: the whole run's size, for a run written batch by batch). Existing files are never
        overwritten unless ``force``; a writer that refuses one item skips it and the rest go on. ``grids``:
        also the files that lay out all the items in one (see :meth:`grid_targets`)."""
        writers, warnings = self.writers(formats)
        stem = stem or self.stem(getattr(items, "seed", None))
        paths = self.targets(len(items), folder, writers, stem, first, total)
        grids = grids and len(items) > 1
        grid_paths = [p for p in self.grid_targets(folder, writers, stem) if p is not None] if grids else []
        self.check_free(paths + [grid_paths], force)
        Path(folder).mkdir(parents=True, exist_ok=True)
        written = Written(warnings=warnings)
        for item, row in zip(items, paths):
            names = []
            for writer, path in zip(writers, row):
                try:
                    writer.write(item, path)
                except WriteSkipped as exc:
                    path.unlink(missing_ok=True)
                    written.warnings.append(f"not writing {path.name}: {exc}")
                    written.skipped[writer.name] = written.skipped.get(writer.name, 0) + 1
                    continue
                written.files.append(path)
                names.append(path.name)
            if names:  # an item no writer took is in the warnings
                summary = self.encoder.summarize(item)
                written.lines.append(", ".join(names) + (f" ({summary})" if summary else ""))
        if grids:
            grid = self.write_grids(items, folder, formats, stem=stem, force=force)
            written.files += grid.files
            written.lines += grid.lines
        return written

    def write_grids(self, items: list, folder: str | Path, formats: str | list[str] | None = None, *, stem: str,
                    force: bool = False) -> Written:
        """Only the files that lay out all ``items`` in one (a contact sheet of drawings; see
        :meth:`grid_targets`), for a run whose items were written batch by batch."""
        writers, warnings = self.writers(formats)
        targets = self.grid_targets(folder, writers, stem)
        self.check_free([[p for p in targets if p is not None]], force)
        written = Written(warnings=warnings)
        for writer, path in zip(writers, targets):
            if path is not None:
                Path(folder).mkdir(parents=True, exist_ok=True)
                writer.write_grid(list(items), path)
                written.files.append(path)
                written.lines.append(f"{path.name} (all {len(items)} in one {writer.name})")
        return written

    def grid_targets(self, folder: str | Path, writers: list[Writer], stem: str) -> list[Path | None]:
        """Where writers that lay out a whole run in one file (a grid of drawings) put it: ``STEM-grid.SUFFIX``."""
        return [Path(folder) / f"{stem}-grid{w.suffix}" if w.write_grid is not None else None for w in writers]

    # -- a look inside
    def inspect(self, primer: Any = None, *, prime: str | None = None, max_steps: int = 2000, state: str = "c") -> Any:
        """The model's activity over a primer (a file as a Path, or an item; or ``prime`` text for a text
        style) read teacher-forced: a :class:`composer.inspection.Inspection` (cells correlated with the
        encoder's properties, gate saturation, ``picture()`` as PNG bytes). At most ``max_steps`` positions."""
        from composer.inspection import inspect_session

        return inspect_session(self, primer, prime=prime, max_steps=max_steps, state=state)

    # -- scoring
    def score(self, items: list, batch_size: int = 16) -> Scores:
        """NLL of the items under the model (nats per token and per time step). Pieces from :meth:`generate`
        are scored as the tokens generated; other items are encoded first (fitted into the vocabulary)."""
        if isinstance(items, Pieces):
            sequences, labels = [g.tokens for g in items.sequences], items.labels
        else:
            sequences = [self.encoder.encode_checked(item)[0] for item in items]
            labels = [getattr(item, "label", None) for item in items]
        return self.score_sequences(sequences, batch_size, labels=self.label_ids(labels) if self.labels else None)

    def score_sequences(self, sequences: Any, batch_size: int = 16, labels: Any = None,
                        pad_to: int = 0, progress: bool = False) -> Scores:
        """Scores of encoded sequences (``labels``: their class ids, for a class-conditional model); with the
        encoder's ``pad_value``, sequences are padded with it (to ``pad_to`` rows) and the padding counts.
        Batches hold at most ``batch_size`` pieces of similar length and ``EVAL_POSITIONS`` padded positions
        (a very long piece is scored alone, in chunks carrying the state); ``progress``: a bar on stderr when
        there is much to score."""
        from tqdm import tqdm

        from composer.data import Sequences
        from composer.training import Evaluation, evaluate_sequences

        if not isinstance(sequences, Sequences):
            keep = [i for i, s in enumerate(sequences) if len(s) > 1]
            labels = None if labels is None else [labels[i] for i in keep]
            sequences = Sequences.from_arrays([sequences[i] for i in keep]) if keep else []
        if not len(sequences):
            raise ComposerError("nothing to score: every item is shorter than two tokens")
        if labels is None and self.labels:
            raise ComposerError(f"{self.name} is conditioned on labels: score items that carry one")
        ids = None if labels is None else np.asarray(labels, dtype=np.int64)
        lengths = sequences.lengths
        result = Evaluation()
        with tqdm(total=int(lengths.sum()), unit="token", unit_scale=True, desc="scoring", leave=False,
                  disable=not progress or int(lengths.sum()) < SHOW_SCORING) as bar:
            for group in score_groups(lengths, batch_size, pad_to):
                part = evaluate_sequences(self.model, sequences[group], self.device, "fp32", batch_size=len(group),
                                          pad_value=self.encoder.pad_value, pad_to=pad_to,
                                          eos=self.encoder.eos if sequences.is_tokens else None,
                                          labels=None if ids is None else ids[group])
                result.loss_sum += part.loss_sum
                result.count += part.count
                for name, (total, count) in part.sums.items():
                    old = result.sums.get(name, [0.0, 0])
                    result.sums[name] = [old[0] + total, old[1] + count]
                bar.update(int(lengths[group].sum()))
        # token views are int16 in the store: python ints, so that an encoder's arithmetic cannot overflow
        steps = sum(self.encoder.steps(seq.tolist() if sequences.is_tokens else seq) for seq in sequences)
        per_token = result.loss
        accuracy = result.metric("accuracy")
        without_end = result.sums.get("nll_without_end")
        return Scores(len(sequences), result.count, steps, per_token, result.loss_sum / max(1, steps),
                      per_token / math.log(2), math.nan if accuracy is None else accuracy, result.metrics(),
                      math.nan if without_end is None else without_end[0] / max(1, steps))

    def held_out(self, corpus: str | None = None, workers: int | None = None) -> HeldOut:
        """The sequences to evaluate on and what they are: ``corpus`` whole, or by default the held-out split
        of the training corpus recorded in the checkpoint (only those pieces are read)."""
        from composer.data import load_corpus, short_source, split, split_index

        prov = self.meta.get("provenance") or {}
        source = corpus or prov.get("corpus")
        if not source:
            raise ComposerError("this checkpoint records no training corpus; give a corpus to score")
        valid = prov.get("valid") or []
        if source == prov.get("corpus") and valid and valid[0].startswith("@corpus:"):
            source, valid = valid[0].split(":", 1)[1], []
        recorded = source == prov.get("corpus") and valid
        only = valid if recorded and not valid[0].startswith("@") else None
        data = load_corpus(source, self.encoder, self.registry.corpora, fitted=True, workers=workers, only=only)
        if recorded and "valid" in data.splits:
            # the held-out split was the dataset's own: it has a test split to report on, as its papers do
            data, recorded = load_corpus(source, self.encoder, self.registry.corpora, fitted=True, workers=workers), []
        if recorded:
            _, sequences, _ = split(data, 0.1, 0, valid_names=valid)
            part = split_index(data, 0.1, 0, valid_names=valid)
            keep = part.train if part.tail is not None else part.valid  # a tail split scores every piece's end
            which = f"{short_source(source)}, the held-out split recorded in the checkpoint"
        else:
            # a dataset's own test split is what it is evaluated on, where it has one
            test = [i for i, s in enumerate(data.splits) if s == "test"]
            keep = test or list(range(len(data.names)))
            sequences = data.sequences[np.asarray(keep, dtype=np.int64)] if test else data.sequences
            which = f"{short_source(source)}, {'its test split' if test else 'all of it'}"
        return HeldOut(sequences, self.label_ids([data.labels[i] for i in keep]), which, [data.names[i] for i in keep])

    def label_ids(self, labels: list[str | None]) -> Any:
        """Class ids of item labels for a class-conditional model (None for another model); an unknown or
        missing label is an error."""
        from composer.data import class_ids

        return class_ids(labels, self.labels, self.name) if self.labels else None

    def pad_length(self) -> int:
        """Rows every sequence is padded to when scored, for data padded with a counted end value: the
        encoder's maximum length plus the start and end rows (Sketch-RNN's N_max), else 0."""
        if self.encoder.pad_value is None:
            return 0
        return int(getattr(self.encoder.options, "max_length", 0) or 0) + 2

    def rank(self, source: str | Path, workers: int | None = None) -> list[tuple[str, float]]:
        """Anomaly scores: the items of ``source`` (a file, folder or corpus) with the model's loss per step on
        each, most unlikely first."""
        from composer.data import load_corpus
        from composer.training import evaluate_sequences

        data = load_corpus(str(source), self.encoder, self.registry.corpora, fitted=True, workers=workers,
                           use_cache=False)
        result = evaluate_sequences(self.model, data.sequences, self.device, "fp32", pad_value=self.encoder.pad_value,
                                    labels=self.label_ids(data.labels), per_sequence=True)
        scores = [(name, total / max(1, count)) for name, (total, count) in zip(data.names, result.per_sequence)]
        return sorted(scores, key=lambda pair: -pair[1])


EVAL_POSITIONS = 1 << 20  # padded positions scored in one batch
SHOW_SCORING = 200_000  # positions from which scoring shows a progress bar


def score_groups(lengths: Any, batch_size: int, pad_to: int = 0) -> Iterator[Any]:
    """Indices of the pieces scored together, shortest first: at most ``batch_size`` of similar length whose
    padded size (pieces x the longest, or ``pad_to``) stays within ``EVAL_POSITIONS``; a longer piece alone."""
    group: list[int] = []
    for index in np.argsort(lengths, kind="stable").tolist():
        longest = max(int(lengths[index]), pad_to)
        if group and (len(group) == batch_size or (len(group) + 1) * longest > EVAL_POSITIONS):
            yield np.asarray(group, dtype=np.int64)
            group = []
        group.append(index)
    if group:
        yield np.asarray(group, dtype=np.int64)


COMPANION = "{}-reharm"  # the style that regenerates for a style NAME whose own model cannot


def regenerating(target: str | Path, registry: Registry | None = None) -> str | Path:
    """The style or checkpoint that regenerates parts of pieces for ``target``: ``target`` itself where its
    model is bidirectional (family gibbs), else its companion style ``NAME-reharm`` where one is installed
    (the shipped ``bach`` has ``bach-reharm``); else ``target``, whose session then says it cannot."""
    from composer.checkpoint import read_meta

    registry = registry or get_registry()
    if looks_like_path(target):
        return target
    if read_meta(resolve_checkpoint(target, registry)).get("model", {}).get("family") == "gibbs":
        return target
    companion = COMPANION.format(target)
    return companion if companion in registry.styles else target


@dataclass
class HeldOut:
    """Sequences to evaluate on, their class ids (class-conditional models), what they are, and their names."""

    sequences: Any
    labels: Any
    description: str
    names: list[str]


# ------------------------------------------------------------------------------------ evaluation


def evaluate(target: str | Path, *, corpus: str | None = None, samples: int = 64, seed: int = 0,
             workers: int | None = None, device: str = "auto") -> dict[str, Any]:
    """Score a style or checkpoint on held-out data (see :meth:`Session.held_out`) and, with ``samples``,
    compare statistics of that many generated pieces (the style's default sampler) with the corpus's own."""
    if not is_whole(samples) or not 0 <= samples <= MAX_OUTPUTS:
        raise ComposerError(f"samples must be a whole number from 0 to {MAX_OUTPUTS:,}, got {samples!r}")
    check_seed(seed)
    session = load(target, device=device)
    held = session.held_out(corpus, workers)
    scores = session.score_sequences(held.sequences, labels=held.labels, pad_to=session.pad_length(), progress=True)
    results: dict[str, Any] = {"data": held.description, "unit": "position" if session.encoder.input_dim else "token",
                               **scores.as_dict()}
    if "offset_loss" in scores.metrics:  # Sketch-RNN's numbers: L_R over N_max positions, and L_KL
        results["sketch_rnn"] = {"L_R": scores.nll_per_token, "L_s": scores.metrics["offset_loss"],
                                 "L_p": scores.metrics["pen_loss"], "L_KL": scores.metrics.get("kl"),
                                 "N_max": session.pad_length() - 1}
    if samples > 0 and not session.regenerates:
        encoder = session.encoder
        pieces = session.generate(samples, seed=seed)
        reference = [encoder.decode(seq.tolist() if held.sequences.is_tokens else np.array(seq))
                     for seq in held.sequences]
        results["statistics"] = {"corpus": encoder.statistics(reference),
                                 "generated": encoder.statistics(list(pieces), reference)}
    return results


# ------------------------------------------------------------------------------ training settings

def read_config(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ComposerError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposerError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ComposerError(f"{path} is not valid TOML: {exc}") from None


def train_config(config: str | Path | None = None, settings: dict[str, Any] | None = None,
                 encoder_options: dict[str, Any] | None = None, *, defaults: dict[str, Any] | None = None,
                 default_output: str | None = None):
    """A TrainConfig from, in rising priority: ``defaults``, the TOML file ``config``, ``settings`` (training
    settings; model-shape ones such as ``layers`` may be given at the top level) and ``encoder_options``.
    A ``None`` setting means "not given"."""
    from composer.training import MODEL_SETTINGS, TrainConfig

    values: dict[str, Any] = {**(defaults or {}), **(read_config(config) if config else {})}
    for key in ("corpus", "valid_corpus"):
        if isinstance(values.get(key), list):  # a TOML list of sources is the same as one comma-joined string
            values[key] = ",".join(str(part) for part in values[key])
    values["model"] = dict(values.get("model") or {})
    values["encoder_options"] = dict(values.get("encoder_options") or {})
    for key, value in (settings or {}).items():
        if value is None:
            continue
        if key in MODEL_SETTINGS:
            values["model"][key] = value
        elif key == "model":
            values["model"].update(value)
        else:
            values[key] = value
    values["encoder_options"].update(encoder_options or {})
    if not values.get("output"):
        values["output"] = default_output or str(
            Path("runs") / (Path(config).stem if config else values.get("encoder", "run")))
    return TrainConfig.from_dict(values)


def given_settings(config: str | Path | None, settings: dict[str, Any]) -> set[str]:
    """The training settings a caller chose (in the recipe ``config`` or as non-None ``settings``): what a
    resumed run checks against the run it continues. Model and encoder options are compared key by key."""
    from composer.training import MODEL_SETTINGS

    return {key for key in [*(read_config(config) if config else {}), *settings]
            if settings.get(key, "") is not None and key not in MODEL_SETTINGS}


def train(config: str | Path | None = None, *, resume: bool = False, force: bool = False,
          encoder_options: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    """Train a model from scratch: ``config`` a recipe (TOML) and/or settings (``encoder="polyphony",
    corpus="music21:bach", output="runs/bach", epochs=2, layers=2, ...``). Returns the run's result: steps,
    epochs, best validation loss, the model file, seconds. A run folder that holds a run is continued with
    ``resume`` (settings that contradict the saved run are an error) or replaced with ``force``."""
    cfg = train_config(config, settings, encoder_options)
    return run_training(cfg, resume, force, given_settings(config, settings))


def run_training(config: Any, resume: bool = False, force: bool = False, given: Any = None) -> dict[str, Any]:
    from composer.training import train as train_run

    start = time.time()
    trainer = train_run(config, get_registry(), resume=resume, force=force, given=given)
    return {**trainer.result, "seconds": time.time() - start}


FINETUNE_DEFAULTS = {"lr": 5e-4, "epochs": 5, "warmup_steps": 20}
STYLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def style_file(name: str) -> Path:
    from composer.checkpoint import composer_home

    return composer_home() / "styles" / f"{name}.safetensors"


def finetune(parent: str | Path, name: str, config: str | Path | None = None, *, save_to: str | Path | None = None,
             resume: bool = False, force: bool = False, encoder_options: dict[str, Any] | None = None,
             **settings: Any) -> dict[str, Any]:
    """Adapt ``parent`` (a style or checkpoint) to a corpus and install the result as style ``name`` (or write
    it to ``save_to``). Defaults: lr 5e-4, 5 epochs, 20 warm-up steps; a recipe's settings win over them,
    and ``settings`` over both. An existing style file is replaced only with ``force`` (or ``resume``)."""
    from composer.locks import Lock

    if not STYLE_NAME.fullmatch(name):
        raise ComposerError(f"style name '{name}' may hold only letters, digits, '.', '_' and '-'")
    known = get_registry().styles.get(name)
    if not save_to and known is not None and known.source != "user":
        owner = "built-in" if known.source == "built-in" else f"plugin {known.source}'s"
        raise ComposerError(f"'{name}' is the name of a {owner} style, which would hide yours; choose another --name")
    target = Path(save_to) if save_to else style_file(name)
    with Lock(target.with_name(f".{target.name}.lock"), f"style '{name}'" if not save_to else str(target),
              "wait for that fine-tune to finish, or choose another --name"):
        return _finetune(parent, name, target, config, save_to=save_to, resume=resume, force=force,
                         encoder_options=encoder_options, settings=settings)


def _finetune(parent: str | Path, name: str, target: Path, config: str | Path | None, *, save_to: Any,
              resume: bool, force: bool, encoder_options: dict[str, Any] | None, settings: dict) -> dict[str, Any]:
    """:func:`finetune` once the style's name is held."""
    from composer.checkpoint import atomic_write, composer_home, read_meta

    if target.exists() and not (force or resume):
        raise ComposerError(f"{target} already exists; use --force (force=True) to replace it, or another name")
    parent_path = resolve_checkpoint(parent)
    parent_meta = read_meta(parent_path)
    cfg = train_config(config, settings, encoder_options, defaults=FINETUNE_DEFAULTS,
                       default_output=str(composer_home() / "runs" / name))
    cfg.description = cfg.description or f"fine-tuned from {parent} on {cfg.corpus}"
    cfg.parent, cfg.parent_name = str(parent_path), str(parent)
    cfg.sampler_defaults = cfg.sampler_defaults or parent_meta.get("sampler_defaults", {})
    result = run_training(cfg, resume, force, given_settings(config, settings) | {"parent"})
    best = Path(cfg.output) / "model.safetensors"
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun rank 0 alone writes
        atomic_write(target, lambda tmp: tmp.write_bytes(best.read_bytes()))
    return {**result, "style": target, "installed": not save_to}
