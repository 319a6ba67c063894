"""The ``composer`` command line."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

# The composer program itself (the console scripts, python -m composer), not a host that imports this module.
_PROGRAM = "composer" in Path(sys.argv[0]).parts[-2:] or Path(sys.argv[0]).stem in ("composer", "lstm-composer")
# Starting a command imports torch and the plugins: a million objects and no garbage, which the cyclic
# collector would walk again and again meanwhile, and once more at exit (together about a third of a
# second, a sixth of `composer sample`). So it waits until they are in and then leaves them out of its walks.
_COLLECTING = gc.isenabled()
if _PROGRAM:
    gc.disable()
    if "--debug" not in sys.argv[1:]:
        import warnings

        warnings.simplefilter("ignore")  # the imports' own (Group.invoke keeps them hidden while a command runs)

import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from composer import __version__  # noqa: E402
from composer.api import ComposerError  # noqa: E402
from composer.commands import (  # noqa: E402
    generate_and_write,
    generation_options,
    keyed,
    open_session,
    option_device,
    option_length,
    option_primer,
)
from composer.serve import serve_command  # noqa: E402
from composer.session import FINETUNE_DEFAULTS  # noqa: E402


class UsageLine(click.UsageError):
    """A usage error in one line (click prints the usage, a hint and the error on three):
    ``Error: No such option '--bogus' (see composer sample --help)``, exit status 2."""

    def show(self, file: Any = None) -> None:
        where = f" (see {self.ctx.command_path} --help)" if self.ctx is not None else ""
        click.echo(f"Error: {self.message}{where}", err=True, file=file)


def printable(message: str) -> str:
    """``message`` on one line that a terminal shows as it is: line breaks become spaces, and any other
    character that does not print (a control character from a user's input, say) is written escaped."""
    text = " ".join(message.split())
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _one_line(exc: click.UsageError) -> click.UsageError:
    """The error as a :class:`UsageLine`, unless it shows itself its own way (a bare command shows its help)."""
    if type(exc).show is not click.UsageError.show:
        return exc
    return UsageLine(printable(exc.format_message()).rstrip("."), exc.ctx)


class Group(click.Group):
    """Turns user errors into one line and a non-zero exit; ``--debug`` shows tracebacks instead. Without
    ``--debug`` the warnings of libraries (torch, music21, pretty_midi) are not shown: they speak to
    programmers, and what a user must know the command says itself."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            return self._invoke(ctx, debug)

    def _invoke(self, ctx: click.Context, debug: bool) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None
        except (click.exceptions.Exit, click.exceptions.Abort, BrokenPipeError):
            raise
        except click.ClickException as exc:
            if type(exc) is not click.ClickException:
                raise
            raise click.ClickException(printable(exc.message)) from None
        except ComposerError as exc:
            if debug:
                raise
            raise click.ClickException(printable(str(exc))) from None
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if debug:
                raise
            first = printable((str(exc).strip().splitlines() or [""])[0])
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {first} (run with --debug for the traceback)"
            ) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="composer")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option("--plugins-dir", type=click.Path(file_okay=False), envvar="COMPOSER_PLUGINS_DIR",
              help="Also load every *.py file and package folder in DIR as a plugin [env COMPOSER_PLUGINS_DIR].",
              metavar="DIR")
def cli(debug: bool, plugins_dir: str | None) -> None:
    """Learn and generate music, text and drawings with stacked LSTMs.

    \b
    composer sample --style bach             write a new Bach-style chorale
    composer train --encoder E --corpus SRC  train a model on a corpus
    composer plugins                         what is installed
    """
    if plugins_dir and os.environ.get("COMPOSER_PLUGINS_DIR") != plugins_dir:
        # given here but not seen at import (cli called from Python): load the registry again with it
        from composer import plugins

        os.environ["COMPOSER_PLUGINS_DIR"] = plugins_dir
        plugins.reset()


def plugins_dir_from_argv(argv: list[str]) -> str | None:
    """``--plugins-dir DIR`` among the group's options (before the subcommand): read at import so that a
    plugin file's ``register_commands`` can add its commands before click parses the command line."""
    args = iter(argv)
    for arg in args:
        if arg == "--plugins-dir":
            return next(args, None)
        if arg.startswith("--plugins-dir="):
            return arg.split("=", 1)[1]
        if not arg.startswith("-"):
            return None  # the subcommand
    return None


def registry():
    from composer.plugins import get_registry

    return get_registry()


option_O = click.option("-O", "--option", "options", type=(str, str), multiple=True, metavar="KEY VALUE",
                        help="Encoder option, repeatable (see `composer encoders`).")


# ------------------------------------------------------------------------------------ listings


@cli.command()
def plugins() -> None:
    """List loaded plugins, what each provides, and any that failed."""
    reg = registry()
    for info in reg.plugins.values():
        where = info.source + (f" {info.version}" if info.version else "")
        if info.origin == "entry point":
            where = f"entry point, {where}"
        elif info.origin in ("file", "given"):
            where = f"{info.origin} {info.source}"
        if info.error:
            click.echo(f"{info.name} ({where}): FAILED: {info.error}")
            continue
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.provides.items()) or "nothing"
        click.echo(f"{info.name} ({where}): {provides}")
        if info.hooks:
            click.echo(f"    hooks: {', '.join(info.hooks)}")


