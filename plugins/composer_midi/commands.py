"""``composer harmonize``: the MIDI plugin's command, added through ``register_commands``."""

from __future__ import annotations

from pathlib import Path

import click

from composer import ComposerError
from composer.commands import generate_and_write, generation_options, keyed, open_session


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
