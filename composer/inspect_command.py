"""``composer inspect``: a look inside a style's LSTM over a primer (the work is in :mod:`composer.inspection`)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from composer.api import ComposerError
from composer.commands import open_session, option_device
from composer.inspection import MAX_STEPS

CELL = re.compile(r"(\d+):(\d+)")


def parse_cells(text: str | None) -> int | list[tuple[int, int]]:
    """``--cells``: how many of the most correlated cells to show (``8``), or which (``0:31,1:136``)."""
    if text is None:
        return 8
    if text.strip().isdigit():
        if int(text) < 1:
            raise ComposerError("--cells needs at least one cell")
        return int(text)
    cells = []
    for part in text.replace(" ", "").split(","):
        found = CELL.fullmatch(part)
        if not found:
            raise ComposerError(f"--cells takes a number or LAYER:CELL pairs such as 0:31,1:136; got '{part}'")
        cells.append((int(found.group(1)), int(found.group(2))))
    return cells


@click.command("inspect")
@click.option("--style", help="A style name (see `composer styles`).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="A checkpoint file instead of a style.")
@click.option("--primer", help="A file to read (any file the style's corpus readers take: .mid, .mxl, .abc, .txt).")
@click.option("--prime", help="Text to read, for a text style (\\n stands for a newline).")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="The picture to write [default: inspect-STYLE.png].")
@click.option("--cells", help="How many cells to show (default 8, the most correlated), or which: 0:31,1:136.")
@click.option("--layer", type=int, help="Only the cells of this layer (0 is the lowest).")
@click.option("--top", type=int, default=3, show_default=True, help="Cells to list per property.")
@click.option("--state", type=click.Choice(["c", "h"]), default="c", show_default=True,
              help="Correlate the cell state c (LSTM layers; GRU layers have only h) or the hidden state h.")
@click.option("--max-steps", type=int, default=MAX_STEPS, show_default=True,
              help="Read at most this many positions.")
@click.option("--force", is_flag=True, help="Overwrite the picture if it exists.")
@option_device
def inspect(style, checkpoint, primer, prime, output, cells, layer, top, state, max_steps, force, device) -> None:
    """A look inside the LSTM: run a primer through the model and picture its cells.

    \b
    The model reads the primer teacher-forced (the whole primer as input). Lists the cells whose
    activation follows properties the encoder names (Pearson r; e.g. "inside a slur", "time in bar",
    "position in bar", "soprano pitch") and writes a PNG: the chosen cells over the input, the properties
    under them, the gates' saturation per layer, and for text the characters coloured by the best cells.

    \b
    composer inspect --style irish --prime "X:1\\nT:Reel\\nM:4/4\\nL:1/8\\nK:D\\n|:A2FA DAFA|A2FA BEE2:|"
    composer inspect --style bach --primer chorale.mid -o bach-cells.png --cells 12
    """
    start = time.time()
    shown = parse_cells(cells)
    if top < 1:
        raise ComposerError(f"--top must be at least 1, got {top}")
    if (primer is None) == (prime is None):
        raise ComposerError("give a primer to inspect: --primer FILE or --prime TEXT (one of them)")
    if primer is not None and not Path(primer).is_file():
        raise ComposerError(f"primer not found: {primer}")
    session = open_session(style, checkpoint, device)
    config = session.model.config
    sizes = f"{session.name} has layers 0..{config.layers - 1} of cells 0..{config.hidden_size - 1}"
    if layer is not None and not 0 <= layer < config.layers:
        raise ComposerError(f"no layer {layer}: {sizes}")
    for index, cell in [] if isinstance(shown, int) else shown:
        if not (index < config.layers and cell < config.hidden_size):
            raise ComposerError(f"no cell {index}:{cell}: {sizes}")
    seen = session.inspect(Path(primer) if primer else None, prime=prime, max_steps=max_steps, state=state)
    target = Path(output or f"inspect-{session.name}.png")
    if target.exists() and not force:
        raise ComposerError(f"{target} already exists; use --force to overwrite it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ComposerError(f"cannot make the folder for {target}: {exc.strerror or exc}") from None
    read = f"the first {seen.steps:,} of {seen.steps + seen.left_out:,}" if seen.left_out else f"{seen.steps:,}"
    click.echo(f"{session.name}: {config.layers} layers of {config.hidden_size} {config.cell} cells read {read} "
               "positions (the start token, then the primer), teacher-forced")
    found = seen.top(top, layer)
    if found:
        what = {"c": "cell state c", "h": "hidden state h"}.get(seen.state_name(), f"state {seen.state_name()}")
        where = f" in layer {layer}" if layer is not None else ""
        click.echo(f"cells{where} most correlated with each property (Pearson r of the {what} over the positions):")
        width = max(map(len, found))
        for name, best in found.items():
            click.echo(f"  {name:{width}}  " + "   ".join(str(c) for c in best))
    elif not seen.properties:
        click.echo(f"the {session.encoder.name} encoder names no properties of its positions to correlate with")
    if seen.constant():
        click.echo(f"constant over this input (nothing to correlate): {', '.join(seen.constant())}")
    click.echo("gate saturation (mean fraction of steps with the gate < 0.1 | > 0.9):")
    for index, saturation in enumerate(seen.saturation()):
        gates = "   ".join(f"{gate} {left.mean():.2f} | {right.mean():.2f}"
                           for gate, (left, right) in saturation.items())
        click.echo(f"  layer {index}: {gates}")
    try:
        seen.picture(shown, layer, path=target)
    except ModuleNotFoundError as exc:
        raise ComposerError(f"the picture needs matplotlib: pip install 'lstm-composer[plot]' ({exc})") from None
    except OSError as exc:
        raise ComposerError(f"cannot write {target}: {exc.strerror or exc}") from None
    count = len(shown) if isinstance(shown, list) else len(seen.chosen(shown, layer))
    click.echo(f"wrote {target} ({count} cells over {seen.steps:,} positions) in {time.time() - start:.1f} s")