@cli.command()
def encoders() -> None:
    """List encoders: modality, what --length counts, options (-O at training) and generation requests."""
    reg = registry()
    for name, cls in sorted(reg.encoders.items()):
        click.echo(f"{name:14} {cls.modality:8} {cls.description}  [{reg.owner[('encoders', name)]}]")
        options = ", ".join(f.name for f in dataclasses.fields(cls.Options)) or "none"
        requests = ", ".join(cls.generation_options) or "none"
        click.echo(f"{'':14} length in {cls.length_unit}; options: {options}; generation requests: {requests}")


@cli.command()
def corpora() -> None:
    """List corpus sources: named collections (PREFIX:NAME) and file readers."""
    reg = registry()
    for name, src in sorted(reg.corpora.items()):
        how = f"{name}:NAME" if src.list else " ".join(src.suffixes)
        click.echo(f"{how:28} {src.modality:8} {src.description}")


@cli.command()
def samplers() -> None:
    """List samplers (generation strategies) and their options (-S KEY VALUE)."""
    reg = registry()
    for name, sampler in sorted(reg.samplers.items()):
        click.echo(f"{name:12} {sampler.description}")
        defaults = sampler.options()
        shown = {key: getattr(defaults, key) for key in sampler.option_names}
        options = ", ".join(f"{k} {str(v).lower() if isinstance(v, bool) else v}" for k, v in shown.items()) or "none"
        click.echo(f"{'':12} options: {options}")


@cli.command()
def writers() -> None:
    """List output formats (--format) for each modality."""
    reg = registry()
    for (modality, fmt), writer in sorted(reg.writers.items()):
        missing = writer.available()
        click.echo(f"{modality:8} {fmt:10} {writer.description}" + (f" (unavailable: {missing})" if missing else ""))


@cli.command()
def styles() -> None:
    """List styles: shipped ones and your own fine-tuned ones."""
    from composer.checkpoint import read_meta

    reg = registry()
    if not reg.styles:
        click.echo("no styles installed")
    for name, style in sorted(reg.styles.items()):
        try:
            meta = read_meta(style.checkpoint)
        except ComposerError as exc:
            click.echo(f"{name:12} unreadable: {exc}")
            continue
        parent = (meta.get("provenance") or {}).get("parent")
        extra = f" (from {Path(parent).stem})" if parent else ""
        click.echo(f"{name:12} {meta['encoder']['name']:11} {style.source:9} {style.description}{extra}")


