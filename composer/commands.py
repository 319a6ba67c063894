"""Building blocks for commands, shared by ``composer``'s own commands and plugins' ``register_commands``:
the option stack of a generating command and its end (generate, write, list the files, summarise).

A plugin's command looks like this (the MIDI plugin's ``harmonize`` is one)::

    @click.command()
    @generation_options
    def mine(style, checkpoint, device, **opts):
        session = open_session(style, checkpoint, device)
        generate_and_write(session, requests={...}, **opts)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from composer.api import ComposerError
from composer.generate import PRIME_WINDOW
from composer.session import BATCH, MAX_OUTPUTS, MAX_TOKENS, Session, check_count, check_seed, new_seed

option_O = click.option("-O", "--option", "requests", type=(str, str), multiple=True, metavar="KEY VALUE",
                        help="Encoder option or generation request (see `composer encoders`), repeatable.")
option_device = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")


option_style = click.option("--style", help="A style name (see `composer styles`).")
option_checkpoint = click.option("--checkpoint", type=click.Path(dir_okay=False),
                                 help="A checkpoint file instead of a style.")
option_n = click.option("-n", "--num-outputs", "n", type=int, default=1, show_default=True,
                        help=f"How many to write (at most {MAX_OUTPUTS:,}); made and written {BATCH} at a time, the "
                             f"first {BATCH} the same whatever -n.")
option_seed = click.option("--seed", type=click.IntRange(min=0),
                           help="Random seed, 0 to 2**63 - 1; the same seed and settings give the same output "
                                "(default: random).")
option_length = click.option("--length", type=float,
                             help="Length in the model's own unit (`composer encoders` gives each encoder's): a "
                                  f"number > 0, at most {MAX_TOKENS:,} tokens a piece.")
option_primer = click.option("--primer", type=click.Path(exists=True, dir_okay=False),
                             help="Continue this file (any file the model's corpus readers take; at most "
                                  f"{MAX_TOKENS:,} tokens, read by the model {PRIME_WINDOW:,} at a time).")
sampler_option_stack = [
    click.option("--sampler", help="Sampler, i.e. generation strategy (see `composer samplers`)."),
    click.option("-S", "--sampler-option", "sampler_options", type=(str, str), multiple=True, metavar="KEY VALUE",
                 help="Sampler option, repeatable (e.g. -S beam_size 8; `composer samplers` lists them)."),
    click.option("--temperature", type=float,
                 help="Shorthand for -S temperature T: 0 (always the most likely token) or from 0.001 to 1000."),
    click.option("--top-k", type=int,
                 help="Shorthand for -S top_k K: the K most likely tokens (0: no cut). With a style whose sampler "
                      "has no top_k, and no --sampler, the ancestral sampler applies it."),
    click.option("--top-p", type=float, help="Shorthand for -S top_p P: 0 < P <= 1."),
]
file_option_stack = [
    click.option("-o", "--output", "output_dir", default=".", show_default=True, type=click.Path(file_okay=False),
                 help="Folder for the files."),
    click.option("--format", "formats", help="Comma-separated output formats (`composer writers` lists them)."),
    click.option("--force", is_flag=True, help="Overwrite files of the same name."),
    click.option("--soundfont", type=click.Path(exists=True, dir_okay=False),
                 help="General MIDI soundfont (.sf2) for wav output through FluidSynth (sets COMPOSER_SOUNDFONT)."),
]


def apply_options(options: list[Any], f: Any) -> Any:
    """``f`` decorated with click options, listed in the order help shows them."""
    for opt in reversed(options):
        f = opt(f)
    return f


def generation_options(f: Any) -> Any:
    """--style/--checkpoint, -n, --seed, --sampler and its options, -o, --format, --force, --soundfont,
    --device, -O."""
    return apply_options([option_style, option_checkpoint, option_n, option_seed, *sampler_option_stack,
                          *file_option_stack, option_device, option_O], f)


def sampling_options(f: Any) -> Any:
    """--style/--checkpoint, --seed, --sampler and its options, --device, -O: generation_options without the
    file options, for a command that generates one piece and does something else with it (``play``)."""
    return apply_options([option_style, option_checkpoint, option_seed, *sampler_option_stack, option_device,
                          option_O], f)


def sampler_settings(sampler_options: tuple = (), temperature: float | None = None, top_k: int | None = None,
                     top_p: float | None = None) -> dict[str, Any]:
    """The sampler's options from ``-S`` pairs and the ``--temperature``/``--top-k``/``--top-p`` shorthands
    (which win)."""
    options: dict[str, Any] = keyed(sampler_options)
    options.update({k: v for k, v in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p))
                    if v is not None})
    return options


def keyed(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """``-O``/``-S`` pairs as a dict with ``-`` in keys read as ``_``."""
    return {key.replace("-", "_"): value for key, value in pairs}


def open_session(style: str | None, checkpoint: str | None, device: str) -> Session:
    """The session for ``--style NAME`` or ``--checkpoint FILE`` (exactly one)."""
    if bool(style) == bool(checkpoint):
        raise ComposerError("give either --style NAME or --checkpoint FILE")
    return Session(style if style else Path(checkpoint), device=device)


def generate_and_write(session: Session, *, n: int, seed: int | None, sampler: str | None,
                       sampler_options: tuple = (), temperature: float | None = None, top_k: int | None = None,
                       top_p: float | None = None, output_dir: str, formats: str | None, force: bool,
                       requests: tuple | dict = (), length: float | None = None, primer: Any = None,
                       stem: str | None = None, label: str | None = None, like: Any = None,
                       interpolate: tuple | None = None, soundfont: str | None = None) -> None:
    """Generate ``n`` pieces batch by batch (see :meth:`Session.batches`), write each batch as soon as it is
    done (never over an existing file without ``force``), list the files and summarise; a long run shows
    a progress bar on stderr. ``label``: a class-conditional model's class; ``like``: a file to draw
    variations of; ``interpolate``: two files to morph between (autoencoders)."""
    start = time.time()
    check_count(n)  # before anything is made for n pieces (their file names, say)
    use_soundfont(soundfont)
    options = sampler_settings(sampler_options, temperature, top_k, top_p)
    seed = new_seed() if seed is None else seed
    check_seed(seed)
    writers, _ = session.writers(formats)
    name = session.stem(seed, stem)
    grids = [p for p in session.grid_targets(output_dir, writers, name) if p is not None] if n > 1 else []
    session.check_free(session.targets(n, output_dir, writers, name) + [grids], force)  # before the work
    requests = requests if isinstance(requests, dict) else keyed(requests)
    settings = dict(seed=seed, length=length, sampler=sampler, primer=primer, requests=requests, label=label,
                    **options)
    if interpolate:
        if like is not None:
            raise ComposerError("give --like or --interpolate, not both")
        progress = GenerationProgress(n, 0)
        batches = iter([session.interpolate(*interpolate, n=n, **settings)])
    else:
        progress = GenerationProgress(n, session.plan(length, requests).max_tokens)
        batches = session.batches(n, like=like, progress=progress.step, **settings)
    files, skipped, done, kept, sampler_name = 0, {}, 0, [], ""
    with progress:
        for pieces in batches:
            written = session.write(pieces, output_dir, formats, stem=name, force=force, first=done + 1, total=n,
                                    grids=False)
            done += len(pieces)
            sampler_name = pieces.sampler
            kept += list(pieces) if grids else []  # only drawings have a grid, and they are small
            files += len(written.files)
            for fmt, count in written.skipped.items():
                skipped[fmt] = skipped.get(fmt, 0) + count
            progress.done(len(pieces))
            with progress.paused():
                for warning in written.warnings:
                    click.echo(f"warning: {warning}", err=True)
                for line in written.lines:
                    click.echo(f"  {line}")
    if grids:
        written = session.write_grids(kept, output_dir, formats, stem=name, force=force)
        files += len(written.files)
        for line in written.lines:
            click.echo(f"  {line}")
    summarise(files, n, skipped, output_dir=output_dir, start=start, seed=seed, sampler=sampler_name)


def write_and_report(session: Session, pieces: Any, *, output_dir: str, formats: str | None, stem: str, force: bool,
                     start: float, soundfont: str | None = None) -> None:
    """Write pieces from one run (``pieces.seed``, ``pieces.sampler``), list the files and summarise the run
    begun at ``start`` (``time.time()``). ``soundfont``: for wav output through FluidSynth."""
    use_soundfont(soundfont)
    written = session.write(pieces, output_dir, formats, stem=stem, force=force)
    for warning in written.warnings:
        click.echo(f"warning: {warning}", err=True)
    for line in written.lines:
        click.echo(f"  {line}")
    summarise(len(written.files), len(pieces), written.skipped, output_dir=output_dir, start=start, seed=pieces.seed,
              sampler=pieces.sampler)


def use_soundfont(soundfont: str | None) -> None:
    """Hand ``--soundfont`` to the wav writer (the MIDI plugin reads it, like the variable set by hand)."""
    if soundfont:
        os.environ["COMPOSER_SOUNDFONT"] = str(Path(soundfont).resolve())


def summarise(files: int, n: int, skipped: dict[str, int], *, output_dir: str, start: float, seed: int,
              sampler: str) -> None:
    """The run's last line: files written, where, how long, seed and sampler, and formats skipped for some
    pieces; a run that wrote nothing is an error."""
    notes = "".join(f"; {fmt}: {n - count} of {n} written" for fmt, count in skipped.items())
    if not files:
        raise ComposerError(f"nothing written: every piece was skipped ({notes[2:]})")
    click.echo(f"wrote {files} file(s) to {output_dir} in {time.time() - start:.1f} s "
               f"(seed {seed}, sampler {sampler}){notes}")


LONG_PIECE = 10_000  # tokens per piece from which a single batch shows a progress bar too


class GenerationProgress:
    """A progress bar on stderr for a long run (more than one batch, or pieces of ``LONG_PIECE`` tokens or
    more): the pieces written and the running batch's step; nothing for a short run (a chorale takes a
    second). A context manager: the bar goes when the run ends."""

    def __init__(self, n: int, max_tokens: int) -> None:
        self.n, self.shown_at = n, 0.0
        self.wanted = n > BATCH or max_tokens >= LONG_PIECE
        self.bar: Any = None  # made when the work starts: an error in the settings comes alone

    def _bar(self) -> Any:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=self.n, unit="piece", desc="generating", file=sys.stderr, leave=False,
                            disable=not self.wanted)
        return self.bar

    def step(self, steps: int, max_tokens: int) -> None:
        """Session.generate's ``progress``: after each step of a batch, shown at most twice a second."""
        now = time.monotonic()
        if self.wanted and now - self.shown_at >= 0.5:
            self.shown_at = now
            self._bar().set_postfix_str(f"step {steps:,} of at most {max_tokens:,}")

    def done(self, pieces: int) -> None:
        self._bar().update(pieces)

    def paused(self) -> Any:
        """A context in which lines can be printed without breaking the bar."""
        return self._bar().external_write_mode()

    def __enter__(self) -> GenerationProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
