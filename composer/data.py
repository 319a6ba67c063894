"""Corpus -> cached sequences -> batches.

A corpus source string is either ``PREFIX:NAME`` for a registered source (``music21:bach``) or a file,
folder or glob read by the file readers of the encoder's modality. Items are loaded and encoded in
worker processes; the sequences are cached on disk keyed by the source and the encoder configuration.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import heapq
import json
import os
import random
import signal
import sys
import threading
from collections.abc import Collection
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from composer.api import ComposerError, CorpusSource, Encoder, EncodeReport

CACHE_VERSION = 1


@dataclass
class Corpus:
    source: str
    sequences: list[list[int]]
    names: list[str]  # one per sequence: the reference it came from (with '#k' for the k-th item)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (reference, reason)
    report: EncodeReport = field(default_factory=EncodeReport)
    digest: str = ""  # hash of the sequences: provenance
    cached: bool = False
    reports: list[EncodeReport] = field(default_factory=list)  # one per sequence where known: what `report` adds up

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.sequences)

    def summary(self) -> str:
        text = f"{len(self.sequences)} sequences, {self.tokens:,} tokens from {short_source(self.source)}"
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
    ``A,-B`` leaves out of A what B stands for (``music21:all,-music21:beethoven``)."""
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
        files = sorted(p for p in path.rglob("*") if p.is_file())
    elif path.is_file():
        files = [path]
    elif glob.has_magic(source):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(source), recursive=True) if Path(p).is_file())
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
    """Worker: one reference -> (ref, [(seq, report)], error)."""
    try:
        items = src.load(ref)
        results = []
        for item in items:
            if checked:
                seq, report = encoder.encode_checked(item)
            else:
                seq, report = encoder.encode(item), EncodeReport()
            if len(seq) > 2:
                results.append((list(seq), report))
        if not results:
            return ref, None, "nothing usable in it"
        return ref, results, ""
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return ref, None, (lines[0] if lines else type(exc).__name__)[:200]


def _cache_path(key: str) -> Path:
    from composer.checkpoint import composer_home

    root = os.environ.get("COMPOSER_CACHE")
    return (Path(root) if root else composer_home() / "cache") / f"corpus-{key}.npz"


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
    corpus = Corpus(source, [], [])
    for ref, encoded, error in results:
        if error:
            corpus.skipped.append((ref, error))
            continue
        for k, (seq, report) in enumerate(encoded):
            name = ref if len(encoded) == 1 else f"{ref}#{k}"
            if wanted is None or name in wanted:
                corpus.sequences.append(seq)
                corpus.names.append(name)
                corpus.reports.append(report)
                corpus.report.add(report)
    corpus.digest = _digest(corpus.sequences)
    return corpus


def _pick(full: Corpus, names: set[str], refs: set[str]) -> Corpus | None:
    """The named sequences of a full corpus, or None where it lacks their encoding reports (an older cache)."""
    if len(full.reports) != len(full.sequences):
        return None
    keep = [i for i, name in enumerate(full.names) if name in names]
    part = Corpus(full.source, [full.sequences[i] for i in keep], [full.names[i] for i in keep],
                  [s for s in full.skipped if s[0] in refs], cached=True, reports=[full.reports[i] for i in keep])
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


def _digest(sequences: list[list[int]]) -> str:
    h = hashlib.sha256()
    for seq in sequences:
        h.update(np.asarray(seq, dtype=np.int32).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def _write_cache(path: Path, corpus: Corpus, encoder: Encoder) -> None:
    from composer.checkpoint import atomic_write

    flat = np.concatenate([np.asarray(s, dtype=np.int32) for s in corpus.sequences])
    lengths = np.asarray([len(s) for s in corpus.sequences], dtype=np.int64)
    meta = {
        "names": corpus.names,
        "skipped": corpus.skipped,
        "report": [corpus.report.transposed, corpus.report.mapped, corpus.report.dropped],
        "reports": [[r.transposed, r.mapped, r.dropped] for r in corpus.reports],
        "digest": corpus.digest,
        "encoder_state": encoder.state_dict(),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, tokens=flat, lengths=lengths, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))

    try:
        atomic_write(path, write)
    except OSError:
        pass  # a cache that cannot be written only costs time


def _read_cache(path: Path, source: str, encoder: Encoder) -> Corpus | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            flat, lengths = data["tokens"], data["lengths"]
            meta = json.loads(data["meta"].tobytes().decode())
    except Exception:
        return None
    encoder.load_state_dict(meta["encoder_state"])
    bounds = np.cumsum(lengths)[:-1]
    sequences = [part.tolist() for part in np.split(flat, bounds)]
    return Corpus(
        source, sequences, meta["names"], [tuple(s) for s in meta["skipped"]], EncodeReport(*meta["report"]),
        meta["digest"], cached=True, reports=[EncodeReport(*r) for r in meta.get("reports", [])],
    )