@cli.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the whole metadata as JSON.")
def info(target: str, as_json: bool) -> None:
    """Describe a checkpoint file or a style."""
    from composer.checkpoint import load
    from composer.data import short_source
    from composer.session import resolve_checkpoint

    path = resolve_checkpoint(target)
    ckpt = load(path, registry())
    meta = ckpt.meta
    if as_json:
        click.echo(json.dumps(meta, indent=2, sort_keys=True))
        return
    params = sum(t.numel() for t in ckpt.weights.values())
    m = meta["model"]
    prov = meta.get("provenance") or {}
    lines = [
        f"checkpoint   {path} ({path.stat().st_size / 1e6:.1f} MB, format {meta['format_version']})",
        f"encoder      {meta['encoder']['name']} ({meta['encoder'].get('modality', '?')})",
        f"model        {m['layers']}x{m['hidden_size']} {m['cell']}, {params:,} parameters" + (
            f"; vae with a {m.get('latent_size')}-dim code (bidirectional {m.get('encoder_size')}-unit encoder)"
            if m.get("family") == "vae" else f"; family {m['family']}" if m.get("family", "rnn") != "rnn" else ""),
    ]
    labels = meta.get("labels")
    if isinstance(labels, list) and labels:
        shown = " ".join(map(str, labels[:40])) + (" ..." if len(labels) > 40 else "")
        lines.append(f"labels       {len(labels)}: {shown}")
    if meta.get("description"):
        lines.append(f"description  {meta['description']}")
    if isinstance(prov, dict) and prov:
        best = prov.get("best_valid_loss")
        lines += [
            f"corpus       {short_source(str(prov.get('corpus')))} ({prov.get('sequences')} sequences, "
            f"hash {prov.get('corpus_hash')})",
            f"trained      {prov.get('epochs')} epochs, {prov.get('steps')} steps, best valid loss "
            + (f"{best:.4f} nats/token" if isinstance(best, int | float) else "-"),
            f"made         {prov.get('date')} by composer {prov.get('project_version')}",
            f"parent       {prov.get('parent') or '-'}",
        ]
    click.echo("\n".join(_clipped(line) for line in lines))


INFO_WIDTH = 300  # characters of one line of `composer info`; --json prints everything


def _clipped(line: str) -> str:
    """One line of ``info`` as a terminal should get it: control characters (a crafted file's escape codes,
    newlines) shown escaped, and a long value cut with a note."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line[:INFO_WIDTH])
    if len(line) <= INFO_WIDTH:
        return shown
    return f"{shown}... ({len(line):,} characters; composer info --json shows all)"


# ---------------------------------------------------------------------------------------- train


def train_options(overrides: dict[str, Any] | None = None, run_folder: str = "runs/NAME"):
    """The options shared by train and finetune; help shows the defaults that command uses (``overrides``
    over TrainConfig's, and where its run folder goes)."""
    from composer.training import TrainConfig

    d = {**dataclasses.asdict(TrainConfig()), **(overrides or {})}
    recipe = " A --config recipe's settings win over these defaults." if overrides else ""
    opts = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="Training settings (TOML)." + recipe),
        click.option("--corpus", help="PREFIX:NAME (e.g. music21:bach), a file, a folder or a glob."),
        click.option("-o", "--output", help=f"Run folder (default {run_folder})."),
        click.option("--valid-corpus", help="Validate on this corpus instead of a held-out split."),
        click.option("--valid-fraction", type=float, help=f"Held-out fraction (default {d['valid_fraction']})."),
        click.option("--epochs", type=int, help=f"Epochs (default {d['epochs']})."),
        click.option("--max-steps", type=int, help="Stop after this many optimizer steps."),
        click.option("--eval-every", type=int, help="Also validate every N steps (default: at epoch ends)."),
        click.option("--batch-size", type=int, help=f"Rows per batch (default {d['batch_size']})."),
        click.option("--seq-len", type=int, help=f"Tokens per window (truncated BPTT; default {d['seq_len']})."),
        click.option("--lr", type=float, help=f"Peak learning rate (default {d['lr']:g})."),
        click.option("--warmup-steps", type=int, help=f"Linear warm-up steps (default {d['warmup_steps']})."),
        click.option("--min-lr-ratio", type=float,
                     help=f"The cosine decay ends at lr times this (default {d['min_lr_ratio']:g})."),
        click.option("--weight-decay", type=float, help=f"AdamW weight decay (default {d['weight_decay']:g})."),
        click.option("--clip", type=float, help=f"Gradient norm clipping (default {d['clip']:g})."),
        click.option("--augment/--no-augment", default=None,
                     help="Augment the training data as the encoder does (transposition, stroke jitter; default on)."),
        click.option("--time-budget", type=float, metavar="MINUTES",
                     help="Stop within this many minutes; the learning-rate schedule is fitted to it from the "
                          "measured step time, so the rate decays to its end on time, and the best model is kept."),
        click.option("--save-every", type=int,
                     help=f"Steps between resume-state saves (default {d['save_every']}; 0: epoch ends only)."),
        click.option("--patience", type=int,
                     help=f"Early stopping: epochs without improvement (default {d['patience']})."),
        click.option("--seed", type=int, help=f"Random seed (default {d['seed']})."),
        click.option("--device", help="auto, cpu, cuda, cuda:N or mps (default auto)."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), help="Default auto."),
        click.option("--workers", type=int, help="Corpus-reading processes (default: one per core)."),
        click.option("--resume", is_flag=True, help="Continue the stopped run in the output folder."),
        option_O,
    ]

    def decorate(f):
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


