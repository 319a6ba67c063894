"""The ``composer`` command line."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import click

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from composer import __version__
from composer.api import ComposerError, WriteSkipped


class Group(click.Group):
    """Turns user errors into one line and a non-zero exit; ``--debug`` shows tracebacks instead."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except ComposerError as exc:
            if debug:
                raise
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if debug:
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {first} (run with --debug for the traceback)"
            ) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="composer")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def cli(debug: bool) -> None:
    """Learn and generate music, text and drawings with stacked LSTMs.

    \b
    composer sample --style bach             write a new Bach-style chorale
    composer train --encoder E --corpus SRC  train a model on a corpus
    composer plugins                         what is installed
    """


def registry():
    from composer.plugins import get_registry

    return get_registry()


def plugin_options(values: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {key.replace("-", "_"): value for key, value in values}


option_O = click.option("-O", "--option", "options", type=(str, str), multiple=True, metavar="KEY VALUE",
                        help="Plugin option (encoder setting or generation request), repeatable.")
option_device = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")


# ------------------------------------------------------------------------------------ listings


@cli.command()
def plugins() -> None:
    """List loaded plugins, what each provides, and any that failed."""
    reg = registry()
    for info in reg.plugins.values():
        where = info.source + (f" {info.version}" if info.version else "")
        if info.error:
            click.echo(f"{info.name} ({where}): FAILED: {info.error}")
            continue
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.provides.items()) or "nothing"
        click.echo(f"{info.name} ({where}): {provides}")


@cli.command()
def encoders() -> None:
    """List encoders."""
    reg = registry()
    for name, cls in sorted(reg.encoders.items()):
        click.echo(f"{name:14} {cls.modality:8} {cls.description}  [{reg.owner[('encoders', name)]}]")


@cli.command()
def corpora() -> None:
    """List corpus sources: named collections (PREFIX:NAME) and file readers."""
    reg = registry()
    for name, src in sorted(reg.corpora.items()):
        how = f"{name}:NAME" if src.list else " ".join(src.suffixes)
        click.echo(f"{how:28} {src.modality:8} {src.description}")


@cli.command()
def samplers() -> None:
    """List samplers."""
    reg = registry()
    for name, sampler in sorted(reg.samplers.items()):
        click.echo(f"{name:12} {sampler.description}")


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

    path = resolve_checkpoint(target)
    ckpt = load(path)
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
        f"model        {m['layers']}x{m['hidden_size']} {m['cell']}, {params:,} parameters",
    ]
    if meta.get("description"):
        lines.append(f"description  {meta['description']}")
    if prov:
        best = prov.get("best_valid_loss")
        lines += [
            f"corpus       {short_source(str(prov.get('corpus')))} ({prov.get('sequences')} sequences, "
            f"hash {prov.get('corpus_hash')})",
            f"trained      {prov.get('epochs')} epochs, {prov.get('steps')} steps, best valid loss "
            + (f"{best:.4f} nats/token" if best is not None else "-"),
            f"made         {prov.get('date')} by composer {prov.get('project_version')}",
            f"parent       {prov.get('parent') or '-'}",
        ]
    click.echo("\n".join(lines))


def resolve_checkpoint(target: str) -> Path:
    """A style name or a checkpoint path."""
    path = Path(target).expanduser()
    if path.suffix or path.exists() or "/" in target:
        if not path.exists():
            raise ComposerError(f"checkpoint not found: {target}")
        return path
    return registry().style(target).checkpoint


# ---------------------------------------------------------------------------------------- train

TRAIN_FLAGS = {  # CLI flag -> (TrainConfig key, or model.<key>)
    "encoder": "encoder", "corpus": "corpus", "output": "output", "valid_corpus": "valid_corpus",
    "valid_fraction": "valid_fraction", "epochs": "epochs", "max_steps": "max_steps", "eval_every": "eval_every",
    "batch_size": "batch_size", "seq_len": "seq_len", "lr": "lr", "warmup_steps": "warmup_steps",
    "patience": "patience", "seed": "seed", "device": "device", "precision": "precision",
    "workers": "workers", "description": "description",
    "layers": "model.layers", "hidden_size": "model.hidden_size", "embedding_size": "model.embedding_size",
    "dropout": "model.dropout", "cell": "model.cell", "layer_norm": "model.layer_norm",
    "residual": "model.residual", "attention": "model.attention",
}


