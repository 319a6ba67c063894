"""Corpus -> cached sequences -> batches with masks.

A corpus source string is either ``PREFIX:NAME`` for a registered source (``music21:bach``) or a file,
folder or glob read by the file readers of the encoder's modality. Items are loaded and encoded in
worker processes. The sequences live in one flat array (``[N]`` token ids or ``[N, D]`` float features)
with the bounds of each sequence beside it (:class:`Sequences`); on disk that is a cache folder keyed by
the source and the encoder configuration, memory-mapped when read, so a corpus costs address space
rather than memory. Batches are built from it with numpy and carry a mask of the positions that hold
data.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import heapq
import json
import os
import random
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from composer.api import ComposerError, CorpusSource, Encoder, EncodeReport

CACHE_VERSION = 2


def _int_dtype(low: int, high: int) -> np.dtype:
    """The smallest of int16, int32 and int64 that holds ``low..high``."""
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _as_array(seq: Any) -> np.ndarray:
    """An encoder's output as an array: integers in the smallest dtype that holds them, features float32."""
    arr = np.asarray(seq)
    if arr.dtype.kind in "iub":
        return arr.astype(_int_dtype(int(arr.min()), int(arr.max())) if arr.size else np.int16, copy=False)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    raise TypeError(f"an encoder returned {arr.dtype} values; expected integers or floats")


class Sequences:
    """An immutable list of sequences over one flat store: ``flat[starts[i]:ends[i]]`` is sequence ``i``.

    ``flat`` is ``[N]`` integers (token ids) or ``[N, D]`` float32 (features), and may be memory-mapped.
    ``seq[i]`` is a read-only numpy view; ``seq[slice]`` and ``seq[indices]`` are Sequences over the same
    store (nothing is copied)."""

    __slots__ = ("flat", "starts", "ends")
    flat: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def __init__(self, flat: np.ndarray, starts: Any, ends: Any) -> None:
        flat = flat if isinstance(flat, np.ndarray) else np.asarray(flat)
        if flat.ndim == 1 and flat.dtype.kind not in "iu":
            raise TypeError(f"a token store holds integers, not {flat.dtype}")
        if flat.ndim == 2 and flat.dtype != np.float32:
            raise TypeError(f"a feature store holds float32 [N, D], not {flat.dtype}")
        if flat.ndim not in (1, 2):
            raise ValueError(f"a store is [N] tokens or [N, D] features, not {flat.ndim}-dimensional")
        starts = _readonly(np.asarray(starts, dtype=np.int64).reshape(-1))
        ends = _readonly(np.asarray(ends, dtype=np.int64).reshape(-1))
        if starts.shape != ends.shape:
            raise ValueError("starts and ends differ in length")
        if starts.size and (starts.min() < 0 or ends.max() > len(flat) or (ends < starts).any()):
            raise ValueError("sequence bounds fall outside the store")
        object.__setattr__(self, "flat", flat)
        object.__setattr__(self, "starts", starts)
        object.__setattr__(self, "ends", ends)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Sequences are immutable")

    def __reduce__(self) -> tuple:
        return Sequences, (np.asarray(self.flat), self.starts, self.ends)

    @classmethod
    def from_arrays(cls, arrays: Iterable[Any]) -> Sequences:
        """Sequences from lists or arrays, copied into one store: integers as int16 where every value fits
        (else int32, else int64), floats as float32 ``[N, D]`` (a 1-D float sequence is ``[T, 1]``)."""
        parts = [np.asarray(a) for a in arrays]
        features = any(p.ndim == 2 or (p.dtype.kind == "f" and p.size) for p in parts)
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        ends = np.cumsum(lengths)
        starts = ends - lengths
        if features:
            dims = {p.shape[1] for p in parts if p.ndim == 2}
            dims |= {1 for p in parts if p.ndim == 1 and p.size}
            if len(dims) != 1:
                raise ValueError(f"feature sequences differ in width: {sorted(dims)}")
            (dim,) = dims
            rows = []
            for p in parts:
                if p.dtype.kind not in "fiub":
                    raise TypeError(f"feature values must be numbers, not {p.dtype}")
                rows.append(p.reshape(-1, dim) if p.ndim == 1 else p)
            flat = np.concatenate(rows, dtype=np.float32) if rows else np.zeros((0, dim), np.float32)
            return cls(flat, starts, ends)
        kept = [p for p in parts if p.size]
        for p in kept:
            if p.ndim != 1 or p.dtype.kind not in "iub":
                raise TypeError(f"token sequences are 1-D integers, not {p.dtype} {list(p.shape)}")
        if not kept:
            return cls(np.zeros(0, np.int16), starts, ends)
        low = min(int(p.min()) for p in kept)
        high = max(int(p.max()) for p in kept)
        return cls(np.concatenate(kept, dtype=_int_dtype(low, high), casting="unsafe"), starts, ends)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int | np.integer):
            n = len(self.starts)
            i = int(index) + n if index < 0 else int(index)
            if not 0 <= i < n:
                raise IndexError(f"sequence {index} of {n}")
            return _readonly(self.flat[self.starts[i]: self.ends[i]].view(np.ndarray))
        if isinstance(index, slice):
            return Sequences(self.flat, self.starts[index], self.ends[index])
        index = np.asarray(index)
        if index.dtype.kind not in "iub":
            if index.size:
                raise TypeError(f"Sequences are indexed by integers, slices or bool masks, not {index.dtype}")
            index = index.astype(np.int64)
        return Sequences(self.flat, self.starts[index], self.ends[index])

    def __iter__(self) -> Iterator[np.ndarray]:
        flat = self.flat.view(np.ndarray)
        for start, end in zip(self.starts.tolist(), self.ends.tolist()):
            yield _readonly(flat[start:end])

    def __repr__(self) -> str:
        kind = f"{self.flat.dtype} tokens" if self.is_tokens else f"float32 features of {self.feature_dim}"
        return f"Sequences({len(self)} sequences, {self.total:,} steps of {kind})"

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    @property
    def total(self) -> int:
        return int(self.lengths.sum())

    @property
    def is_tokens(self) -> bool:
        return self.flat.ndim == 1

    @property
    def feature_dim(self) -> int:
        return 0 if self.is_tokens else int(self.flat.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.flat.dtype

    def tolist(self) -> list:
        """The sequences as Python lists (of ints, or of rows of floats): for small uses."""
        return [seq.tolist() for seq in self]

    def compact(self) -> tuple[np.ndarray, np.ndarray]:
        """(flat, offsets): the sequences back to back in one array (the store itself, uncopied, where it is
        already so laid out) and the ``n + 1`` offsets of their bounds."""
        lengths = self.lengths
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if not len(self):
            return self.flat[:0], offsets
        first, last = int(self.starts[0]), int(self.ends[-1])
        if np.array_equal(self.starts - first, offsets[:-1]) and last - first == offsets[-1]:
            return self.flat[first:last], offsets
        return np.concatenate(list(self), dtype=self.flat.dtype), offsets


def _readonly(arr: np.ndarray) -> np.ndarray:
    if arr.flags.writeable:
        arr = arr.view()
        arr.flags.writeable = False
    return arr


def as_sequences(sequences: Any) -> Sequences:
    """``sequences`` as :class:`Sequences` (lists or arrays are copied into a store)."""
    return sequences if isinstance(sequences, Sequences) else Sequences.from_arrays(sequences)


@dataclass
class Corpus:
    source: str
    sequences: Sequences
    names: list[str]  # one per sequence: the reference it came from (with '#k' for the k-th item)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (reference, reason)
    report: EncodeReport = field(default_factory=EncodeReport)
    digest: str = ""  # hash of the sequences: provenance
    cached: bool = False
    reports: list[EncodeReport] = field(default_factory=list)  # one per sequence where known: what `report` adds up
    labels: list[str | None] = field(default_factory=list)  # one per sequence: its item's `label` (class name)
    splits: list[str | None] = field(default_factory=list)  # one per sequence: its item's `split` ("valid", ...)

    def __post_init__(self) -> None:
        self.sequences = as_sequences(self.sequences)
        n = len(self.sequences)
        self.labels = list(self.labels) or [None] * n
        self.splits = list(self.splits) or [None] * n

    @property
    def tokens(self) -> int:
        return self.sequences.total

    def summary(self) -> str:
        unit = "tokens" if self.sequences.is_tokens else "steps"
        text = f"{len(self.sequences)} sequences, {self.tokens:,} {unit} from {short_source(self.source)}"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} unusable file(s)"
        if self.report:
            r = self.report
            text += f"; {r.transposed} transposed, {r.mapped} mapped, {r.dropped} dropped to fit the vocabulary"
        return text + (" (cached)" if self.cached else "")