def main_rank() -> bool:
    """False in the other processes of a torchrun launch: rank 0 alone reports a training run."""
    return int(os.environ.get("RANK", 0)) == 0


def report_training(result: dict) -> None:
    if not main_rank():
        return
    loss = result["best_valid_loss"]
    best = f"{loss:.4f}" if loss != float("inf") else "-"
    click.echo(f"trained {result['steps']} steps ({result['epochs']} epochs) in {result['seconds']:.0f} s; best "
               f"validation loss {best} nats/token; model: {result['model']}")


@cli.command()
@click.option("--encoder", help="Encoder name (see `composer encoders`).")
@train_options()
@click.option("--layers", type=int, help="LSTM layers (default 2).")
@click.option("--hidden-size", type=int, help="Hidden units per layer (default 256).")
@click.option("--embedding-size", type=int, help="Input embedding size (default 128).")
@click.option("--dropout", type=float, help="Dropout between layers (default 0).")
@click.option("--cell", type=click.Choice(["lstm", "gru", "peephole"]), help="Recurrent cell (default lstm).")
@click.option("--layer-norm/--no-layer-norm", default=None, help="Layer norm on each layer's output.")
@click.option("--residual/--no-residual", default=None, help="Residual connections between layers.")
@click.option("--attention", type=int, help="Attend over the last N outputs (0: off).")
@click.option("--recurrent-dropout", type=float, help="Dropout on each LSTM step's update (default 0).")
@click.option("--label", is_flag=True, default=None,
              help="Class-conditional: condition on each item's label (a glyph's character, a drawing's word).")
@click.option("--family", help="Model family: rnn (default) or vae (a bidirectional encoder to a latent code).")
@click.option("--latent-size", type=int, help="vae: size of the latent code.")
@click.option("--encoder-size", type=int, help="vae: hidden units per direction of the encoder (default 256).")
@click.option("--kl-weight", type=float, help="vae: weight of the KL term (default 0.5).")
@click.option("--kl-tolerance", type=float, help="vae: free bits, nats per code dimension (default 0.2).")
@click.option("--kl-anneal", type=int, help="vae: steps over which the KL weight rises to its value (default 0).")
@click.option("--label-size", type=int, help="Size of the label embedding with --label (default 32).")
@click.option("--description", help="One line stored in the checkpoint.")
@click.option("--force", is_flag=True, help="Replace the run in the output folder (its model, state and metrics).")
def train(config_file, resume, options, force, **flags) -> None:
    """Train a model from scratch on a corpus.

    \b
    composer train --encoder polyphony --corpus music21:bach -o runs/bach
    composer train --config checkpoints/bach.toml
    composer train --config checkpoints/bach.toml --resume
    composer train --encoder strokes --corpus cat.npz --family vae --latent-size 64 -o runs/cat
    """
    from composer.session import train as train_model

    report_training(train_model(config_file, resume=resume, force=force, encoder_options=keyed(options), **flags))


