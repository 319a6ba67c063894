"""Generation jobs for the web page (``composer serve``): requests checked when they arrive, queued, and run
in order by one worker thread, each job's files in its own temporary folder.

This is library code on top of :mod:`composer.session`, free of any web framework: the server turns HTTP
into :meth:`JobQueue.submit` and :meth:`JobQueue.status` calls and their results into JSON. One worker,
because generation on a CPU gains nothing from running two models at once; a queue, because a second
request while one runs must wait, not fail. Memory stays bounded: at most ``MAX_WAITING`` jobs wait, the
last ``KEEP_JOBS`` finished ones are kept (older ones are forgotten and their folders deleted), and a few
styles stay loaded.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.api import ComposerError
from composer.plugins import Registry, get_registry
from composer.session import MAX_OUTPUTS, MAX_TOKENS, Pieces, Session, new_seed

# Limits of the page, tighter than the library's (a page shows every piece and one worker serves everyone)
PAGE_MAX_OUTPUTS = min(16, MAX_OUTPUTS)  # pieces per job
PAGE_MAX_TOKENS = min(20_000, MAX_TOKENS)  # per piece: about 200 bars of chorale, 5 s of generation on a CPU
MAX_LENGTH = 1_000_000  # in any encoder's unit (bars, characters, points): past any token limit, but finite
MAX_TEMPERATURE = 10.0  # far past where every sampler's output is noise
MAX_UPLOAD = 4_000_000  # bytes of a primer file
MAX_WAITING = 20  # queued jobs; more is a script gone wrong
KEEP_JOBS = 50  # finished jobs (with their files) kept for the page
KEEP_SESSIONS = 4  # styles kept loaded
NOTES = "midi"  # the modality whose items are notes (PrettyMIDI): the page draws them as a piano roll and plays them
AUDIO = "wav"  # the format of NOTES the page plays
IMAGES = (".svg", ".png")  # a written file the page shows as the piece itself, in this order of preference
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class NoSuchJob(ComposerError):
    """A job id or file name the queue does not know (forgotten, or never made)."""


class Sessions:
    """Loaded styles, the last ``KEEP_SESSIONS`` used, shared by request threads (checking) and the worker."""

    def __init__(self, registry: Registry, device: str = "auto") -> None:
        self.registry, self.device = registry, device
        self._loaded: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, style: str) -> Session:
        if not isinstance(style, str) or not style:
            raise ComposerError("choose a style")
        with self._lock:
            if style not in self._loaded:
                self.registry.style(style)  # an unknown name is a one-line error listing the styles
                self._loaded[style] = Session(style, device=self.device, registry=self.registry)
                while len(self._loaded) > KEEP_SESSIONS:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(style)
            return self._loaded[style]


# ------------------------------------------------------------------------------------ requests


@dataclass
class Settings:
    """A checked generation request: what :meth:`Session.generate` gets."""

    style: str
    n: int = 1
    seed: int = 0
    length: float | None = None
    sampler: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the sampler's: temperature
    requests: dict[str, str] = field(default_factory=dict)  # the encoder's: melody, prime, ...
    label: str | None = None
    primer: Path | None = None  # an uploaded file, saved in the job's folder
    primer_name: str | None = None  # as the user named it
    uploads: dict[str, str] = field(default_factory=dict)  # saved path of an uploaded file -> the user's name

    def as_dict(self) -> dict[str, Any]:
        requests = {key: self.uploads.get(value, value) for key, value in self.requests.items()}
        return {"style": self.style, "n": self.n, "seed": self.seed, "length": self.length, "sampler": self.sampler,
                "options": self.options, "requests": requests, "label": self.label, "primer": self.primer_name}

    def named(self, message: str) -> str:
        """A message with uploaded files' saved paths replaced by the names the user gave them."""
        for path, name in self.uploads.items():
            message = message.replace(path, name)
        return message