def short_source(source: str) -> str:
    """A corpus string for display: a long list of sources and exclusions is named by its first source
    and counts (``music21:all less 42 left out``)."""
    parts = [p.strip() for p in source.split(",")]
    if len(source) <= 100 or len(parts) <= 2:
        return source
    left_out = sum(p.startswith("-") for p in parts)
    more = len(parts) - 1 - left_out
    return parts[0] + (f" and {more} more source(s)" if more else "") + (
        f" less {left_out} left out" if left_out else "")


def resolve(source: str, modality: str, corpora: dict[str, CorpusSource]) -> list[tuple[CorpusSource, str]]:
    """The (source, reference) pairs a corpus string stands for. ``A,B`` joins several sources and
    ``A,-B`` leaves out of A what B stands for (``music21:all,-music21:beethoven``). A file reached by several
    paths (links, a glob through a link that loops) is read once; a link that leads nowhere is kept, to be
    counted among the skipped files."""
    if not source.strip():
        raise ComposerError("no corpus given: name one (PREFIX:NAME such as music21:bach, a file, a folder or a glob)")
    if "," in source and not Path(source).expanduser().exists():
        parts = [part.strip() for part in source.split(",") if part.strip()]
        if not parts or parts[0].startswith("-"):
            raise ComposerError(f"corpus '{source}' starts with an exclusion; name what to include first")
        excluded = {ref for part in parts if part.startswith("-")
                    for _, ref in resolve(part[1:].strip(), modality, corpora)}
        pairs = [pair for part in parts if not part.startswith("-") for pair in resolve(part, modality, corpora)]
        pairs = [pair for pair in pairs if pair[1] not in excluded]
        if not pairs:
            raise ComposerError(f"corpus '{source}' is empty once its exclusions are left out")
        return pairs
    prefix, sep, rest = source.partition(":")
    if sep and prefix in corpora and corpora[prefix].list is not None and len(prefix) > 1:
        src = corpora[prefix]
        if src.modality != modality:
            raise ComposerError(f"corpus '{source}' holds {src.modality}, but the encoder reads {modality}")
        refs = src.list(rest)
        if not refs:
            raise ComposerError(f"corpus '{source}' is empty")
        return [(src, ref) for ref in refs]
    readers = {suffix: src for src in corpora.values() if src.modality == modality for suffix in src.suffixes}
    path = Path(source).expanduser()
    if path.is_dir():
        files = _files(path.rglob("*"))
    elif path.is_file():
        files = [path]
    elif glob.has_magic(source):
        files = _files(Path(p) for p in glob.glob(os.path.expanduser(source), recursive=True))
    else:
        known = ", ".join(sorted(f"{n}:" for n, s in corpora.items() if s.list and s.modality == modality))
        raise ComposerError(f"corpus not found: '{source}' is no file, folder or glob (named corpora: {known})")
    pairs = [(readers[p.suffix.lower()], str(p)) for p in files if p.suffix.lower() in readers]
    if not pairs:
        others = sorted({src.modality for src in corpora.values() for p in files if p.suffix.lower() in src.suffixes})
        if others:
            raise ComposerError(f"'{source}' holds {' and '.join(others)} files, but this model reads {modality}")
        suffixes = " ".join(sorted(readers)) or "none"
        raise ComposerError(f"no {modality} files in '{source}' (looked for {suffixes})")
    return pairs