@cli.command()
@click.option("--from", "parent", required=True, help="The style or checkpoint to start from.")
@click.option("--name", required=True, help="Name of the new style.")
@train_options(FINETUNE_DEFAULTS, run_folder="COMPOSER_HOME/runs/NAME")
@click.option("--dropout", type=float, help="Dropout while fine-tuning (default: the parent's).")
@click.option("--freeze-embedding", is_flag=True, default=None, help="Keep the input embedding fixed.")
@click.option("--freeze-layers", type=int, help="Keep the lowest K recurrent layers fixed.")
@click.option("--layer-lr-decay", type=float,
              help="Discriminative rates: each group below the head learns at lr * decay^depth (default 1).")
@click.option("--unfreeze-every", type=int, help="Gradual unfreezing: thaw one frozen group every K epochs.")
@click.option("--save-to", type=click.Path(dir_okay=False),
              help="Write the style file here instead of COMPOSER_HOME/styles/NAME.safetensors.")
@click.option("--force", is_flag=True, help="Replace an existing style of this name (and its run folder).")
def finetune(parent, name, config_file, resume, options, save_to, force, **flags) -> None:
    """Adapt a pretrained model to your own corpus and save it as a style.

    The parent's encoder and vocabulary are reused: input outside them is transposed, mapped or dropped,
    with counts. The model keeps the parent's shape; only --dropout may change.

    \b
    composer finetune --from base --corpus ~/my-midis --name mine --epochs 2
    composer sample --style mine
    """
    from composer.session import finetune as finetune_model

    result = finetune_model(parent, name, config_file, save_to=save_to, resume=resume, force=force,
                            encoder_options=keyed(options), **flags)
    report_training(result)
    if main_rank():
        click.echo(f"style '{name}' saved to {result['style']}; try: composer sample --style {name}"
                   if result["installed"] else f"saved to {result['style']}")


# --------------------------------------------------------------------------------------- sample


@cli.command()
@generation_options
@option_length
@option_primer
@click.option("--label", help="The class to generate, for a class-conditional model (default: one per piece).")
@click.option("--like", type=click.Path(exists=True, dir_okay=False),
              help="Autoencoders: draw variations of this file (e.g. a drawing's .svg).")
@click.option("--interpolate", type=(click.Path(exists=True, dir_okay=False), click.Path(exists=True, dir_okay=False)),
              metavar="A B", help="Autoencoders: morph from file A to file B in -n steps.")
def sample(style, checkpoint, device, length, primer, label, like, interpolate, **opts) -> None:
    """Generate new pieces from a style or a checkpoint.

    \b
    composer sample --style bach
    composer sample --style bach -n 8 --seed 1 --format mid,musicxml -o out/
    composer sample --style bach --sampler beam -S beam_size 8
    composer sample --checkpoint runs/mine/model.safetensors --temperature 0.9
    composer sample --style hershey --label g -n 16
    composer sample --checkpoint runs/cat/model.safetensors --like my-cat.svg -n 8
    """
    session = open_session(style, checkpoint, device)
    generate_and_write(session, length=length, primer=Path(primer) if primer else None, label=label,
                       like=Path(like) if like else None,
                       interpolate=tuple(Path(p) for p in interpolate) if interpolate else None, **opts)


