"""The MIDI plugin's commands, added through ``register_commands``: ``composer harmonize``, ``composer
reharmonize`` and ``composer play`` (live MIDI out; its workings are in :mod:`composer_midi.live`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from composer import ComposerError
from composer.commands import (
    apply_options,
    file_option_stack,
    generate_and_write,
    generation_options,
    keyed,
    open_session,
    option_checkpoint,
    option_device,
    option_length,
    option_n,
    option_primer,
    option_seed,
    option_style,
    sampler_settings,
    sampling_options,
    write_and_report,
)
from composer.session import check_count, check_seed, new_seed, regenerating


@click.command()
@click.argument("melody_file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--melody", "melody_text",
              help='The melody as MIDI pitches with optional lengths in quarter notes, e.g. "67 67 69:2 r 71:0.5" '
                   "(r: a rest; default length 1).")
@generation_options
def harmonize(melody_file, melody_text, style, checkpoint, device, requests, **opts) -> None:
    """Keep a melody as the top voice and write the voices beneath it.

    MELODY_FILE is a MIDI or MusicXML file (its top line is the melody), or give --melody.

    \b
    composer harmonize tune.mid --style bach
    composer harmonize --melody "67 67 69 71 72:2 71:2" --style bach -n 4 --seed 1
    """
    if bool(melody_file) == bool(melody_text):
        raise ComposerError("give a melody: a file argument or --melody, not both")
    session = open_session(style, checkpoint, device)
    if "melody" not in session.encoder.generation_options:
        raise ComposerError(f"the {session.encoder.name} encoder cannot harmonize a melody")
    requests = {**keyed(requests), "melody": Path(melody_file) if melody_file else melody_text}
    generate_and_write(session, requests=requests, stem=f"{session.name}-harmony", **opts)


def regeneration_options(f: Any) -> Any:
    """--style/--checkpoint, -n, --seed, --sweeps, --temperature, -o, --format, --force, --soundfont, --device."""
    return apply_options([
        option_style, option_checkpoint, option_n, option_seed,
        click.option("--sweeps", type=click.IntRange(min=1), default=20, show_default=True,
                     help="Gibbs sweeps: passes over every regenerated position."),
        click.option("--temperature", type=click.FloatRange(0, 10),
                     help="The temperature the sweeps anneal down to, from 1.5 (default: the style's, else 0.8)."),
        *file_option_stack, option_device], f)


@click.command()
@click.argument("chorale", type=click.Path(exists=True, dir_okay=False))
@click.option("--keep", help="Voices to keep as they are, e.g. soprano,bass (or s,b); the others are regenerated.")
@click.option("--bars", help="Regenerate only these bars, e.g. 5-8 (counted from 1; a pickup bar is bar 1).")
@regeneration_options
def reharmonize(chorale, keep, bars, style, checkpoint, device, n, seed, sweeps, temperature, output_dir, formats,
                force, soundfont) -> None:
    """Regenerate voices or bars of a four-part chorale, keeping the rest note for note.

    CHORALE is a MIDI or MusicXML file in four voices (four parts, or notes that split into four voices).
    A bidirectional model (DeepBach's) redraws each regenerated note from what comes before and after it
    and from the other voices, sweep after sweep. A style whose own model is not bidirectional uses its
    companion NAME-reharm (`--style bach` uses bach-reharm).

    \b
    composer reharmonize chorale.mid --keep soprano,bass --style bach
    composer reharmonize chorale.mid --bars 5-8 --style bach -n 4 --seed 1 --format mid,png
    composer reharmonize chorale.mid --keep soprano --bars 1-4 --style bach
    """
    from tqdm import tqdm

    start = time.time()
    target = regenerating(style) if style else None
    session = open_session(target, checkpoint, device)
    check_count(n)  # before the file names of n pieces are made
    seed = new_seed() if seed is None else seed
    check_seed(seed)
    stem = session.stem(seed, session.name if session.name.endswith("-reharm") else f"{session.name}-reharm")
    writers, _ = session.writers(formats)
    session.check_free(session.targets(n, output_dir, writers, stem), force)  # before the work, not after
    with tqdm(total=sweeps, desc="sweeps", unit="sweep", leave=False, disable=None) as bar:
        pieces = session.regenerate(Path(chorale), n, seed=seed, requests={"keep": keep, "bars": bars},
                                    sweeps=sweeps, temperature=temperature,
                                    progress=lambda done, total: bar.update(done - bar.n))
    if target is not None and target != style:  # said once the work is done: an error stays one line
        click.echo(f"regenerated with {target}, the bidirectional companion of {style}", err=True)
    write_and_report(session, pieces, output_dir=output_dir, formats=formats, stem=stem, force=force, start=start,
                     soundfont=soundfont)


class Progress:
    """Elapsed and total seconds on one line of stderr, redrawn at most ten times a second; only on a
    terminal, where a redrawn line reads as a clock (in a log file it would be hundreds of lines)."""

    def __init__(self, total: float, stream: Any = None) -> None:
        self.total, self.stream = total, stream or sys.stderr
        self.live = self.stream.isatty()
        self.elapsed, self.shown = 0.0, -1.0

    def __call__(self, elapsed: float) -> None:
        self.elapsed = elapsed
        if self.live and (elapsed - self.shown >= 0.1 or elapsed >= self.total):
            self.shown = elapsed
            self.stream.write(f"\r  {min(elapsed, self.total):6.1f} / {self.total:.1f} s")
            self.stream.flush()

    def close(self) -> None:
        if self.live and self.shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


@click.command()
@sampling_options
@option_length
@option_primer
@click.option("--label", help="The class to generate, for a class-conditional model.")
@click.option("--port", "port_name", metavar="NAME",
              help="Output port: its exact name or a unique part of it (default: the first port). "
                   "With --virtual: the new port's name (default composer).")
@click.option("--list-ports", is_flag=True, help="List the MIDI output ports, one per line, and exit.")
@click.option("--virtual", is_flag=True,
              help="Open a new virtual output port for a DAW or synth to connect to (ALSA, JACK, macOS).")
@click.pass_context
def play(ctx, style, checkpoint, device, seed, sampler, sampler_options, temperature, top_k, top_p, requests,
         length, primer, label, port_name, list_ports, virtual) -> None:
    """Generate a piece and play it on a MIDI output port in real time.

    A DAW or a synth listening on the port plays and records it. Needs the midi-out extra:
    pip install 'lstm-composer[midi-out]'. Ctrl-C stops it and turns every note off.

    \b
    composer play --list-ports
    composer play --style bach --seed 1
    composer play --style bach --port FLUID --temperature 0.9
    composer play --style irish --virtual
    """
    from composer_midi import live

    ports = live.output_ports()
    if list_ports:
        names = ports.names()
        for name in names:
            click.echo(name)
        if not names:
            click.echo(live.NO_PORTS, err=True)
        return
    name, picked = (port_name or live.VIRTUAL_NAME, False) if virtual else ports.choose(port_name)
    session = open_session(style, checkpoint, device)
    live.playable(session)
    port = ports.open(name, virtual)  # before generating: a port that fails should not cost a piece's time
    try:
        if virtual:
            click.echo(f"virtual MIDI port '{name}' is open", err=True)
        seed = new_seed() if seed is None else seed
        pieces = session.generate(1, seed=seed, length=length, sampler=sampler,
                                  primer=Path(primer) if primer else None, requests=keyed(requests), label=label,
                                  **sampler_settings(sampler_options, temperature, top_k, top_p))
        timed = live.messages(live.to_midi(session, pieces[0]))
        if not any(message.type == "note_on" for _, message in timed):
            raise ComposerError("the piece has no notes to play; try another --seed or a longer --length")
        total = timed[-1][0]
        if virtual and sys.stdin.isatty():
            click.echo("connect your DAW or synth to it, then press Enter to start", err=True)
            sys.stdin.readline()
        elif picked:
            click.echo(f"playing on '{name}', the first MIDI output port (--port picks another)", err=True)
        progress = Progress(total)
        try:
            live.play(timed, port, progress=progress)
        except KeyboardInterrupt:
            progress.close()
            click.echo(f"stopped at {progress.elapsed:.1f} of {total:.1f} s; all notes off", err=True)
            ctx.exit(130)
        progress.close()
    finally:
        port.close()
    summary = session.encoder.summarize(pieces[0])
    click.echo(f"played {session.stem(seed)} ({summary + ', ' if summary else ''}{total:.1f} s) on '{name}' "
               f"(seed {seed}, sampler {pieces.sampler})")