def _files(paths: Iterable[Path]) -> list[Path]:
    """The files among ``paths``, sorted, each real file once (by its resolved path), and the links that lead
    to no file (broken or looping), which fail when read and so are counted as skipped."""
    seen: dict[str, Path] = {}
    for p in sorted(paths):
        try:
            if not p.is_file() and not p.is_symlink():
                continue
            real = os.path.realpath(p)
        except OSError:
            real = str(p)
        seen.setdefault(real, p)
    return sorted(seen.values())


def skip_reason(exc: BaseException, fallback: str) -> str:
    """Why a file was skipped, in words a user understands: a message a reader or encoder raised on purpose
    (a ComposerError, or a ``raise`` statement of its own), what the operating system said went wrong, else
    ``fallback``: never the text of a Python error from deep inside a library ("max() arg is an empty
    sequence", "'Score' object has no attribute 'partName'")."""
    import errno
    import linecache

    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    raised_here = tb is not None and linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).lstrip() \
        .startswith("raise ")
    lines = str(exc).strip().splitlines()
    if lines and (isinstance(exc, ComposerError) or raised_here and isinstance(exc, ValueError)):
        return lines[0][:200]
    if isinstance(exc, OSError) and exc.errno is not None:
        return {errno.ELOOP: "a link that loops back on itself", errno.ENOENT: "a broken link (no such file)",
                errno.EACCES: "not readable (permission denied)", errno.EISDIR: "a folder, not a file",
                errno.ENAMETOOLONG: "its path is too long"}.get(exc.errno, f"cannot be read ({exc.strerror})")
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, MemoryError):
        return "too large to read"
    return fallback


def _fingerprint(pairs: list[tuple[CorpusSource, str]]) -> list[str]:
    out = []
    for src, ref in pairs:
        try:
            st = os.stat(ref)
            out.append(f"{src.name}|{ref}|{st.st_size}|{st.st_mtime_ns}")
        except OSError:
            out.append(f"{src.name}|{ref}")
    return out


def _load_and_encode(encoder: Encoder, src: CorpusSource, ref: str, checked: bool) -> tuple[str, Any, str]:
    """Worker: one reference -> (ref, [(array, report, label, split)], error)."""
    try:
        items = src.load(ref)
    except Exception as exc:
        kind = src.description.split(" (")[0].split(";")[0] or src.name
        return ref, None, skip_reason(exc, f"not readable as {kind} (damaged, or not what its name says)")
    try:
        results = []
        for item in items:
            if checked:
                seq, report = encoder.encode_checked(item)
            else:
                seq, report = encoder.encode(item), EncodeReport()
            if len(seq) > 2:
                label, part = getattr(item, "label", None), getattr(item, "split", None)
                results.append((_as_array(seq), report, None if label is None else str(label),
                                None if part is None else str(part)))
        if not results:
            return ref, None, "nothing usable in it"
        return ref, results, ""
    except Exception as exc:
        return ref, None, skip_reason(exc, f"the {encoder.name} encoder cannot use what it holds")


def _cache_path(key: str) -> Path:
    """The cache folder of a key: ``corpus-KEY/`` holding ``flat.npy``, ``offsets.npy`` and ``meta.json``."""
    from composer.checkpoint import composer_home

    root = os.environ.get("COMPOSER_CACHE")
    return (Path(root) if root else composer_home() / "cache") / f"corpus-{key}"