@cli.command()
@click.option("--style", help="A style name.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="A checkpoint file instead of a style.")
@click.option("--corpus", help="Score this corpus (default: the training corpus's recorded held-out split).")
@click.option("--samples", type=click.IntRange(min=0), default=64, show_default=True,
              help="Pieces to generate for the statistics beside the corpus's own (0: none).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed for the generated pieces.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--workers", type=int, help="Corpus-reading processes.")
@click.option("--rank", "rank_source", type=click.Path(exists=True),
              help="Instead: rank the items of this file or folder by how unlikely the model finds them.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True, help="With --rank: how many to list.")
@option_device
def evaluate(style, checkpoint, corpus, samples, seed, as_json, workers, rank_source, top, device) -> None:
    """Score a model on held-out data and compare generated pieces with the corpus.

    \b
    NLL per token and per time step (all tokens' NLL over the number of time steps), bits per token,
    token accuracy; then statistics of --samples generated pieces beside the corpus's own.

    \b
    composer evaluate --style bach --corpus music21:bach
    composer evaluate --checkpoint runs/cat/model.safetensors --rank my-drawings/
    """
    from composer.session import evaluate as evaluate_model

    if bool(style) == bool(checkpoint):
        raise ComposerError("give either --style NAME or --checkpoint FILE")
    if rank_source:
        ranked = open_session(style, checkpoint, device).rank(rank_source, workers)
        if as_json:
            click.echo(json.dumps([{"item": name, "nll_per_step": score} for name, score in ranked], indent=2))
            return
        click.echo(f"{len(ranked)} item(s), most unlikely first (NLL per step, nats):")
        for name, score in ranked[:top]:
            click.echo(f"  {score:9.4f}  {name}")
        return
    results = evaluate_model(style or Path(checkpoint), corpus=corpus, samples=samples, seed=seed, workers=workers,
                             device=device)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    unit = results["unit"]  # what the model predicts: a token, or a position of a feature sequence
    click.echo(f"data           {results['data']}: {results['sequences']} sequences, {results['tokens']:,} {unit}s, "
               f"{results['steps']:,} steps")
    click.echo(f"NLL per {unit:7}{'' if unit == 'token' else ' '}{results['nll_per_token']:.4f} nats "
               f"({results['bits_per_token']:.4f} bits)")
    click.echo(f"NLL per step   {results['nll_per_step']:.4f} nats (steps as the encoder counts them)")
    if results["token_accuracy"] == results["token_accuracy"]:  # not nan: the model predicts tokens
        click.echo(f"token accuracy {results['token_accuracy']:.4f}")
    if "nll_without_end" in results["metrics"]:
        click.echo(f"NLL w/o END    {results['metrics']['nll_without_end']:.4f} nats per token, "
                   f"{results['nll_per_step_without_end']:.4f} nats per step (the end tokens left out, as "
                   "benchmarks that score only the music count it)")
    sketch = results.get("sketch_rnn")
    if sketch:
        kl = f"{sketch['L_KL']:.4f}" if sketch["L_KL"] is not None else "- (no latent code)"
        click.echo(f"L_R            {sketch['L_R']:.4f} (L_s {sketch['L_s']:.4f} + L_p {sketch['L_p']:.4f}; "
                   f"Sketch-RNN's reconstruction loss over N_max = {sketch['N_max']} positions)")
        click.echo(f"L_KL           {kl}")
    stats = results.get("statistics")
    if stats and (stats["corpus"] or stats["generated"]):
        names = list(dict.fromkeys([*stats["corpus"], *stats["generated"]]))
        width = max(len(n) for n in names)
        click.echo(f"\n{'statistic':{width}}  {'corpus':>10}  {f'generated ({samples})':>16}")
        for name in names:
            a, b = stats["corpus"].get(name), stats["generated"].get(name)
            click.echo(f"{name:{width}}  {_fmt(a):>10}  {_fmt(b):>16}")


cli.add_command(serve_command)  # the web page (composer/serve.py; its extra is imported when it runs)

from composer.inspect_command import inspect  # noqa: E402 - its own module: the command is long

cli.add_command(inspect)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    try:
        cli(prog_name="composer")
    except BrokenPipeError:
        # the reader went away (`composer --help | head -1`): not an error of ours; silence the final flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    finally:
        if _PROGRAM:
            gc.freeze()  # the process ends: no walk over everything at exit


_argv_plugins_dir = plugins_dir_from_argv(sys.argv[1:]) if _PROGRAM else None
if _argv_plugins_dir:
    os.environ["COMPOSER_PLUGINS_DIR"] = _argv_plugins_dir
    from composer.plugins import reset as _reset  # noqa: E402

    _reset()

from composer.plugins import get_registry as _get_registry  # noqa: E402

_get_registry().pm.hook.register_commands(cli=cli)

if _PROGRAM:  # everything is imported: collect from here on, leaving out what is in now
    gc.freeze()
    if _COLLECTING:
        gc.enable()