def shown(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def number(data: dict, key: str, kind: type, low: float, high: float, what: str) -> Any:
    """``data[key]`` as an int or float within ``[low, high]``, or None where it is missing or empty."""
    value = data.get(key)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError
        parsed = float(value)
        if parsed != parsed or (kind is int and not parsed.is_integer()):  # nan, or a fraction for a count
            raise ValueError
        parsed = int(parsed) if kind is int else parsed
    except (ValueError, OverflowError):
        raise ComposerError(f"{what} must be a {'whole ' if kind is int else ''}number, got {value!r}") from None
    if not low <= parsed <= high:
        raise ComposerError(f"{what} must be between {shown(low)} and {shown(high)}, got {shown(parsed)}")
    return parsed


def text_field(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ComposerError(f"{key} must be text, got {value!r}")
    return value


def read_settings(data: Any) -> Settings:
    """The fields of a request that need no model: types and the page's limits; one-line errors."""
    if not isinstance(data, dict):
        raise ComposerError("the request must be a JSON object")
    known = {"style", "n", "seed", "length", "sampler", "temperature", "requests", "uploads", "label", "primer"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ComposerError(f"unknown field '{unknown[0]}' (known: {', '.join(sorted(known))})")
    requests = data.get("requests") or {}
    if not isinstance(requests, dict) or not all(isinstance(v, str) for v in requests.values()):
        raise ComposerError("requests must be an object of text values, e.g. {\"melody\": \"67 69 71\"}")
    seed = number(data, "seed", int, 0, 2**31 - 1, "seed")
    length = number(data, "length", float, 0, MAX_LENGTH, "length")
    if length == 0:
        raise ComposerError("length must be more than 0")
    temperature = number(data, "temperature", float, 0, MAX_TEMPERATURE, "temperature")
    return Settings(
        style=text_field(data, "style") or "",
        n=number(data, "n", int, 1, PAGE_MAX_OUTPUTS, "the number of pieces") or 1,
        seed=new_seed() if seed is None else seed,
        length=length,
        sampler=text_field(data, "sampler"),
        options={} if temperature is None else {"temperature": temperature},
        requests={key: value for key, value in requests.items() if value.strip()},
        label=text_field(data, "label"),
    )


def save_upload(upload: Any, folder: Path, what: str) -> tuple[Path, str]:
    """An uploaded file ``{"name": ..., "data": BASE64}`` saved in ``folder`` under its own (cleaned) name,
    in a subfolder per use (``what``), so that two uploads of one name do not collide."""
    if not isinstance(upload, dict) or not isinstance(upload.get("data"), str):
        raise ComposerError(f"an upload ({what}) must be {{\"name\": FILE NAME, \"data\": BASE64 CONTENT}}")
    name = str(upload.get("name") or what)
    if len(upload["data"]) > MAX_UPLOAD * 4 // 3 + 4:
        raise ComposerError(f"the file {name} is larger than {MAX_UPLOAD // 1_000_000} MB")
    try:
        content = base64.b64decode(upload["data"], validate=True)
    except (binascii.Error, ValueError):
        raise ComposerError(f"the file {name} did not arrive as base64") from None
    if not content:
        raise ComposerError(f"the file {name} is empty")
    path = folder / "uploads" / SAFE_NAME.sub("_", what) / (SAFE_NAME.sub("_", Path(name).name).lstrip(".") or what)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path, name


def save_uploads(data: dict, settings: Settings, folder: Path) -> None:
    """The primer file and any files given for the encoder's requests (a melody to harmonize), saved in the
    job's folder: a request's upload is passed to the encoder as the saved file's path."""
    if data.get("primer"):
        settings.primer, settings.primer_name = save_upload(data["primer"], folder, "primer")
        settings.uploads[str(settings.primer)] = settings.primer_name
    uploads = data.get("uploads") or {}
    if not isinstance(uploads, dict):
        raise ComposerError("uploads must be an object: request name -> file")
    for key, upload in uploads.items():
        if upload:
            path, name = save_upload(upload, folder, key)
            settings.requests[key] = str(path)
            settings.uploads[str(path)] = name


def check(session: Session, settings: Settings) -> None:
    """Everything the library would refuse, refused before the job waits in the queue: the sampler and its
    options, the length and the encoder's requests (and the page's token limit), the label, the primer."""
    session.sampler(settings.sampler, settings.options).options(settings.options, session.defaults)
    plan = session.plan(settings.length, settings.requests, most=None)  # the page's own limit is lower
    if plan.max_tokens > PAGE_MAX_TOKENS:
        raise ComposerError(f"that length asks for up to {plan.max_tokens:,} tokens per piece; this page makes at "
                            f"most {PAGE_MAX_TOKENS:,} (length is in {session.encoder.length_unit})")
    if settings.label is not None and settings.label not in session.labels:
        raise ComposerError(f"{session.name} takes no label" if not session.labels else
                            f"unknown label {settings.label!r} for {session.name}")
    if settings.primer is not None:
        if len(plan.primer):
            raise ComposerError("give one primer: a primer file or a prime request, not both")
        tokens = session.primer(settings.primer)
        if len(tokens) >= PAGE_MAX_TOKENS:
            raise ComposerError(f"the primer {settings.primer_name} is too long for this page")


# ----------------------------------------------------------------------------------------- jobs


@dataclass(eq=False)
class Job:
    """One request and what became of it: ``queued``, ``running``, ``writing`` (its files), ``done`` or
    ``failed``."""

    id: str
    settings: Settings
    folder: Path
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    steps: int = 0
    max_steps: int = 0
    error: str | None = None
    pieces: Pieces | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # file name -> (format, piece index)
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while files are written
    inspections: dict[int, dict[str, Any]] = field(default_factory=dict)  # piece index -> Inspection.report()

    def on_step(self, steps: int, max_steps: int) -> None:
        self.steps, self.max_steps = steps, max_steps

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started


class JobQueue:
    """Jobs waiting, running and finished; one worker thread runs them in the order they came."""

    def __init__(self, registry: Registry | None = None, device: str = "auto") -> None:
        self.registry = registry or get_registry()
        self.sessions = Sessions(self.registry, device)
        self.root = Path(tempfile.mkdtemp(prefix="composer-serve-"))
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.waiting: deque[Job] = deque()
        self.running: Job | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="composer-jobs", daemon=True)
        self._worker.start()

    # -- the request side
    def submit(self, data: Any) -> Job:
        """Check a request (one-line ComposerError for anything wrong) and queue it as a job."""
        settings = read_settings(data)
        with self._lock:
            if len(self.waiting) >= MAX_WAITING:
                raise ComposerError(f"{MAX_WAITING} jobs are waiting already; try again when some have finished")
        session = self.sessions.get(settings.style)
        job_id = f"{next(self._ids)}-{new_seed():04d}"
        folder = self.root / job_id
        folder.mkdir()
        try:
            save_uploads(data, settings, folder)
            check(session, settings)
        except ComposerError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise ComposerError(settings.named(str(exc))) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = Job(job_id, settings, folder)
        with self._lock:
            self.jobs[job.id] = job
            self.waiting.append(job)
            self._wake.notify()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise NoSuchJob(f"no job {job_id} (the page keeps the last {KEEP_JOBS})")
        return job

    def status(self, job: Job) -> dict[str, Any]:
        """What the page shows of a job: its state, its place in the queue, its progress and its results."""
        with self._lock:
            ahead = list(self.waiting).index(job) + (self.running is not None) if job in self.waiting else 0
        out = {"id": job.id, "state": job.state, "ahead": ahead, "settings": job.settings.as_dict(),
               "steps": job.steps, "max_steps": job.max_steps, "seconds": round(job.seconds, 2)}
        if job.state == "failed":
            out["error"] = job.error
        if job.state == "done":
            out.update(pieces=job.results, warnings=job.warnings, sampler=job.pieces.sampler)
        return out

    def file(self, job: Job, name: str) -> Path:
        """A file of a finished job, written now if the page asks for a format not written yet."""
        if job.state != "done" or name not in job.files:
            raise NoSuchJob(f"job {job.id} has no file {name}")
        path = job.folder / name
        with job.lock:
            if not path.exists():
                fmt, _ = job.files[name]
                session = self.sessions.get(job.settings.style)
                written = session.write(job.pieces, job.folder, [fmt], stem=self.stem(session, job), force=True)
                if not path.exists():
                    raise ComposerError(next((w for w in written.warnings if name in w), f"{name} was not written"))
        return path

    def inspect(self, job: Job, index: int) -> dict[str, Any]:
        """A look inside the model for piece ``index`` (from 0) of a finished job: the generated tokens read
        again, the cells most correlated with the encoder's properties, and the picture among the job's
        files. Made once per piece, on first request."""
        if job.state != "done" or not 0 <= index < len(job.pieces.sequences):
            raise NoSuchJob(f"job {job.id} has no piece {index + 1} to look inside")
        with job.lock:
            if index not in job.inspections:
                from composer.inspection import inspect_sequence

                session = self.sessions.get(job.settings.style)
                cond = None
                if job.pieces.labels:
                    cond = session.label_ids([job.pieces.labels[index]])
                name = f"{job.results[index]['name']}-inside.png"
                title = f"{session.name}, {job.results[index]['name']} (generated)"
                found = inspect_sequence(session.model, job.pieces.sequences[index].tokens, session.encoder,
                                         cond=cond, title=title)
                found.picture(path=job.folder / name)
                job.files[name] = ("inside", index)
                job.inspections[index] = {**found.report(), "image": f"jobs/{job.id}/files/{name}"}
        return job.inspections[index]

    def close(self) -> None:
        """Stop the worker after its job and delete every job's files."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._worker.join(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the worker
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self.waiting and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self.running = self.waiting.popleft()
            self._run(job)
            with self._lock:
                self.running = None
                self._forget_old()

    def _run(self, job: Job) -> None:
        job.state, job.started = "running", time.time()
        try:
            session = self.sessions.get(job.settings.style)
            s = job.settings
            job.pieces = session.generate(s.n, seed=s.seed, length=s.length, sampler=s.sampler, primer=s.primer,
                                          requests=s.requests, label=s.label, progress=job.on_step, **s.options)
            job.state = "writing"
            self._write(session, job)
            job.state = "done"
        except ComposerError as exc:
            job.error, job.state = job.settings.named(str(exc)), "failed"
        except Exception as exc:  # a bug or a plugin's failure: one line on the page, and the server goes on
            job.error, job.state = job.settings.named(one_line(exc)), "failed"
        finally:
            job.finished = time.time()

    def _forget_old(self) -> None:
        """Keep the last KEEP_JOBS finished jobs; forget older ones and delete their files."""
        finished = [job for job in self.jobs.values() if job.state in ("done", "failed")]
        for job in finished[: max(0, len(finished) - KEEP_JOBS)]:
            del self.jobs[job.id]
            shutil.rmtree(job.folder, ignore_errors=True)

    # -- results
    @staticmethod
    def stem(session: Session, job: Job) -> str:
        return session.stem(job.settings.seed)

    def _write(self, session: Session, job: Job) -> None:
        """Write the encoder's default formats (and audio for notes) now; list every format the modality has,
        to be written when first asked for."""
        pieces, stem = job.pieces, self.stem(session, job)
        written = session.write(pieces, job.folder, stem=stem, force=True)
        job.warnings = list(written.warnings)
        writers = [w for (modality, _), w in sorted(self.registry.writers.items())
                   if modality == session.encoder.modality and w.available() is None]
        rows = session.targets(len(pieces), job.folder, writers, stem)
        for index, (item, row) in enumerate(zip(pieces, rows)):
            job.files.update({path.name: (w.name, index) for w, path in zip(writers, row)})
            job.results.append(self._result(session, job, index, item, row, writers))

    def _result(self, session: Session, job: Job, index: int, item: Any, row: list[Path], writers: list) -> dict:
        """One piece as the page shows it: its summary, notes to draw, text, an image, audio, its files."""
        base = f"jobs/{job.id}/files/"
        result: dict[str, Any] = {"name": row[0].stem if row else f"{index + 1}",
                                  "summary": session.encoder.summarize(item)}
        if isinstance(item, str):
            result["text"] = item
        notes = item if session.encoder.modality == NOTES else self._notes_of(row)
        if notes is not None:
            result["notes"] = note_json(notes)
            audio = self._audio(notes, job.folder / f"{row[0].stem}.wav" if row else None)
            if audio is not None:
                job.files.setdefault(audio.name, (AUDIO, index))
                result["audio"] = base + audio.name
        image = next((p for suffix in IMAGES for p in row if p.suffix == suffix and p.exists()), None)
        if image is not None:
            result["image"] = base + image.name
        result["files"] = [{"format": w.name, "name": p.name, "url": base + p.name} for w, p in zip(writers, row)]
        if "audio" in result and not any(f["format"] == AUDIO for f in result["files"]):
            result["files"].append({"format": AUDIO, "name": Path(result["audio"]).name, "url": result["audio"]})
        return result

    def _notes_of(self, row: list[Path]) -> Any:
        """The notes of a piece of another modality that a writer rendered as MIDI (an ABC tune), read back by
        the notes modality's own reader; None where there is none or it does not read."""
        midi = next((p for p in row if p.suffix == ".mid" and p.exists()), None)
        readers = [src for src in self.registry.corpora.values() if src.modality == NOTES and ".mid" in src.suffixes]
        if midi is None or not readers:
            return None
        try:
            return readers[0].load(str(midi))[0]
        except Exception:  # a rendering the reader cannot take: the page shows the text alone
            return None

    def _audio(self, notes: Any, path: Path | None) -> Path | None:
        """The notes as audio (the notes modality's wav writer), or None where it cannot write here."""
        writer = self.registry.writers.get((NOTES, AUDIO))
        if path is None or writer is None or writer.available() is not None:
            return None
        if not path.exists():
            try:
                writer.write(notes, path)
            except ComposerError:
                return None
        return path


def one_line(exc: BaseException) -> str:
    """An unexpected error as the command line shows one: its type and the first line of its message."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"unexpected {type(exc).__name__}: {first}"


def note_json(midi: Any) -> dict[str, Any]:
    """The notes of a PrettyMIDI for a piano roll: ``[pitch, start, end, voice]`` rows (seconds, rounded to a
    millisecond), the voices' names (instrument names, else their programs) and the end time."""
    voices, notes = [], []
    for instrument in midi.instruments:
        if not instrument.notes:
            continue
        voice = len(voices)
        voices.append(instrument.name or ("drums" if instrument.is_drum else f"program {instrument.program}"))
        notes += [[n.pitch, round(n.start, 3), round(n.end, 3), voice] for n in instrument.notes]
    return {"voices": voices, "notes": notes, "end": round(float(midi.get_end_time()), 3)}


def style_list(registry: Registry) -> list[dict[str, Any]]:
    """The styles as the page offers them (those that generate new pieces): description, source, encoder, what
    length counts, the default settings, the encoder's generation requests and a class-conditional model's
    labels."""
    from composer.checkpoint import read_meta

    styles = []
    for name, style in sorted(registry.styles.items()):
        try:
            meta = read_meta(style.checkpoint)
            encoder = registry.encoder(meta["encoder"]["name"])
        except ComposerError as exc:
            styles.append({"name": name, "source": style.source, "error": str(exc)})
            continue
        if meta.get("model", {}).get("family") == "gibbs":
            continue  # a bidirectional style regenerates parts of a piece (reharmonize); the page writes new ones
        defaults = {**meta.get("sampler_defaults", {}), **style.defaults}
        styles.append({"name": name, "description": style.description, "source": style.source,
                       "encoder": encoder.name, "modality": encoder.modality, "length_unit": encoder.length_unit,
                       "defaults": defaults, "requests": list(encoder.generation_options),
                       "labels": list(meta.get("labels") or [])})
    return styles


def sampler_list(registry: Registry) -> list[dict[str, Any]]:
    """The samplers and their options' defaults."""
    out = []
    for name, sampler in sorted(registry.samplers.items()):
        defaults = sampler.options()
        out.append({"name": name, "description": sampler.description,
                    "options": {key: getattr(defaults, key) for key in sampler.option_names}})
    return out


def limits() -> dict[str, Any]:
    return {"max_outputs": PAGE_MAX_OUTPUTS, "max_tokens": PAGE_MAX_TOKENS, "max_temperature": MAX_TEMPERATURE,
            "max_upload": MAX_UPLOAD}