def load_corpus(
    source: str,
    encoder: Encoder,
    corpora: dict[str, CorpusSource],
    *,
    fitted: bool = False,
    workers: int | None = None,
    use_cache: bool = True,
    progress: bool = True,
    warn: Any = None,
    only: Collection[str] | None = None,
) -> Corpus:
    """Load and encode a corpus. ``fitted``: the encoder's state is fixed (fine-tuning or evaluation), so
    items are fitted into its vocabulary with counted changes instead of building a vocabulary.

    ``only``: sequence names as a full load gives them (a recorded held-out split); only the references
    they come from are read, and the corpus holds just those sequences, in the full load's order."""
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    pairs = resolve(source, encoder.modality, corpora)
    # an encoder with a vocabulary fixed by its options always fits items into it with counted changes
    checked = fitted or not encoder.needs_fit
    # a vocabulary built from the corpus is not part of the key, but the settings that build it are
    state = json.dumps(encoder.state_dict() if checked else {"options": dataclasses.asdict(encoder.options)},
                       sort_keys=True)
    key_parts = [CACHE_VERSION, encoder.name, state, checked, _fingerprint(pairs)]
    wanted: set[str] | None = None
    corpus: Corpus | None = None
    if only is not None:
        wanted = set(only)
        if not wanted or any(name.startswith(("@tail:", "@corpus:")) for name in wanted):
            raise ValueError("only= takes sequence names; a recorded @tail: or @corpus: split is for split()")
        if not checked:
            raise ValueError("only= needs a fitted encoder: part of a corpus would build another vocabulary")
        pairs = _named_pairs(pairs, only, source)
        if use_cache:  # a full corpus in the cache holds the named sequences too
            full = _read_cache(_cache_path(_key(key_parts)), source, encoder)
            corpus = _pick(full, wanted, {ref for _, ref in pairs}) if full is not None else None
        # a part is cached under its own key: never served as the full corpus, nor the full one as a part
        key_parts = key_parts[:-1] + [_fingerprint(pairs), sorted(wanted)]
    cache = _cache_path(_key(key_parts))
    if corpus is None and use_cache:
        corpus = _read_cache(cache, source, encoder)
    fresh = corpus is None
    if corpus is None:
        if encoder.needs_fit and not fitted:
            items = []
            for src, ref in pairs:
                try:
                    items.extend(src.load(ref))
                except Exception:
                    continue  # reported below, when it fails again during encoding
            encoder.fit(items)
        corpus = _assemble(source, _run(encoder, pairs, checked, workers, progress), wanted)
    for ref, reason in corpus.skipped:
        warn(f"skipped {ref}: {reason}")
    unread = sorted(wanted - set(corpus.names)) if wanted is not None else []
    if unread:
        warn(f"{len(unread)} held-out piece(s) were not read from corpus {short_source(source)}: {unread[0]}")
    if not corpus.sequences:
        raise ComposerError(f"nothing usable in corpus '{source}' ({len(corpus.skipped)} file(s) skipped)")
    if fresh and use_cache:
        _write_cache(cache, corpus, encoder)
    return corpus


def _key(parts: list) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _named_pairs(pairs: list[tuple[CorpusSource, str]], names: Collection[str], source: str) -> list:
    """The pairs whose references the sequence ``names`` (``REF`` or ``REF#k``) come from."""
    refs = {ref for _, ref in pairs}
    wanted: set[str] = set()
    missing = []
    for name in names:
        head, _, k = name.rpartition("#")
        found = {ref for ref in (name, head if k.isdigit() else None) if ref in refs}
        if not found:
            missing.append(name)
        wanted |= found
    if missing:
        raise ComposerError(f"{len(missing)} held-out piece(s) are not in corpus {short_source(source)}: {missing[0]}")
    return [pair for pair in pairs if pair[1] in wanted]


def _assemble(source: str, results: list, wanted: set[str] | None) -> Corpus:
    """A corpus from the workers' results, in their order; with ``wanted``, only the sequences so named."""
    arrays, names, reports, labels, splits = [], [], [], [], []
    skipped = []
    total = EncodeReport()
    for ref, encoded, error in results:
        if error:
            skipped.append((ref, error))
            continue
        for k, (seq, report, label, part) in enumerate(encoded):
            name = ref if len(encoded) == 1 else f"{ref}#{k}"
            if wanted is None or name in wanted:
                arrays.append(seq)
                names.append(name)
                reports.append(report)
                labels.append(label)
                splits.append(part)
                total.add(report)
    sequences = Sequences.from_arrays(arrays)
    del arrays
    return Corpus(source, sequences, names, skipped, total, _digest(sequences), reports=reports, labels=labels,
                  splits=splits)


def _pick(full: Corpus, names: set[str], refs: set[str]) -> Corpus | None:
    """The named sequences of a full corpus (a view of its store), or None where it lacks their encoding
    reports."""
    if len(full.reports) != len(full.sequences):
        return None
    keep = [i for i, name in enumerate(full.names) if name in names]
    part = Corpus(full.source, full.sequences[keep], [full.names[i] for i in keep],
                  [s for s in full.skipped if s[0] in refs], cached=True, reports=[full.reports[i] for i in keep],
                  labels=[full.labels[i] for i in keep], splits=[full.splits[i] for i in keep])
    for report in part.reports:
        part.report.add(report)
    part.digest = _digest(part.sequences)
    return part


def _run(encoder: Encoder, pairs: list, checked: bool, workers: int | None, progress: bool) -> list:
    from tqdm import tqdm

    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    with tqdm(total=len(pairs), desc="reading corpus", unit="file", disable=not progress or len(pairs) < 8,
              file=sys.stderr) as bar:
        if workers > 1 and len(pairs) >= 8:
            return _run_in_workers(encoder, pairs, checked, workers, bar)
        results = []
        for src, ref in pairs:
            results.append(_load_and_encode(encoder, src, ref, checked))
            bar.update()
        return results


