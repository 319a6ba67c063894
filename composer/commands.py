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
import time
from pathlib import Path
from typing import Any

import click

from composer.api import ComposerError
from composer.session import Session, new_seed

option_O = click.option("-O", "--option", "requests", type=(str, str), multiple=True, metavar="KEY VALUE",
                        help="Encoder option or generation request (see `composer encoders`), repeatable.")
option_device = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")


option_style = click.option("--style", help="A style name (see `composer styles`).")
option_checkpoint = click.option("--checkpoint", type=click.Path(dir_okay=False),
                                 help="A checkpoint file instead of a style.")
option_n = click.option("-n", "--num-outputs", "n", type=int, default=1, show_default=True, help="How many to write.")
option_seed = click.option("--seed", type=click.IntRange(min=0),
                           help="Random seed; the same seed and settings give the same output (default: random).")
option_length = click.option("--length", type=float,
                             help="Length in the model's own unit (`composer encoders` gives each encoder's).")
option_primer = click.option("--primer", type=click.Path(exists=True, dir_okay=False),
                             help="Continue this file (any file the model's corpus readers take).")
sampler_option_stack = [
    click.option("--sampler", help="Sampler, i.e. generation strategy (see `composer samplers`)."),
    click.option("-S", "--sampler-option", "sampler_options", type=(str, str), multiple=True, metavar="KEY VALUE",
                 help="Sampler option, repeatable (e.g. -S beam_size 8; `composer samplers` lists them)."),
    click.option("--temperature", type=float, help="Shorthand for -S temperature T."),
    click.option("--top-k", type=int, help="Shorthand for -S top_k K."),
    click.option("--top-p", type=float, help="Shorthand for -S top_p P."),
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
    """Generate ``n`` pieces in one batch, write them (never over an existing file without ``force``), list
    them and summarise. ``label``: a class-conditional model's class; ``like``: a file to draw variations of;
    ``interpolate``: two files to morph between (autoencoders)."""
    start = time.time()
    options = sampler_settings(sampler_options, temperature, top_k, top_p)
    seed = new_seed() if seed is None else seed
    writers, _ = session.writers(formats)
    name = session.stem(seed, stem)
    session.check_free(session.targets(n, output_dir, writers, name), force)  # before the work, not after
    requests = requests if isinstance(requests, dict) else keyed(requests)
    if interpolate:
        if like is not None:
            raise ComposerError("give --like or --interpolate, not both")
        pieces = session.interpolate(*interpolate, n=n, seed=seed, length=length, sampler=sampler, primer=primer,
                                     requests=requests, label=label, **options)
    else:
        pieces = session.generate(n, seed=seed, length=length, sampler=sampler, primer=primer, requests=requests,
                                  label=label, like=like, **options)
    write_and_report(session, pieces, output_dir=output_dir, formats=formats, stem=name, force=force, start=start,
                     soundfont=soundfont)


def write_and_report(session: Session, pieces: Any, *, output_dir: str, formats: str | None, stem: str, force: bool,
                     start: float, soundfont: str | None = None) -> None:
    """Write pieces from one run (``pieces.seed``, ``pieces.sampler``), list the files and summarise the run
    begun at ``start`` (``time.time()``). ``soundfont``: for wav output through FluidSynth."""
    if soundfont:  # read by the wav writer (the MIDI plugin), like the variable set by hand
        os.environ["COMPOSER_SOUNDFONT"] = str(Path(soundfont).resolve())
    written = session.write(pieces, output_dir, formats, stem=stem, force=force)
    for warning in written.warnings:
        click.echo(f"warning: {warning}", err=True)
    for line in written.lines:
        click.echo(f"  {line}")
    n = len(pieces)
    notes = "".join(f"; {fmt}: {n - count} of {n} written" for fmt, count in written.skipped.items())
    click.echo(f"wrote {len(written.files)} file(s) to {output_dir} in {time.time() - start:.1f} s "
               f"(seed {pieces.seed}, sampler {pieces.sampler}){notes}")