def build_train_config(config_file: str | None, flags: dict[str, Any], options: dict[str, str],
                       default_output: str | None = None, defaults: dict[str, Any] | None = None):
    """Settings from, in rising priority: ``defaults``, the TOML file, the command-line flags and -O."""
    from composer.train import TrainConfig

    values: dict[str, Any] = {}
    if config_file:
        try:
            values = tomllib.loads(Path(config_file).read_text())
        except FileNotFoundError:
            raise ComposerError(f"config file not found: {config_file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ComposerError(f"{config_file} is not valid TOML: {exc}") from None
    values = {**(defaults or {}), **values}
    for key in ("corpus", "valid_corpus"):
        if isinstance(values.get(key), list):  # a TOML list of sources is the same as one comma-joined string
            values[key] = ",".join(str(part) for part in values[key])
    values.setdefault("model", {})
    values.setdefault("encoder_options", {})
    for flag, key in TRAIN_FLAGS.items():
        if flags.get(flag) is None:
            continue
        if key.startswith("model."):
            values["model"][key[6:]] = flags[flag]
        else:
            values[key] = flags[flag]
    values["encoder_options"].update(options)
    if not values.get("output"):
        values["output"] = default_output or str(
            Path("runs") / (Path(config_file).stem if config_file else values.get("encoder", "run")))
    return TrainConfig.from_dict(values)


def train_options(f):
    opts = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Training settings (TOML)."),
        click.option("--corpus", help="PREFIX:NAME (e.g. music21:bach), a file, a folder or a glob."),
        click.option("-o", "--output", help="Run folder (default runs/NAME)."),
        click.option("--valid-corpus", help="Validate on this corpus instead of a held-out split."),
        click.option("--valid-fraction", type=float, help="Held-out fraction (default 0.1)."),
        click.option("--epochs", type=int, help="Epochs (default 10)."),
        click.option("--max-steps", type=int, help="Stop after this many optimizer steps."),
        click.option("--eval-every", type=int, help="Also validate every N steps (default: at epoch ends)."),
        click.option("--batch-size", type=int, help="Rows per batch (default 32)."),
        click.option("--seq-len", type=int, help="Tokens per window (truncated BPTT; default 128)."),
        click.option("--lr", type=float, help="Peak learning rate (default 2e-3)."),
        click.option("--warmup-steps", type=int, help="Linear warm-up steps (default 100)."),
        click.option("--patience", type=int, help="Early stopping: epochs without improvement (default 5)."),
        click.option("--seed", type=int, help="Random seed (default 0)."),
        click.option("--device", help="auto, cpu, cuda, cuda:N or mps (default auto)."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), help="Default auto."),
        click.option("--workers", type=int, help="Corpus-reading processes (default: one per core)."),
        click.option("--resume", is_flag=True, help="Continue the stopped run in the output folder."),
        option_O,
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def run_training(config, resume: bool) -> None:
    from composer.train import train

    start = time.time()
    trainer = train(config, registry(), resume=resume)
    r = trainer.result
    best = f"{r['best_valid_loss']:.4f}" if r["best_valid_loss"] != float("inf") else "-"
    click.echo(
        f"trained {r['steps']} steps ({r['epochs']} epochs) in {time.time() - start:.0f} s; best validation "
        f"loss {best} nats/token; model: {r['model']}"
    )


@cli.command()
@click.option("--encoder", help="Encoder name (see `composer encoders`).")
@train_options
@click.option("--layers", type=int, help="LSTM layers (default 2).")
@click.option("--hidden-size", type=int, help="Hidden units per layer (default 256).")
@click.option("--embedding-size", type=int, help="Input embedding size (default 128).")
@click.option("--dropout", type=float, help="Dropout between layers (default 0).")
@click.option("--cell", type=click.Choice(["lstm", "gru", "peephole"]), help="Recurrent cell (default lstm).")
@click.option("--layer-norm/--no-layer-norm", default=None, help="Layer norm on each layer's output.")
@click.option("--residual/--no-residual", default=None, help="Residual connections between layers.")
@click.option("--attention", type=int, help="Attend over the last N outputs (0: off).")
@click.option("--description", help="One line stored in the checkpoint.")
def train(config_file, resume, options, **flags) -> None:
    """Train a model from scratch on a corpus.

    \b
    composer train --encoder polyphony --corpus music21:bach -o runs/bach
    composer train --config checkpoints/bach.toml
    composer train --config checkpoints/bach.toml --resume
    """
    config = build_train_config(config_file, flags, plugin_options(options))
    run_training(config, resume)