def _run_in_workers(encoder: Encoder, pairs: list, checked: bool, workers: int, bar: Any) -> list:
    """Read in worker processes. Ctrl-C or SIGTERM stops them at once (pending work cancelled, workers
    terminated) and the exception goes on: KeyboardInterrupt, or SystemExit(143) for a SIGTERM whose
    default would have killed this process and left the workers reading."""
    import multiprocessing as mp

    method = "fork" if sys.platform.startswith("linux") else None
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_worker_signals)
    previous_term = _exit_on_sigterm()
    try:
        futures = [pool.submit(_load_and_encode, encoder, src, ref, checked) for src, ref in pairs]
        results = []
        for fut in futures:
            results.append(fut.result())
            bar.update()
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    pool.shutdown()
    return results


def _worker_signals() -> None:
    """A worker leaves Ctrl-C to the parent and ends on SIGTERM, whatever handler it was forked with."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _exit_on_sigterm() -> Any:
    """Where SIGTERM has its default (end this process at once), make it raise SystemExit(143) instead, so that
    the workers are stopped first; returns the handler to restore, or None where nothing changed."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the pending work and end the workers now, ignoring a second Ctrl-C or SIGTERM meanwhile
    (what ``ProcessPoolExecutor.terminate_workers`` does from Python 3.14)."""
    main = threading.current_thread() is threading.main_thread()
    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        processes = list((pool._processes or {}).values())  # shutdown() forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    finally:
        for sig, handler in held.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(sig, handler)


def _digest(sequences: Sequences) -> str:
    """A hash of the values (as int64 or float32, whatever the store's dtype) and the bounds: provenance."""
    h = hashlib.sha256()
    canonical = np.dtype("<i8") if sequences.is_tokens else np.dtype("<f4")
    h.update(f"{sequences.feature_dim}|".encode())
    step = 1 << 20
    first = int(sequences.starts[0]) if len(sequences) else 0
    lengths = sequences.lengths
    if len(sequences) and np.array_equal(sequences.starts[1:], sequences.ends[:-1]):  # one contiguous run
        pieces: Iterable[np.ndarray] = (sequences.flat[k: min(k + step, int(sequences.ends[-1]))]
                                        for k in range(first, int(sequences.ends[-1]), step))
    else:
        pieces = iter(sequences)
    for piece in pieces:
        h.update(np.ascontiguousarray(piece, dtype=canonical).tobytes())
    h.update(np.cumsum(lengths, dtype=np.int64).astype("<i8").tobytes())
    return h.hexdigest()[:16]


CACHE_FILES = ("flat.npy", "offsets.npy", "meta.json")


def _write_cache(path: Path, corpus: Corpus, encoder: Encoder) -> None:
    """Write the cache folder ``path`` atomically: into a temporary sibling, renamed into place when
    complete, so that a reader finds a whole cache or none. A cache that cannot be written only costs
    time."""
    meta = {
        "version": CACHE_VERSION,
        "names": corpus.names,
        "skipped": corpus.skipped,
        "report": [corpus.report.transposed, corpus.report.mapped, corpus.report.dropped],
        "reports": [[r.transposed, r.mapped, r.dropped] for r in corpus.reports],
        "digest": corpus.digest,
        "encoder_state": encoder.state_dict(),
        "labels": corpus.labels,
        "splits": corpus.splits,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        tmp.mkdir()
        flat, offsets = corpus.sequences.compact()
        np.save(tmp / "flat.npy", np.ascontiguousarray(flat), allow_pickle=False)
        np.save(tmp / "offsets.npy", offsets, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta))
        _install(tmp, path)
    except OSError:
        pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _install(tmp: Path, path: Path) -> None:
    """Rename the complete folder ``tmp`` to ``path``. A readable cache already there (a concurrent writer's)
    stays; anything else there (a broken or older cache) is moved aside first."""
    try:
        os.rename(tmp, path)  # fails where path is a non-empty folder
        return
    except OSError:
        if not path.exists() or _open_cache(path) is not None:
            return
    aside = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.old")
    try:
        os.rename(path, aside)
    except OSError:
        return  # another writer is replacing it
    try:
        os.rename(tmp, path)
    except OSError:
        pass  # another writer got there first: its cache is as good
    shutil.rmtree(aside, ignore_errors=True)


def _remove_stale(path: Path, age: float = 3600.0) -> None:
    """Temporary folders that writers of this cache left behind (killed while writing) over an hour ago."""
    now = time.time()
    for leftover in path.parent.glob(f".{path.name}.*"):
        try:
            if leftover.suffix in (".tmp", ".old") and now - leftover.stat().st_mtime > age:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


def _open_cache(path: Path) -> tuple[Sequences, dict] | None:
    """The memory-mapped sequences and the metadata of a cache folder, or None where it is missing,
    partial, corrupt or of another version."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
            return None
        flat = np.load(path / "flat.npy", mmap_mode="r", allow_pickle=False)
        offsets = np.array(np.load(path / "offsets.npy", mmap_mode="r", allow_pickle=False))
        n = len(meta["names"])
        if (offsets.dtype != np.int64 or offsets.shape != (n + 1,) or offsets[0] != 0
                or offsets[-1] != len(flat) or (np.diff(offsets) < 0).any()
                or len(meta["labels"]) != n or len(meta["splits"]) != n or len(meta["reports"]) not in (0, n)):
            return None
        return Sequences(flat, offsets[:-1], offsets[1:]), meta
    except Exception:
        return None


def _read_cache(path: Path, source: str, encoder: Encoder) -> Corpus | None:
    opened = _open_cache(path)
    if opened is None:
        return None
    sequences, meta = opened
    encoder.load_state_dict(meta["encoder_state"])
    return Corpus(
        source, sequences, meta["names"], [tuple(s) for s in meta["skipped"]], EncodeReport(*meta["report"]),
        meta["digest"], cached=True, reports=[EncodeReport(*r) for r in meta["reports"]],
        labels=meta["labels"], splits=meta["splits"],
    )


def class_ids(labels: list[str | None], vocabulary: list[str], owner: str) -> np.ndarray:
    """Class ids of item labels for a class-conditional model with labels ``vocabulary``; a missing or unknown
    label is a one-line error naming ``owner`` (the model)."""
    index = {name: i for i, name in enumerate(vocabulary)}
    missing = sum(label is None for label in labels)
    if missing:
        raise ComposerError(f"{owner} is conditioned on labels, and {missing} item(s) carry none")
    unknown = next((label for label in labels if label not in index), None)
    if unknown is not None:
        raise ComposerError(f"{owner} is conditioned on labels, and {unknown!r} is not one of its "
                            f"{len(vocabulary)} labels")
    return np.asarray([index[label] for label in labels], dtype=np.int64)


class SplitIndex(NamedTuple):
    """Which sequences of a corpus train and which validate (positions in ``corpus.sequences``)."""

    train: np.ndarray
    valid: np.ndarray
    names: list[str]  # what a checkpoint records to find the validation sequences again
    tail: float | None = None  # a tail split: each sequence's head trains and its last ``tail`` validates


def split_index(corpus: Corpus, valid_fraction: float, seed: int, valid_names: list[str] | None = None) -> SplitIndex:
    """The split :func:`split` makes, as positions (to pick per-sequence fields such as labels alongside)."""
    n = len(corpus.sequences)
    own = any(part is not None for part in corpus.splits)
    pool = [i for i in range(n) if corpus.splits[i] != "test"] if own else list(range(n))

    def index(positions: list[int]) -> np.ndarray:
        return np.asarray(positions, dtype=np.int64)

    if valid_names and valid_names[0].startswith("@tail:"):
        return SplitIndex(index(pool), index(pool), list(valid_names), float(valid_names[0].split(":", 1)[1]))
    if valid_names is not None:
        chosen = set(valid_names)
        train = [i for i in pool if corpus.names[i] not in chosen]
        valid = [i for i in range(n) if corpus.names[i] in chosen]
        return SplitIndex(index(train), index(valid), list(valid_names))
    if own:
        valid = [i for i in pool if corpus.splits[i] == "valid"]
        if valid:
            train = [i for i in pool if corpus.splits[i] != "valid"]
            return SplitIndex(index(train), index(valid), [corpus.names[i] for i in valid])
    if len(pool) < 10:
        return SplitIndex(index(pool), index(pool), [f"@tail:{valid_fraction}"], valid_fraction)
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    chosen_at = set(order[: max(1, round(len(order) * valid_fraction))])
    train = [i for k, i in enumerate(pool) if k not in chosen_at]
    valid = [pool[k] for k in sorted(chosen_at)]
    return SplitIndex(index(train), index(valid), [corpus.names[i] for i in valid])


def split(corpus: Corpus, valid_fraction: float, seed: int,
          valid_names: list[str] | None = None) -> tuple[Sequences, Sequences, list[str]]:
    """Split into (train, valid) sequences, by piece; returns also the validation names. Both are views of
    the corpus's store.

    With ``valid_names`` (a resumed run, or an evaluation of a checkpoint) the recorded split is used.
    Where the items carry their dataset's own split (``item.split``), the ``"valid"`` ones validate, the
    ``"test"`` ones are left out of both, and the rest train; without any ``"valid"`` one the rules below
    apply to the non-test sequences. A random ``valid_fraction`` of the pieces validates, drawn with
    ``seed``; a corpus of fewer than 10 pieces is split inside each piece: the last part of every piece
    validates (recorded as ``@tail:FRACTION``).
    """
    part = split_index(corpus, valid_fraction, seed, valid_names)
    if part.tail is not None:
        train, valid = _tail_split(corpus.sequences[part.train], part.tail)
        return train, valid, part.names
    return corpus.sequences[part.train], corpus.sequences[part.valid], part.names


def _tail_split(sequences: Sequences, valid_fraction: float) -> tuple[Sequences, Sequences]:
    """The last ``valid_fraction`` of every piece validates, overlapping the head by one step (views)."""
    lengths = sequences.lengths
    cut = np.maximum(2, (lengths * (1 - valid_fraction)).astype(np.int64))
    train_end = sequences.starts + np.minimum(cut, lengths)
    valid_start = sequences.starts + np.minimum(np.maximum(0, cut - 1), lengths)
    return (Sequences(sequences.flat, sequences.starts, train_end),
            Sequences(sequences.flat, valid_start, sequences.ends))


class Batches(NamedTuple):
    """One epoch of training windows; ``steps`` batches of ``rows`` windows of ``seq_len + 1`` positions."""

    inputs: torch.Tensor  # [steps, rows, seq_len + 1] in the store's integer dtype, or [..., D] float32
    mask: torch.Tensor  # [steps, rows, seq_len + 1] bool: the position holds data (or counted padding)
    restart: torch.Tensor  # [steps, rows] bool: the window starts a piece (or is blank): state from zero
    labels: torch.Tensor | None  # [steps, rows] long: the class id of the window's piece (0 when blank)


Segment = tuple[int, int, int]  # (piece, first window, number of windows)


def _cut_longest(segments: list[Segment], target: int) -> list[Segment]:
    """Halve the longest pieces (runs of windows) until there are ``target`` of them or none can be cut."""
    pieces = [s for s in segments if s[2]]
    if len(pieces) >= target:
        return segments
    heap = [(-s[2], k) for k, s in enumerate(pieces)]
    heapq.heapify(heap)
    while len(pieces) < target and heap and -heap[0][0] >= 2:
        _, k = heapq.heappop(heap)
        piece, first, count = pieces[k]
        half = count // 2
        pieces[k] = (piece, first, half)
        pieces.append((piece, first + half, count - half))
        heapq.heappush(heap, (-half, k))
        heapq.heappush(heap, (-(count - half), len(pieces) - 1))
    return pieces


def _lanes(lengths: np.ndarray, rows: int, seq_len: int,
           rng: random.Random) -> tuple[list[Segment], list[list[int]], int]:
    """How an epoch lays pieces of these lengths out: (segments, the segments of each row in order, steps)."""
    counts = np.where(lengths > 1, (lengths - 2) // seq_len + 1, 0).tolist()  # windows: range(0, len - 1, seq_len)
    segments = _cut_longest([(p, 0, c) for p, c in enumerate(counts)], 4 * rows)
    order = list(range(len(segments)))
    rng.shuffle(order)
    order.sort(key=lambda i: -segments[i][2])  # longest first onto the emptiest row: rows end together
    assigned: list[list[int]] = [[] for _ in range(rows)]
    filled = [0] * rows
    heap = [(0, r) for r in range(rows)]
    for i in order:
        if not segments[i][2]:
            continue
        length, r = heapq.heappop(heap)
        assigned[r].append(i)
        filled[r] = length + segments[i][2]
        heapq.heappush(heap, (filled[r], r))
    for mine in assigned:
        rng.shuffle(mine)
    # Windows where most rows have run out would be updates from a handful of tokens: leave them out
    # (the pieces come round again, in other places, next epoch).
    steps = max(1, sorted(filled)[rows // 2])
    return segments, assigned, steps


def epoch_steps(sequences: Sequences, batch_size: int, seq_len: int, world: int = 1) -> int:
    """How many steps an epoch of :func:`piece_batches` takes (it does not depend on the draws)."""
    return _lanes(as_sequences(sequences).lengths, batch_size * world, seq_len, random.Random(0))[2]


def _augmented(sequences: Sequences, encoder: Encoder, rng: random.Random) -> Sequences:
    """Each sequence through ``encoder.augment``, in a store of its own (the corpus's is read-only)."""
    pieces = [np.asarray(encoder.augment(seq, rng)) for seq in sequences]
    if not sequences.is_tokens:
        return Sequences.from_arrays(pieces)
    kept = [p for p in pieces if p.size]
    low = min((int(p.min()) for p in kept), default=0)
    high = max((int(p.max()) for p in kept), default=0)
    dtype = np.promote_types(sequences.dtype, _int_dtype(low, high))  # the store's dtype where values fit it
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    ends = np.cumsum(lengths)
    flat = np.concatenate(kept, dtype=dtype, casting="unsafe") if kept else np.zeros(0, dtype)
    return Sequences(flat, ends - lengths, ends)


def _pad_row(pad_value: Any, store: np.ndarray) -> np.ndarray:
    pad = np.asarray(pad_value, dtype=store.dtype)
    if pad.shape != store.shape[1:]:
        raise ValueError(f"pad_value of shape {list(pad.shape)} does not fit steps of shape {list(store.shape[1:])}")
    return pad


def _gather(sequences: Sequences, piece: np.ndarray, offset: np.ndarray, width: int, pad_value: Any,
            block: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``width`` positions: window ``w`` holds piece ``piece[w]`` from position ``offset[w]`` on
    (``piece < 0``: blank). Returns (values [W, width(, D)], mask [W, width]); the rest of a piece's last
    window holds ``pad_value`` and counts, or 0 and does not where ``pad_value`` is None."""
    store = sequences.flat
    shape = (len(piece), width) + store.shape[1:]
    values = np.zeros(shape, dtype=store.dtype)
    mask = np.zeros((len(piece), width), dtype=bool)
    pad = None if pad_value is None else _pad_row(pad_value, store)
    if not len(store):
        return values, mask
    real = piece >= 0
    safe = np.where(real, piece, 0)
    start = np.where(real, sequences.starts[safe] + offset, 0)
    count = np.where(real, np.minimum(width, sequences.lengths[safe] - offset), 0)
    positions = np.arange(width, dtype=np.int64)
    rows = max(1, block // width)
    for a in range(0, len(piece), rows):
        b = min(len(piece), a + rows)
        held = positions[None, :] < count[a:b, None]
        index = np.where(held, start[a:b, None] + positions[None, :], 0)
        chunk = store[index]
        chunk[~held] = 0
        if pad is not None:
            padded = real[a:b, None] & ~held
            chunk[padded] = pad
            held |= padded
        values[a:b] = chunk
        mask[a:b] = held
    return values, mask


def piece_batches(
    sequences: Sequences,
    encoder: Encoder,
    batch_size: int,
    seq_len: int,
    rng: random.Random,
    augment: bool,
    rank: int = 0,
    world: int = 1,
    labels: np.ndarray | None = None,
) -> Batches:
    """One epoch of training windows (see :class:`Batches`).

    Pieces are (augmented,) spread over ``batch_size * world`` rows so that the rows are about equally
    long, and shuffled within each row. Each piece is read ``seq_len`` predictions at a time; the
    recurrent state carries from one window to the next within a piece (truncated back-propagation
    through time) and restarts from zero where a piece begins (``restart``), which is how generation
    starts too. The rest of a piece's last window is padding: left out by the mask, or, where the encoder
    has a ``pad_value`` (Sketch-RNN's end rows), filled with it and counted. The epoch ends when half the
    rows have run out (the blank windows of rows that ran out hold zeros, masked out); rank ``r`` of
    ``world`` takes rows ``r::world``. ``labels`` (one class id per sequence) gives each window its
    piece's class.

    A small corpus (fewer than four pieces per row) would leave rows empty and never reach the ends of
    its longest pieces, so its longest pieces are cut in halves at window boundaries until there are
    four segments per row; each segment starts from a zero state, like a piece."""
    sequences = as_sequences(sequences)
    rows = batch_size * world
    pieces = _augmented(sequences, encoder, rng) if augment else sequences
    if getattr(encoder, "pad_value", None) is None and len(pieces.lengths):
        # a window longer than the longest piece would only hold more padding (left out by the mask)
        seq_len = max(1, min(seq_len, int(pieces.lengths.max()) - 1))
    segments, assigned, steps = _lanes(pieces.lengths, rows, seq_len, rng)
    mine = list(range(rank, rows, world))
    piece = np.full((steps, len(mine)), -1, dtype=np.int64)
    window = np.zeros((steps, len(mine)), dtype=np.int64)
    restart = np.ones((steps, len(mine)), dtype=bool)
    for column, r in enumerate(mine):
        segs = assigned[r]
        if not segs:
            continue
        seg_piece, seg_first, seg_count = (np.asarray(v, dtype=np.int64) for v in zip(*(segments[i] for i in segs)))
        begins = np.cumsum(seg_count) - seg_count
        total = int(seg_count.sum())
        within = np.arange(total, dtype=np.int64) - np.repeat(begins, seg_count)
        n = min(steps, total)
        piece[:n, column] = np.repeat(seg_piece, seg_count)[:n]
        window[:n, column] = (np.repeat(seg_first, seg_count) + within)[:n]
        restart[:n, column] = (within == 0)[:n]
    values, mask = _gather(pieces, piece.reshape(-1), window.reshape(-1) * seq_len, seq_len + 1,
                           getattr(encoder, "pad_value", None))
    shape = (steps, len(mine), seq_len + 1)
    window_labels = None
    if labels is not None:
        ids = np.asarray(labels, dtype=np.int64)
        if ids.shape != (len(sequences),):
            raise ValueError(f"labels holds {ids.size} class ids for {len(sequences)} sequences")
        picked = ids[np.maximum(piece, 0)] if len(ids) else np.zeros_like(piece)
        window_labels = torch.from_numpy(np.where(piece >= 0, picked, 0))
    return Batches(torch.from_numpy(values.reshape(shape + values.shape[2:])), torch.from_numpy(mask.reshape(shape)),
                   torch.from_numpy(restart), window_labels)


class Padded(NamedTuple):
    """Whole pieces, padded to the longest of the batch."""

    inputs: torch.Tensor  # [B, T] in the store's integer dtype, or [B, T, D] float32
    mask: torch.Tensor  # [B, T] bool: the position holds data (or counted padding)
    index: torch.Tensor  # [B] long: the positions of these rows in ``sequences``
    labels: torch.Tensor | None  # [B] long: their class ids, where labels were given


def padded_batches(sequences: Sequences, batch_size: int, pad_value: Any = None,
                   labels: np.ndarray | None = None, pad_to: int = 0) -> Iterator[Padded]:
    """Yield :class:`Padded` batches of whole pieces, similar lengths together (sorted by length). Shorter
    pieces are padded with 0, masked out, or with ``pad_value`` (a row or token), counted in the mask, to the
    batch's longest piece or ``pad_to`` positions, whichever is longer (Sketch-RNN's N_max)."""
    sequences = as_sequences(sequences)
    lengths = sequences.lengths
    order = np.argsort(lengths, kind="stable")
    ids = None if labels is None else np.asarray(labels, dtype=np.int64)
    for a in range(0, len(order), batch_size):
        index = order[a: a + batch_size]
        longest = max(int(lengths[index].max()), pad_to)
        values, mask = _gather(sequences, index, np.zeros(len(index), np.int64), longest, pad_value)
        yield Padded(torch.from_numpy(values), torch.from_numpy(mask), torch.from_numpy(index.astype(np.int64)),
                     None if ids is None else torch.from_numpy(ids[index]))