def split(corpus: Corpus, valid_fraction: float, seed: int, valid_names: list[str] | None = None):
    """Split into (train, valid) lists of sequences, by piece; returns also the validation names.

    With ``valid_names`` (a resumed run, or an evaluation of a checkpoint) the recorded split is used.
    A corpus of fewer than 10 pieces is split inside each piece: the last part of every piece validates.
    """
    if valid_names and valid_names[0].startswith("@tail:"):
        return _tail_split(corpus, float(valid_names[0].split(":", 1)[1]))
    if valid_names is not None:
        chosen = set(valid_names)
        train = [s for s, name in zip(corpus.sequences, corpus.names) if name not in chosen]
        valid = [s for s, name in zip(corpus.sequences, corpus.names) if name in chosen]
        return train, valid, list(valid_names)
    if len(corpus.sequences) < 10:
        return _tail_split(corpus, valid_fraction)
    order = list(range(len(corpus.sequences)))
    random.Random(seed).shuffle(order)
    valid_idx = set(order[: max(1, round(len(order) * valid_fraction))])
    train = [s for i, s in enumerate(corpus.sequences) if i not in valid_idx]
    valid = [s for i, s in enumerate(corpus.sequences) if i in valid_idx]
    return train, valid, [corpus.names[i] for i in sorted(valid_idx)]


def _tail_split(corpus: Corpus, valid_fraction: float):
    """The last ``valid_fraction`` of every piece validates (recorded as ``@tail:FRACTION``)."""
    train, valid = [], []
    for seq in corpus.sequences:
        cut = max(2, int(len(seq) * (1 - valid_fraction)))
        train.append(seq[:cut])
        valid.append(seq[max(0, cut - 1):])
    return train, valid, [f"@tail:{valid_fraction}"]


IGNORE = -100  # target of a padded position: no loss


def _cut_longest(chunked: list[list], target: int) -> list[list]:
    """Halve the longest pieces (lists of windows) until there are ``target`` of them or none can be cut."""
    pieces = [c for c in chunked if c]
    if len(pieces) >= target:
        return chunked
    heap = [(-len(c), k) for k, c in enumerate(pieces)]
    heapq.heapify(heap)
    while len(pieces) < target and heap and -heap[0][0] >= 2:
        _, k = heapq.heappop(heap)
        whole = pieces[k]
        pieces[k], rest = whole[: len(whole) // 2], whole[len(whole) // 2:]
        pieces.append(rest)
        heapq.heappush(heap, (-len(pieces[k]), k))
        heapq.heappush(heap, (-len(rest), len(pieces) - 1))
    return pieces


def piece_batches(
    sequences: list[list[int]],
    encoder: Encoder,
    batch_size: int,
    seq_len: int,
    rng: random.Random,
    augment: bool,
    rank: int = 0,
    world: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch of training windows: (windows [steps, rows, seq_len + 1], restart [steps, rows]).

    Pieces are (augmented,) spread over ``batch_size * world`` rows so that the rows are about equally
    long, and shuffled within each row. Each piece is read ``seq_len`` predictions at a time; the
    recurrent state carries from one window to the next within a piece (truncated back-propagation
    through time) and restarts from zero where a piece begins (``restart``), which is how generation
    starts too. A piece's last window is padded with ``IGNORE``; the epoch ends when half the rows have
    run out; rank ``r`` of ``world`` takes rows ``r::world``.

    A small corpus (fewer than four pieces per row) would leave rows empty and never reach the ends of
    its longest pieces, so its longest pieces are cut in halves at window boundaries until there are
    four segments per row; each segment starts from a zero state, like a piece."""
    rows = batch_size * world
    pieces = [encoder.augment(seq, rng) if augment else seq for seq in sequences]
    chunked = [[p[s: s + seq_len + 1] for s in range(0, len(p) - 1, seq_len)] for p in pieces]
    chunked = _cut_longest(chunked, 4 * rows)
    order = list(range(len(chunked)))
    rng.shuffle(order)
    order.sort(key=lambda i: -len(chunked[i]))  # longest first onto the emptiest row: rows end together
    assigned: list[list[int]] = [[] for _ in range(rows)]
    heap = [(0, r) for r in range(rows)]
    for i in order:
        if not chunked[i]:
            continue
        length, r = heapq.heappop(heap)
        assigned[r].append(i)
        heapq.heappush(heap, (length + len(chunked[i]), r))
    lanes: list[list[list[int]]] = [[] for _ in range(rows)]
    firsts: list[list[bool]] = [[] for _ in range(rows)]
    for r, mine in enumerate(assigned):
        rng.shuffle(mine)
        for i in mine:
            lanes[r].extend(chunk + [IGNORE] * (seq_len + 1 - len(chunk)) for chunk in chunked[i])
            firsts[r].extend([True] + [False] * (len(chunked[i]) - 1))
    # Windows where most rows have run out would be updates from a handful of tokens: leave them out
    # (the pieces come round again, in other places, next epoch).
    lengths = sorted(len(lane) for lane in lanes)
    steps = max(1, lengths[len(lengths) // 2])
    blank = [IGNORE] * (seq_len + 1)
    for lane, first in zip(lanes, firsts):
        del lane[steps:], first[steps:]
        first.extend([True] * (steps - len(lane)))
        lane.extend([blank] * (steps - len(lane)))
    windows = torch.tensor(lanes, dtype=torch.long).transpose(0, 1)[:, rank::world]
    restart = torch.tensor(firsts, dtype=torch.bool).transpose(0, 1)[:, rank::world]
    return windows.contiguous(), restart.contiguous()


def padded_batches(sequences: list[list[int]], batch_size: int, pad: int = 0):
    """Yield (tokens [B, T], lengths [B]) for whole pieces, similar lengths together."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        chunk = [sequences[i] for i in order[start: start + batch_size]]
        longest = max(len(s) for s in chunk)
        batch = torch.full((len(chunk), longest), pad, dtype=torch.long)
        for row, seq in enumerate(chunk):
            batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        yield batch, torch.tensor([len(s) for s in chunk])