FINETUNE_FLAGS = {"freeze_embedding": "freeze_embedding", "freeze_layers": "freeze_layers",
                  "layer_lr_decay": "layer_lr_decay", "unfreeze_every": "unfreeze_every"}


@cli.command()
@click.option("--from", "parent", required=True, help="The style or checkpoint to start from.")
@click.option("--name", required=True, help="Name of the new style.")
@train_options
@click.option("--dropout", type=float, help="Dropout while fine-tuning (default: the parent's).")
@click.option("--freeze-embedding", is_flag=True, default=None, help="Keep the input embedding fixed.")
@click.option("--freeze-layers", type=int, help="Keep the lowest K recurrent layers fixed.")
@click.option("--layer-lr-decay", type=float,
              help="Discriminative rates: each group below the head learns at lr * decay^depth (default 1).")
@click.option("--unfreeze-every", type=int, help="Gradual unfreezing: thaw one frozen group every K epochs.")
@click.option("--save-to", type=click.Path(dir_okay=False),
              help="Write the style file here instead of COMPOSER_HOME/styles/NAME.safetensors.")
def finetune(parent, name, config_file, resume, options, save_to, **flags) -> None:
    """Adapt a pretrained model to your own corpus and save it as a style.

    The parent's encoder and vocabulary are reused: input outside them is transposed, mapped or dropped,
    with counts. Defaults differ from `train`: --lr 5e-4, --epochs 5, --warmup-steps 20 (a --config
    recipe's settings win over them). The model keeps the parent's shape; only --dropout may change.

    \b
    composer finetune --from base --corpus ~/my-midis --name mine --epochs 2
    composer sample --style mine
    """
    import re

    from composer.checkpoint import atomic_write, composer_home, read_meta

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ComposerError(f"style name '{name}' may hold only letters, digits, '.', '_' and '-'")
    parent_path = resolve_checkpoint(parent)
    parent_meta = read_meta(parent_path)
    config = build_train_config(config_file, flags, plugin_options(options),
                                default_output=str(composer_home() / "runs" / name),
                                defaults={"lr": 5e-4, "epochs": 5, "warmup_steps": 20})
    config.description = config.description or f"fine-tuned from {parent} on {config.corpus}"
    config.parent, config.parent_name = str(parent_path), parent
    config.sampler_defaults = config.sampler_defaults or parent_meta.get("sampler_defaults", {})
    for flag, key in FINETUNE_FLAGS.items():
        if flags.get(flag) is not None:
            setattr(config, key, flags[flag])
    run_training(config, resume)
    target = Path(save_to) if save_to else composer_home() / "styles" / f"{name}.safetensors"
    best = Path(config.output) / "model.safetensors"
    atomic_write(target, lambda tmp: tmp.write_bytes(best.read_bytes()))
    click.echo(f"style '{name}' saved to {target}; try: composer sample --style {name}"
               if not save_to else f"saved to {target}")


# --------------------------------------------------------------------------------------- sample


def sample_options(f):
    opts = [
        click.option("--style", help="A style name (see `composer styles`)."),
        click.option("--checkpoint", type=click.Path(dir_okay=False), help="A checkpoint file instead of a style."),
        click.option("-n", "--num-outputs", "n", type=int, default=1, show_default=True, help="How many to write."),
        click.option("--seed", type=int, help="Random seed; the same seed gives the same output (default: random)."),
        click.option("--temperature", type=float, help="Softmax temperature (style default, else 1.0)."),
        click.option("--sampler", help="Sampler name (see `composer samplers`)."),
        click.option("--top-k", type=int, help="k for the top-k sampler."),
        click.option("--top-p", type=float, help="p for the top-p sampler."),
        click.option("-o", "--output", "output_dir", default=".", show_default=True, type=click.Path(file_okay=False),
                     help="Folder for the files."),
        click.option("--format", "formats", help="Comma-separated output formats (e.g. mid,musicxml,png,wav)."),
        option_device,
        option_O,
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


class Session:
    """A loaded style or checkpoint, ready to generate and write."""

    def __init__(self, style: str | None, checkpoint_path: str | None, device: str):
        from composer.checkpoint import load_model
        from composer.train import pick_device

        if bool(style) == bool(checkpoint_path):
            raise ComposerError("give either --style NAME or --checkpoint FILE")
        reg = registry()
        self.registry = reg
        self.defaults: dict = {}
        if style:
            found = reg.style(style)
            path, self.name, self.defaults = found.checkpoint, style, dict(found.defaults)
        else:
            path = Path(checkpoint_path)
            self.name = path.parent.name if path.stem == "model" else path.stem
        self.device = pick_device(device)
        self.model, self.encoder, self.meta = load_model(path, reg, self.device)
        self.defaults = {**self.meta.get("sampler_defaults", {}), **self.defaults}

    def requests(self, options: tuple[tuple[str, str], ...]) -> dict[str, str]:
        """``-O`` generation requests, checked against what the encoder takes."""
        values = plugin_options(options)
        known = self.encoder.generation_options
        unknown = [key for key in values if key not in known]
        if unknown:
            raise ComposerError(f"unknown option '{unknown[0]}' for generating with {self.encoder.name} "
                                f"(known: {', '.join(known) or 'none'})")
        return values

    def sampler(self, name: str | None, temperature, top_k, top_p) -> tuple[Any, dict]:
        name = name or self.defaults.get("sampler", "temperature")
        opts = {"temperature": temperature if temperature is not None else self.defaults.get("temperature", 1.0)}
        if top_k is not None or "top_k" in self.defaults:
            opts["top_k"] = top_k if top_k is not None else self.defaults["top_k"]
        if top_p is not None or "top_p" in self.defaults:
            opts["top_p"] = top_p if top_p is not None else self.defaults["top_p"]
        return self.registry.sampler(name), opts

    def writers(self, formats: str | None) -> list:
        modality = self.encoder.modality
        wanted = [f.strip() for f in (formats or self.encoder.default_format).split(",") if f.strip()]
        if not wanted:
            raise ComposerError(f"no output format given and no default for {modality}")
        writers = []
        for fmt in wanted:
            writer = self.registry.writer(modality, fmt)
            missing = writer.available()
            if missing:
                click.echo(f"warning: skipping {fmt}: {missing}", err=True)
                continue
            writers.append(writer)
        if not writers:
            raise ComposerError("none of the requested formats can be written here")
        return writers

    def write(self, sequences: list[list[int]], writers: list, output_dir: str, stem: str) -> tuple[list[str], dict]:
        """Decode and write every sequence in every format; returns the listing lines and, per format, the
        number of items its writer skipped."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        lines, skipped = [], {}
        for i, seq in enumerate(sequences, 1):
            item = self.encoder.decode(seq)
            names = []
            for writer in writers:
                path = out / f"{stem}-{i}{writer.suffix}"
                try:
                    writer.write(item, path)
                except WriteSkipped as exc:
                    path.unlink(missing_ok=True)
                    click.echo(f"warning: not writing {path.name}: {exc}", err=True)
                    skipped[writer.name] = skipped.get(writer.name, 0) + 1
                    continue
                names.append(path.name)
            summary = self.encoder.summarize(item)
            lines.append(", ".join(names) + (f" ({summary})" if summary else ""))
        return lines, skipped


def read_primer(encoder, registry_, path: str) -> list[int]:
    from composer.data import resolve

    pairs = resolve(path, encoder.modality, registry_.corpora)
    src, ref = pairs[0]
    try:
        items = src.load(ref)
    except Exception as exc:
        raise ComposerError(f"cannot read primer {path}: {exc}") from None
    if not items:
        raise ComposerError(f"primer {path} holds nothing usable")
    return encoder.primer(items[0])


def generate_and_write(session: Session, plan: Any, *, n: int, seed: int | None, sampler: str | None,
                       temperature: float | None, top_k: int | None, top_p: float | None, formats: str | None,
                       output_dir: str, primer: list[int], stem: str) -> None:
    """The shared end of `sample` and `harmonize`: generate ``n`` pieces in one batch, write, summarise."""
    from composer.generate import generate

    start = time.time()
    if n < 1:
        raise ComposerError("-n must be at least 1")
    chosen, sampler_opts = session.sampler(sampler, temperature, top_k, top_p)
    writers = session.writers(formats)
    seed = seed if seed is not None else random.SystemRandom().randrange(10_000)
    sequences = generate(
        session.model, session.encoder, chosen, n=n, max_tokens=plan.max_tokens, primer=primer,
        constraint=plan.constraint, seed=seed, device=session.device, sampler_options=sampler_opts,
    )
    lines, skipped = session.write(sequences, writers, output_dir, f"{stem}-{seed}")
    for line in lines:
        click.echo(f"  {line}")
    files = len(lines) * len(writers) - sum(skipped.values())
    notes = "".join(f"; {fmt}: {n - skipped[fmt]} of {n} written" for fmt in skipped for n in [len(lines)])
    click.echo(f"wrote {files} file(s) to {output_dir} in {time.time() - start:.1f} s (seed {seed}){notes}")


@cli.command()
@sample_options
@click.option("--length", type=float, help="Length in the encoder's unit (bars for music, characters for text).")
@click.option("--primer", type=click.Path(exists=True, dir_okay=False), help="Start from this file (e.g. a MIDI).")
@click.option("--prime", "prime_text", help="Start from this text (text models); \\n stands for a newline.")
def sample(style, checkpoint, n, seed, temperature, sampler, top_k, top_p, output_dir, formats, device, options,
           length, primer, prime_text) -> None:
    """Generate new pieces from a style or a checkpoint.

    \b
    composer sample --style bach
    composer sample --style bach -n 8 --seed 1 --format mid,musicxml -o out/
    composer sample --checkpoint runs/mine/model.safetensors --temperature 0.9
    """
    session = Session(style, checkpoint, device)
    primer_tokens: list[int] = []
    if primer:
        primer_tokens = read_primer(session.encoder, session.registry, primer)
    elif prime_text is not None:
        primer_tokens = session.encoder.primer(prime_text.replace("\\n", "\n"))
    if length is None:
        length = session.defaults.get("length")
    plan = session.encoder.generation_plan(length=length, **session.requests(options))
    generate_and_write(session, plan, n=n, seed=seed, sampler=sampler, temperature=temperature, top_k=top_k,
                       top_p=top_p, formats=formats, output_dir=output_dir, primer=primer_tokens, stem=session.name)


@cli.command()
@click.argument("melody_file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--melody", "melody_text",
              help='The melody as MIDI pitches with optional lengths in quarter notes, e.g. "67 67 69:2 r 71:0.5" '
                   "(r: a rest; default length 1).")
@sample_options
def harmonize(melody_file, melody_text, style, checkpoint, n, seed, temperature, sampler, top_k, top_p, output_dir,
              formats, device, options) -> None:
    """Keep a melody as the top voice and write the voices beneath it.

    MELODY_FILE is a MIDI or MusicXML file (its top line is the melody), or give --melody.

    \b
    composer harmonize tune.mid --style bach
    composer harmonize --melody "67 67 69 71 72:2 71:2" --style bach -n 4 --seed 1
    """
    if bool(melody_file) == bool(melody_text):
        raise ComposerError("give a melody: a file argument or --melody, not both")
    session = Session(style, checkpoint, device)
    melody = Path(melody_file) if melody_file else melody_text
    plan = session.encoder.generation_plan(melody=melody, **session.requests(options))
    if plan.constraint is None:
        raise ComposerError(f"the {session.encoder.name} encoder cannot harmonize a melody")
    generate_and_write(session, plan, n=n, seed=seed, sampler=sampler, temperature=temperature, top_k=top_k,
                       top_p=top_p, formats=formats, output_dir=output_dir, primer=[], stem=f"{session.name}-harmony")


def held_out(session: Session, corpus_source: str | None, workers: int | None) -> tuple[list, str]:
    """The sequences to score: the recorded held-out split when the corpus is the training corpus."""
    from composer.data import load_corpus, short_source, split

    prov = session.meta.get("provenance") or {}
    source = corpus_source or prov.get("corpus")
    if not source:
        raise ComposerError("this checkpoint records no training corpus; give --corpus")
    valid = prov.get("valid") or []
    if source == prov.get("corpus") and valid and valid[0].startswith("@corpus:"):
        source, valid = valid[0].split(":", 1)[1], []
    corpus = load_corpus(source, session.encoder, session.registry.corpora, fitted=True, workers=workers)
    if source == prov.get("corpus") and valid:
        _, sequences, _ = split(corpus, 0.1, 0, valid_names=valid)
        return sequences, f"{short_source(source)}, the held-out split recorded in the checkpoint"
    return corpus.sequences, f"{short_source(source)}, all of it"


@cli.command()
@click.option("--style", help="A style name.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="A checkpoint file instead of a style.")
@click.option("--corpus", help="Score this corpus (default: the training corpus's recorded held-out split).")
@click.option("--samples", type=int, default=16, show_default=True,
              help="Pieces to generate for the statistics beside the corpus's own (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the generated pieces.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--workers", type=int, help="Corpus-reading processes.")
@option_device
def evaluate(style, checkpoint, corpus, samples, seed, as_json, workers, device) -> None:
    """Score a model on held-out data and compare generated pieces with the corpus.

    \b
    NLL per token and per time step (all tokens' NLL over the number of time steps), bits per token,
    token accuracy; then statistics of --samples generated pieces beside the corpus's own.

    \b
    composer evaluate --style bach --corpus music21:bach
    """
    from composer.generate import generate
    from composer.train import evaluate_nll

    session = Session(style, checkpoint, device)
    encoder = session.encoder
    sequences, which = held_out(session, corpus, workers)
    total, count, accuracy = evaluate_nll(session.model, sequences, session.device, "fp32")
    steps = sum(encoder.steps(seq) for seq in sequences)
    results: dict[str, Any] = {
        "data": which, "sequences": len(sequences), "tokens": count, "steps": steps,
        "nll_per_token": total / max(1, count), "bits_per_token": total / max(1, count) / math.log(2),
        "nll_per_step": total / max(1, steps), "token_accuracy": accuracy,
    }
    if samples > 0:
        chosen, opts = session.sampler(None, None, None, None)
        plan = encoder.generation_plan(length=session.defaults.get("length"))
        generated = generate(session.model, encoder, chosen, n=samples, max_tokens=plan.max_tokens,
                             constraint=plan.constraint, seed=seed, device=session.device, sampler_options=opts)
        reference = [encoder.decode(seq) for seq in sequences]
        items = [encoder.decode(seq) for seq in generated]
        results["statistics"] = {"corpus": encoder.statistics(reference), "generated": encoder.statistics(items,
                                                                                                         reference)}
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo(f"data           {which}: {len(sequences)} sequences, {count:,} tokens, {steps:,} steps")
    click.echo(f"NLL per token  {results['nll_per_token']:.4f} nats ({results['bits_per_token']:.4f} bits)")
    click.echo(f"NLL per step   {results['nll_per_step']:.4f} nats (steps as {encoder.name} counts them)")
    click.echo(f"token accuracy {accuracy:.4f}")
    stats = results.get("statistics")
    if stats and (stats["corpus"] or stats["generated"]):
        names = list(dict.fromkeys([*stats["corpus"], *stats["generated"]]))
        width = max(len(n) for n in names)
        click.echo(f"\n{'statistic':{width}}  {'corpus':>10}  {f'generated ({samples})':>16}")
        for name in names:
            a, b = stats["corpus"].get(name), stats["generated"].get(name)
            click.echo(f"{name:{width}}  {_fmt(a):>10}  {_fmt(b):>16}")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    cli(prog_name="composer")


from composer.plugins import get_registry as _get_registry  # noqa: E402

_get_registry().pm.hook.register_commands(cli=cli)
