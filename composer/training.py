"""Training and fine-tuning: devices, precision, truncated BPTT over token streams, validation, early
stopping, atomic checkpoints, resume, Ctrl-C, DistributedDataParallel under torchrun."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from composer import checkpoint
from composer.api import ComposerError, Encoder
from composer.data import Corpus, class_ids, epoch_steps, load_corpus, piece_batches, split, split_index
from composer.model import ModelConfig, SequenceModel, build_model, detach_state, reset_rows


@dataclass
class TrainConfig:
    corpus: str = ""  # corpus source: PREFIX:NAME, a file, a folder or a glob
    encoder: str = ""  # registered encoder name (ignored when fine-tuning: the parent's is used)
    encoder_options: dict = field(default_factory=dict)
    output: str = ""  # run folder: model.safetensors (best), state.pt (resume), metrics.jsonl
    valid_corpus: str = ""  # a separate validation corpus instead of a split
    valid_fraction: float = 0.1
    model: dict = field(default_factory=dict)  # ModelConfig fields
    epochs: int = 10
    max_steps: int = 0  # 0: no limit
    batch_size: int = 32
    seq_len: int = 128  # steps per training window (truncated BPTT); whole pieces for autoencoders and padded data
    label: bool = False  # class-conditional: condition the model on each item's label (the labels go in the checkpoint)
    label_size: int = 32  # size of the label embedding
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio
    weight_decay: float = 0.01
    warmup_steps: int = 100
    clip: float = 1.0
    patience: int = 5  # epochs without validation improvement before stopping; 0 never stops early
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0  # corpus-reading processes; 0: one per core
    save_every: int = 200  # steps between resume-state writes
    eval_every: int = 0  # steps between validations inside an epoch (0: only at each epoch's end)
    description: str = ""
    sampler_defaults: dict = field(default_factory=dict)
    # fine-tuning
    parent: str = ""  # checkpoint to start from (its encoder and model config are reused)
    parent_name: str = ""  # the style name the parent was given by, for provenance
    freeze_embedding: bool = False
    freeze_layers: int = 0  # freeze the lowest k recurrent layers
    layer_lr_decay: float = 1.0  # discriminative rates: each group below the head gets lr * decay^depth
    unfreeze_every: int = 0  # gradual unfreezing: every k epochs one more frozen group (top first) trains
    time_budget: float = 0.0  # minutes: fit the learning-rate schedule to this and stop within it (0: no budget)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ComposerError(f"unknown training setting(s): {', '.join(unknown)} "
                                f"(known: {', '.join(sorted(known))})")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise a one-line ComposerError naming the first setting (and its flag) of the wrong type or out of
        range, and the valid range."""
        for name, value in dataclasses.asdict(self).items():
            if name in SETTINGS:
                check_setting(name, value, SETTINGS[name])
        if not isinstance(self.model, dict):
            raise ComposerError("model settings must be a table ([model] in a recipe), "
                                f"got {type(self.model).__name__}")
        for name, value in self.model.items():
            if name not in MODEL_SETTINGS:
                raise ComposerError(f"unknown model setting '{name}' (valid: {', '.join(sorted(MODEL_SETTINGS))})")
            check_setting(name, value, MODEL_SETTINGS[name])


@dataclass(frozen=True)
class Bound:
    """What a setting may hold: its type (bool, int, float or str), and for numbers a range, each end
    included unless ``open_low``/``open_high``; ``choices`` for strings."""

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        noun = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", dict: "a table"}[
            self.kind]
        low, high = (f"{v:g}" if self.kind is float else str(v) for v in (self.low, self.high))
        if self.low is not None and self.high is not None:
            return f"{noun} in {'(' if self.open_low else '['}{low}, {high}{')' if self.open_high else ']'}"
        return noun


def check_setting(name: str, value: Any, bound: Bound) -> None:
    """A ComposerError naming ``name`` (and its flag) and ``bound`` unless ``value`` fits it."""
    if bound.kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif bound.kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, bound.kind)
    if ok and bound.kind in (int, float):
        ok = (bound.low is None or (value > bound.low if bound.open_low else value >= bound.low)) and \
             (bound.high is None or (value < bound.high if bound.open_high else value <= bound.high))
    if ok and bound.choices:
        ok = value in bound.choices
    if not ok:
        flag = "--" + name.replace("_", "-")
        raise ComposerError(f"{name} ({flag}) must be {bound.describe()}, got {value!r}")


# the training settings a user gives (flags, recipe keys, keyword arguments) and what each may hold
SETTINGS: dict[str, Bound] = {
    "corpus": Bound(str), "encoder": Bound(str), "encoder_options": Bound(dict), "output": Bound(str),
    "valid_corpus": Bound(str), "valid_fraction": Bound(float, 0, 1, open_low=True, open_high=True),
    "epochs": Bound(int, 1, 1_000_000), "max_steps": Bound(int, 0, 10**12), "batch_size": Bound(int, 1, 65_536),
    "seq_len": Bound(int, 1, 1_000_000), "label": Bound(bool), "label_size": Bound(int, 1, 65_536),
    "lr": Bound(float, 0, 10, open_low=True), "min_lr_ratio": Bound(float, 0, 1), "weight_decay": Bound(float, 0, 10),
    "warmup_steps": Bound(int, 0, 10**12), "clip": Bound(float, 0, 1e6, open_low=True),
    "patience": Bound(int, 0, 1_000_000), "augment": Bound(bool), "seed": Bound(int, 0, 2**63 - 1),
    "device": Bound(str), "precision": Bound(str, choices=("auto", "fp32", "bf16", "fp16")),
    "workers": Bound(int, 0, 1024), "save_every": Bound(int, 0, 10**12), "eval_every": Bound(int, 0, 10**12),
    "description": Bound(str), "sampler_defaults": Bound(dict), "parent": Bound(str), "parent_name": Bound(str),
    "freeze_embedding": Bound(bool), "freeze_layers": Bound(int, 0, 1000),
    "layer_lr_decay": Bound(float, 0, 1, open_low=True), "unfreeze_every": Bound(int, 0, 1_000_000),
    "time_budget": Bound(float, 0, 525_600),
}

# the model settings a user gives (``[model]`` in a recipe, or flags such as --layers)
MODEL_SETTINGS: dict[str, Bound] = {
    "layers": Bound(int, 1, 64), "hidden_size": Bound(int, 1, 16_384), "embedding_size": Bound(int, 1, 16_384),
    "dropout": Bound(float, 0, 1, open_high=True), "cell": Bound(str, choices=("lstm", "gru", "peephole")),
    "layer_norm": Bound(bool), "residual": Bound(bool), "attention": Bound(int, 0, 4096),
    "recurrent_dropout": Bound(float, 0, 1, open_high=True), "family": Bound(str),
    "latent_size": Bound(int, 0, 16_384), "encoder_size": Bound(int, 1, 16_384), "kl_weight": Bound(float, 0, 1e6),
    "kl_tolerance": Bound(float, 0, 1e6), "kl_anneal": Bound(int, 0, 10**12), "options": Bound(dict),
}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ComposerError("--device cuda was asked for, but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ComposerError("--device mps was asked for, but MPS is not available")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ComposerError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if name not in ("fp32", "bf16", "fp16"):
        raise ComposerError(f"unknown precision '{name}' (use auto, fp32, bf16 or fp16)")
    if name == "fp16" and device.type == "cpu":
        raise ComposerError("fp16 needs a GPU; on the CPU use --precision bf16 or fp32")
    return name


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float, anchor: int | None = None,
              top: float = 1.0) -> float:
    """Linear warm-up, then cosine decay from ``top`` at step ``anchor`` (default: the warm-up's end) to
    ``min_ratio`` at step ``total``. A resumed run that was given more steps re-plans its decay from where it
    stands (``anchor``, ``top``), so the rate never jumps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    anchor = warmup if anchor is None else anchor
    if total <= anchor:
        return top
    progress = min(1.0, (step - anchor) / max(1, total - anchor))
    return min_ratio + (top - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def changed_options(encoder: Any, given: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The ``-O`` settings in ``given`` that differ from ``encoder``'s own options, compared as the options'
    types (``-O held_notes true`` is the stored True): (key, the encoder's value, the given one)."""
    if not given:
        return []
    from composer.api import parse_options

    kept = getattr(encoder, "options", None)
    if kept is None or not dataclasses.is_dataclass(kept):
        raise ComposerError(f"encoder '{encoder.name}' takes no -O options")
    wanted = parse_options(type(kept), {**dataclasses.asdict(kept), **given}, f"encoder '{encoder.name}'")
    keys = dict.fromkeys(key.replace("-", "_") for key in given)
    return [(key, getattr(kept, key), getattr(wanted, key)) for key in keys
            if getattr(wanted, key) != getattr(kept, key)]


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed (host or device memory)."""
    import torch

    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(
        words in str(exc) for words in ("can't allocate memory", "Cannot allocate memory", "out of memory"))


@dataclass
class Evaluation:
    """Exact loss over whole pieces: the summed loss and the positions it counts, the model's metrics (sums
    and counts: accuracy, the reconstruction's parts, KL), and with ``per_sequence`` each piece's loss sum and
    count in corpus order."""

    loss_sum: float = 0.0
    count: int = 0
    sums: dict[str, list[float]] = field(default_factory=dict)
    per_sequence: list[tuple[float, int]] | None = None

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.count)

    def metric(self, name: str) -> float | None:
        total, count = self.sums.get(name, (0.0, 0))
        return total / count if count else None

    def metrics(self) -> dict[str, float]:
        return {name: total / count for name, (total, count) in self.sums.items() if count}


@torch.no_grad()
def evaluate_sequences(model: Any, sequences: Any, device: torch.device, precision: str, *, batch_size: int = 16,
                       chunk: int = 512, pad_value: Any = None, pad_to: int = 0, labels: Any = None,
                       per_sequence: bool = False, eos: int | None = None) -> Evaluation:
    """Score whole pieces, carrying the state across chunks of ``chunk`` steps (a family that needs whole
    pieces gets them in one piece). With ``pad_value`` pieces are padded with it to ``pad_to`` rows (or the
    batch's longest) and the padding counts, as Sketch-RNN scores its drawings; ``labels``: class ids. With
    ``eos`` (an end token) the metric ``nll_without_end`` is the loss per token with the end tokens left out,
    as benchmarks that score only the notes count it."""
    from composer.data import Sequences, padded_batches
    from composer.heads import map_output

    was_training = model.training
    model.eval()
    if not isinstance(sequences, Sequences):
        sequences = Sequences.from_arrays(sequences)
    result = Evaluation(per_sequence=[(0.0, 0)] * len(sequences) if per_sequence else None)
    whole = getattr(model, "whole_pieces", False)
    for batch in padded_batches(sequences, batch_size, pad_value=pad_value, labels=labels, pad_to=pad_to):
        inputs = batch.inputs.to(device)
        inputs = inputs.long() if not inputs.is_floating_point() else inputs
        mask = batch.mask.to(device)
        cond = batch.labels.to(device) if batch.labels is not None else None
        state = None
        length = inputs.shape[1]
        step = length if whole else chunk
        for start in range(0, length - 1, step):
            x = inputs[:, start: start + step]
            y = inputs[:, start + 1: start + step + 1]
            m = mask[:, start + 1: start + step + 1]
            x = x[:, : y.shape[1]]
            with autocast(device, precision):
                out = model(x, targets=y, state=state, mask=m, cond=cond, metrics=True)
            state = out.state
            result.loss_sum += float(out.loss_sum)
            result.count += int(out.count)
            if eos is not None:
                end_total, end_count = model.head.loss(out.output, y, m.bool() & (y == eos))
                old = result.sums.get("nll_without_end", [0.0, 0])
                result.sums["nll_without_end"] = [old[0] + float(out.loss_sum) - float(end_total),
                                                  old[1] + int(out.count) - int(end_count)]
            for name, (total, count) in out.metrics.items():
                old = result.sums.get(name, [0.0, 0])
                result.sums[name] = [old[0] + float(total), old[1] + int(count)]
            if per_sequence:
                for row, index in enumerate(batch.index.tolist()):
                    one = map_output(out.output, lambda t, r=row: t[r: r + 1])
                    total, count = model.head.loss(one, y[row: row + 1], m[row: row + 1])
                    old = result.per_sequence[index]
                    result.per_sequence[index] = (old[0] + float(total), old[1] + int(count))
    model.train(was_training)
    return result


def evaluate_nll(model: Any, sequences: Any, device: torch.device, precision: str,
                 batch_size: int = 16, chunk: int = 512) -> tuple[float, int, float]:
    """Exact NLL over whole pieces: (total nats, positions predicted, token accuracy or nan)."""
    result = evaluate_sequences(model, sequences, device, precision, batch_size=batch_size, chunk=chunk)
    accuracy = result.metric("accuracy")
    return result.loss_sum, result.count, math.nan if accuracy is None else accuracy


def _write_above_progress_bar(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


# what a resumed run takes from the command that resumes it rather than from the saved run: where and how it
# runs, and this invocation's limits (a step limit or time budget not given is none); epochs only if given
INVOCATION = ("device", "precision", "output", "workers", "max_steps", "time_budget")
RESUMABLE = (*INVOCATION, "epochs", "patience", "save_every", "eval_every", "description")
RUN_FILES = ("model.safetensors", "state.pt", "metrics.jsonl")


def flag(name: str) -> str:
    """The command-line flag of a training setting (``parent`` is finetune's ``--from``)."""
    return "--from" if name in ("parent", "parent_name") else "--" + name.replace("_", "-")


class Trainer:
    """One training run into ``config.output``. ``resume``: continue the run saved there (``given``: the names
    of the settings the caller chose, which must agree with the saved run's unless they are RESUMABLE; default:
    those that differ from TrainConfig's defaults); ``force``: replace a run that is there."""

    def __init__(self, config: TrainConfig, registry: Any, log: Any = None, resume: bool = False,
                 force: bool = False, given: Any = None):
        config.validate()
        self.config = config
        self.resume = resume  # continue the run saved in the output folder
        self.force = force
        defaults = TrainConfig()
        self.given = set(given) if given is not None else \
            {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(defaults, f.name)} \
            | set(INVOCATION) | {"epochs"}
        self.registry = registry
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.is_main = self.rank == 0
        self.log = log or _write_above_progress_bar
        if not config.output:
            raise ComposerError("training needs an output folder (-o/--output)")
        self.out = Path(config.output)

    def say(self, msg: str) -> None:
        if self.is_main:
            self.log(msg)

    # -- setup
    def _encoder_and_parent(self) -> tuple[Encoder, dict | None, dict | None]:
        cfg = self.config
        if cfg.parent:
            parent = checkpoint.load(Path(cfg.parent), self.registry)
            encoder = checkpoint.build_encoder(parent.meta, self.registry)
            if cfg.encoder and cfg.encoder != encoder.name:
                raise ComposerError(
                    f"the parent checkpoint uses encoder '{encoder.name}', not '{cfg.encoder}'"
                )
            changed = sorted(k for k, v in cfg.model.items() if k != "dropout" and parent.meta["model"].get(k) != v)
            if changed:
                raise ComposerError(f"fine-tuning keeps the parent's model shape; it cannot change {', '.join(changed)}"
                                    " (only dropout may differ)")
            differ = changed_options(encoder, cfg.encoder_options)
            if differ:  # the corpus is read with the parent's encoder: an -O left unused would mislead
                raise ComposerError("fine-tuning keeps the parent's encoder and its options; it cannot change " +
                                    "; ".join(f"-O {k} (the parent's: {a!r}, given {b!r})" for k, a, b in differ))
            return encoder, parent.meta, parent.weights
        if not cfg.encoder:
            raise ComposerError("choose an encoder with --encoder (see `composer encoders`)")
        return self.registry.encoder(cfg.encoder)(**cfg.encoder_options), None, None

    def run(self) -> Path:
        """Train; the main process holds the run folder's lock throughout (a second run into it is refused).
        Running out of memory is an error that says which settings make the batches smaller."""
        try:
            return self._locked_run()
        except Exception as exc:
            if not out_of_memory(exc):
                raise
            raise ComposerError(f"out of memory for batches of {self.config.batch_size} windows of "
                                f"{self.config.seq_len} steps: give a smaller --batch-size or "
                                "--seq-len (or a smaller model)") from None

    def _locked_run(self) -> Path:
        if not self.is_main:
            return self._run()
        from composer.locks import Lock

        existed = self.out.exists()
        try:
            with Lock(self.out / ".lock", f"run folder {self.out}", "wait for it to finish, or choose another -o"):
                self._prepare_folder()
                return self._run()
        finally:
            if not existed and self.out.is_dir() and not any(self.out.iterdir()):
                self.out.rmdir()  # a run refused before it wrote anything leaves no folder behind

    def _prepare_folder(self) -> None:
        """Remove temporary files a killed run left; refuse a folder that holds a run (or anything else) unless
        resuming it, and with ``force`` remove the run files there."""
        for stray in self.out.glob(".*.tmp"):
            stray.unlink(missing_ok=True)
        if self.resume:
            return
        held = sorted(p.name for p in self.out.iterdir() if p.name != ".lock")
        if held and not self.force:
            shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
            raise ComposerError(f"run folder {self.out} is not empty ({shown}); continue its run with --resume, "
                                "replace it with --force, or choose another -o")
        for name in RUN_FILES if self.force else ():
            (self.out / name).unlink(missing_ok=True)

    def _resumed_config(self, saved: TrainConfig) -> TrainConfig:
        """The saved run's settings with this invocation's; a chosen setting that contradicts the saved run is
        an error naming each such flag (``-O`` options are checked against the saved encoder, see ``_run``)."""
        new = self.config
        conflicts = [f"{flag(name)} (saved {getattr(saved, name)!r}, given {getattr(new, name)!r})"
                     for name in sorted(self.given - set(RESUMABLE) - {"model", "encoder_options"})
                     if getattr(new, name) != getattr(saved, name)]
        conflicts += [f"{flag(key)} (saved {saved.model.get(key)!r}, given {value!r})"
                      for key, value in sorted(new.model.items()) if saved.model.get(key) != value]
        self._refuse_resuming(conflicts)
        return dataclasses.replace(saved, **{name: getattr(new, name) for name in RESUMABLE
                                              if name in INVOCATION or name in self.given})

    def _refuse_resuming(self, conflicts: list[str]) -> None:
        if conflicts:
            raise ComposerError(f"--resume continues the run in {self.out} with its saved settings, and these "
                                f"contradict it: {'; '.join(conflicts)}; leave them out, or start a new run "
                                "with another -o")

    def _run(self) -> Path:
        run_started = time.time()
        cfg = self.config
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
            dist.init_process_group(backend)
        device = pick_device(cfg.device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        precision = pick_precision(cfg.precision, device)
        resume = checkpoint.load_state(self.out / "state.pt") if self.resume else None
        if resume is not None:
            saved = TrainConfig.from_dict(json.loads(resume["config"]))
            given_options = self.config.encoder_options
            cfg = self.config = self._resumed_config(saved)
        if not cfg.corpus.strip():
            raise ComposerError("training needs a corpus: --corpus PREFIX:NAME (e.g. music21:bach), a file, a folder "
                                "or a glob")
        torch.manual_seed(cfg.seed)
        encoder, parent_meta, parent_weights = self._encoder_and_parent()
        if resume is not None:
            self._refuse_resuming([f"-O {k} (saved {a!r}, given {b!r})" for k, a, b in
                                   changed_options(encoder, given_options)])
            encoder.load_state_dict(json.loads(resume["encoder_state"]))
        fitted = parent_meta is not None or resume is not None
        corpus = load_corpus(cfg.corpus, encoder, self.registry.corpora, fitted=fitted,
                             workers=cfg.workers or None, progress=self.is_main, warn=self._warn)
        self.say(f"corpus: {corpus.summary()}")
        valid_names = json.loads(resume["valid_names"]) if resume is not None else None
        if cfg.valid_corpus:
            train_seqs = corpus.sequences
            valid_corpus = load_corpus(cfg.valid_corpus, encoder, self.registry.corpora, fitted=True,
                                       workers=cfg.workers or None, progress=self.is_main, warn=self._warn)
            valid_seqs, valid_names = valid_corpus.sequences, [f"@corpus:{cfg.valid_corpus}"]
        else:
            train_seqs, valid_seqs, valid_names = split(corpus, cfg.valid_fraction, cfg.seed, valid_names)
        if not train_seqs:
            raise ComposerError("the training split is empty; lower --valid-fraction or add data")

        label_names = self._label_names(corpus, parent_meta, resume)
        train_labels = valid_labels = None
        if label_names:
            train_labels, valid_labels = self._label_ids(corpus, label_names, valid_names,
                                                         valid_corpus if cfg.valid_corpus else None)
        if parent_meta is not None:
            shape = dict(parent_meta["model"])
            shape["dropout"] = cfg.model.get("dropout", shape.get("dropout", 0.0))
            mcfg = ModelConfig.from_dict(shape)
        else:
            labelled = {"cond_classes": len(label_names), "cond_size": cfg.label_size} if label_names else {}
            mcfg = ModelConfig.from_dict({**cfg.model, **_head_fields(encoder), **labelled})
        try:
            model = build_model(mcfg, self.registry)
        except ValueError as exc:
            raise ComposerError(str(exc)) from None
        if parent_weights is not None:
            model.load_state_dict(parent_weights)
        model.to(device)
        groups = model.parameter_groups()
        frozen = self._frozen_groups(groups)
        param_groups = []
        for depth, (name, params) in enumerate(reversed(groups)):
            scale = cfg.layer_lr_decay ** depth
            param_groups.append({"params": params, "name": name, "lr": cfg.lr * scale, "scale": scale})
        optimizer = torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      fused=device.type == "cuda")
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

        # an autoencoder reads whole pieces, and data padded with a counted end value (Sketch-RNN's drawings)
        # is scored over whole pieces too: windows then hold one whole piece each
        whole = bool(getattr(model, "whole_pieces", False)) or encoder.pad_value is not None
        seq_len = max(int(train_seqs.lengths.max()), int(valid_seqs.lengths.max()) if len(valid_seqs) else 0) - 1 \
            if whole else cfg.seq_len
        steps_per_epoch = epoch_steps(train_seqs, cfg.batch_size, seq_len, self.world)
        limit = cfg.max_steps or math.inf  # the step the run stops at; a time budget lowers it once measured
        total_steps = min(cfg.epochs * steps_per_epoch, limit)
        anchor, top = None, 1.0  # the cosine decay starts at the warm-up's end, from the peak rate
        step, epoch, best, bad_epochs, start_batch = 0, 0, math.inf, 0, 0
        if resume is not None:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            scaler.load_state_dict(resume["scaler"])
            step, epoch, start_batch = int(resume["step"]), int(resume["epoch"]), int(resume["batch"])
            best, bad_epochs = float(resume["best"]), int(resume["bad_epochs"])
            torch.set_rng_state(resume["torch_rng"])
            total_steps, anchor, top = self._resumed_schedule(resume, step, total_steps)
            self.say(f"resuming {self.out} at epoch {epoch + 1}, step {step}")
        ddp = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

        n_params = sum(p.numel() for p in model.parameters())
        self.say(
            f"model: {mcfg.layers}x{mcfg.hidden_size} {mcfg.cell}, {n_params:,} parameters; device {device}, "
            f"{precision}; {len(train_seqs)} train / {len(valid_seqs)} valid sequences; "
            f"{steps_per_epoch} steps per epoch"
        )
        meta_base = {
            "model": mcfg.to_dict(),
            "encoder": {"name": encoder.name, "modality": encoder.modality, "state": encoder.state_dict()},
            "description": cfg.description,
            "sampler_defaults": cfg.sampler_defaults,
            **({"labels": label_names} if label_names else {}),
        }
        ctx = {"model": model, "optimizer": optimizer, "scaler": scaler, "encoder": encoder,
               "valid_names": valid_names, "corpus": corpus, "meta": meta_base,
               "schedule": {"total": total_steps, "anchor": anchor, "top": top}}
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        metrics_path, model_path = self.out / "metrics.jsonl", self.out / "model.safetensors"
        stopped_early = False
        interrupted = False
        previous_term = _raise_on_sigterm()
        last_train_loss = math.nan
        started = time.time()
        epoch_improved = False
        budget = cfg.time_budget * 60  # seconds, 0: none
        validation_seconds = 0.0  # the last validation's: a budget keeps time for one more

        def out_of_time() -> bool:
            """Past the budget (less a validation's time). Under torchrun the ranks' clocks would disagree, and
            a rank that stopped alone would leave the others waiting: there the fitted step limit stops them."""
            return bool(budget) and self.world == 1 and time.time() - run_started > budget - validation_seconds

        measure_from: tuple[float, int] | None = None  # (time, step) the step time is measured from
        budget_fits = 0  # how often the schedule was fitted to the budget
        planned = total_steps  # what epochs and --max-steps allow; a budget only shortens it

        def fit_budget() -> None:
            """Fit the schedule's length to the steps the budget leaves time for (a twentieth kept for the last
            validation and save), from the step time measured since the last fit: first after 20 steps or 10 s
            (the first steps, which run slow, not counted), then every twentieth of the budget, so that a machine
            that slows down or speeds up still ends on time. The decay goes on from the rate it has reached, over
            the steps left: the rate never jumps. Under torchrun it is fitted once, by rank 0's clock."""
            nonlocal limit, total_steps, measure_from, anchor, top, budget_fits
            now = time.time()
            if measure_from is None:
                measure_from = (now, step)
                return
            timed, seconds = step - measure_from[1], now - measure_from[0]
            if budget_fits == 0 and timed < 20 and (self.world > 1 or seconds < 10):
                return  # under torchrun every rank fits at the same step
            if budget_fits and (self.world > 1 or timed < 5 or seconds < budget / 20):
                return
            per_step = seconds / max(1, timed)
            left = 0.95 * budget - (now - run_started) - validation_seconds
            fitted = step + max(1, int(left / per_step))
            if self.world > 1:  # rank 0's measurement decides for all
                fitted = int(_from_rank0(float(fitted), device))
            if step >= cfg.warmup_steps:
                anchor, top = step, lr_factor(step, total_steps, cfg.warmup_steps, cfg.min_lr_ratio, anchor, top)
            limit = min(cfg.max_steps or math.inf, fitted)
            total_steps = min(planned, limit)
            ctx["schedule"] = {"total": total_steps, "anchor": anchor, "top": top}
            if not budget_fits:
                self.say(f"time budget {cfg.time_budget:g} min: about {per_step * 1000:.0f} ms per step, so the "
                         f"schedule ends at step {total_steps}")
            budget_fits += 1
            measure_from = (now, step)

        def validate(loss_sum: float, loss_n: int, tokens: int, seconds: float) -> tuple[float, bool]:
            """Validate, log a metrics line and keep the model if it is the best so far."""
            nonlocal best, epoch_improved, validation_seconds
            validation_started = time.time()
            # padded data is scored as it trains: every piece padded to the training windows' length
            result = evaluate_sequences(model, valid_seqs, device, precision, pad_value=encoder.pad_value,
                                        labels=valid_labels, pad_to=seq_len + 1 if whole else 0,
                                        eos=encoder.eos if valid_seqs.is_tokens else None)
            found = result.metrics()
            valid_loss = result.loss + _penalty(model, found)
            if self.world > 1:  # every rank validated the same weights; rank 0's number decides for all
                valid_loss = _from_rank0(valid_loss, device)
            improved = valid_loss < best - 1e-4
            if improved:
                best, epoch_improved = valid_loss, True
            validation_seconds = time.time() - validation_started
            train_loss = loss_sum / loss_n if loss_n else math.nan  # nan: resumed at an epoch's end
            metrics = {"epoch": epoch, "step": step, "train_loss": round(train_loss, 5) if loss_n else None,
                       "valid_loss": round(valid_loss, 5),
                       **{f"valid_{name}": round(value, 5) for name, value in found.items()},
                       "lr": optimizer.param_groups[0]["lr"], "tokens_per_s": round(tokens / max(seconds, 1e-9)),
                       "seconds": round(seconds, 2), "elapsed": round(time.time() - started, 2)}
            if self.is_main:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(metrics) + "\n")
                shown = ", ".join(f"{SHORT.get(name, name)} {value:.3f}" for name, value in found.items())
                self.say(
                    f"epoch {epoch}/{cfg.epochs} step {step}: train {train_loss:.4f} valid "
                    f"{valid_loss:.4f}{f' ({shown})' if shown else ''}{' *' if improved else ''}; "
                    f"{metrics['tokens_per_s']:,} {'tokens' if train_seqs.is_tokens else 'steps'}/s"
                )
                self.registry.pm.hook.on_epoch_end(metrics=metrics)
                if improved:
                    self._save_model(ctx, step, epoch, best)
            return train_loss, improved
        bar = None
        try:
            while epoch < cfg.epochs and step < limit and not out_of_time():
                self._apply_freezing(model, groups, frozen, epoch)
                batches = piece_batches(train_seqs, encoder, cfg.batch_size, seq_len,
                                        random.Random(cfg.seed * 1_000_003 + epoch), cfg.augment,
                                        self.rank, self.world, labels=train_labels)
                windows, masks, restart = batches.inputs, batches.mask, batches.restart
                model.train()
                state = None
                epoch_improved = False
                t0, tokens, loss_sum, loss_n = time.time(), 0, 0.0, 0
                bar = self._bar(epoch, windows.shape[0], start_batch)
                stopped = False  # by the step limit or the time budget, inside the epoch
                for b in range(windows.shape[0]):
                    if b < start_batch:
                        continue
                    if step >= limit or out_of_time():
                        stopped = True
                        break
                    batch = windows[b].to(device, non_blocking=True)
                    batch = batch if batch.is_floating_point() else batch.long()
                    x, y, m = batch[:, :-1], batch[:, 1:], masks[b, :, 1:].to(device, non_blocking=True)
                    cond = batches.labels[b].to(device) if batches.labels is not None else None
                    if whole:
                        state = None  # every window is a whole piece (an autoencoder starts from its code)
                    elif state is not None:
                        state = reset_rows(state, restart[b].to(device))
                    if hasattr(model, "set_progress"):
                        model.set_progress(step)
                    if budget and step >= 2:
                        fit_budget()
                    factor = lr_factor(step, total_steps, cfg.warmup_steps, cfg.min_lr_ratio, anchor, top)
                    for group in optimizer.param_groups:
                        group["lr"] = cfg.lr * group["scale"] * factor
                    with autocast(device, precision):
                        out = ddp(x, targets=y, state=state, mask=m, cond=cond)
                    state = detach_state(out.state)
                    optimizer.zero_grad(set_to_none=True)
                    if self.world > 1:  # the global batch's loss and tokens, as one process would have them
                        objective, loss, counted = _global_objective(out, m, self.world)
                    else:
                        objective = out.loss
                    scaler.scale(objective).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                    scaler.step(optimizer)
                    scaler.update()
                    step += 1
                    if self.world == 1:
                        loss, counted = float(out.loss.detach()), int(m.sum())
                    if not math.isfinite(loss):  # under DDP the global loss: every rank stops at this step
                        if bar is not None:
                            bar.close()  # the message goes on a line of its own, not after the bar
                        raise ComposerError(f"training diverged at step {step} (loss {loss}); try a lower --lr")
                    loss_sum, loss_n = loss_sum + loss, loss_n + 1
                    tokens += counted
                    if bar is not None:
                        rate = tokens / max(1e-9, time.time() - t0)
                        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}", refresh=False)
                        bar.update()
                    last = b == windows.shape[0] - 1 or step >= limit
                    if cfg.eval_every and step % cfg.eval_every == 0 and not last:  # the end validates anyway
                        validate(loss_sum, loss_n, tokens, time.time() - t0)
                    if self.is_main and cfg.save_every and step % cfg.save_every == 0:
                        self._save_state(ctx, step, epoch, b + 1, best, bad_epochs)
                if bar is not None:
                    bar.close()
                start_batch = 0
                seconds = time.time() - t0
                finished_epoch = not stopped
                epoch += 1 if finished_epoch else 0
                last_train_loss, _ = validate(loss_sum, loss_n, tokens, seconds)
                if epoch_improved:
                    bad_epochs = 0
                elif finished_epoch:
                    bad_epochs += 1
                if self.is_main:
                    self._save_state(ctx, step, epoch, 0, best, bad_epochs)
                if cfg.patience and bad_epochs >= cfg.patience:
                    stopped_early = True
                    self.say(f"stopping early: no validation improvement for {bad_epochs} epochs")
                    break
            if step == 0:
                raise ComposerError("no training step was made" + (
                    ": the time budget ran out first (reading the corpus took it); give a larger --time-budget"
                    if budget else ": the training data gives no windows"))
            if self.is_main and not model_path.exists():
                self._save_model(ctx, step, epoch, best)
            if self.world > 1:  # no rank returns, nor leaves the group, before rank 0's files are written
                import torch.distributed as dist

                _collective("barrier", dist.barrier(async_op=True))
        except KeyboardInterrupt:
            interrupted = True
            if self.is_main:
                self._save_state(ctx, step, epoch, b + 1 if "b" in locals() else 0, best, bad_epochs)
                self.say(f"interrupted at step {step}; state saved, continue with --resume")
        finally:
            if bar is not None:
                bar.close()  # whatever ends the run, its message goes on a line of its own
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
            if self.world > 1:
                import torch.distributed as dist

                dist.destroy_process_group()
        if interrupted:
            raise KeyboardInterrupt
        self.result = {"steps": step, "epochs": epoch, "best_valid_loss": best, "train_loss": last_train_loss,
                       "stopped_early": stopped_early, "model": str(model_path)}
        return model_path

    def _resumed_schedule(self, resume: dict, step: int, total: int) -> tuple[int, int | None, float]:
        """The learning-rate schedule (total steps, decay anchor, rate factor there) a resumed run goes on with:
        the saved one, or where the resuming command allows another number of steps (more epochs, a step
        limit), a decay from the rate reached at this step to the minimum at the new end: never a jump."""
        saved = json.loads(resume["schedule"]) if "schedule" in resume else None
        if saved is None:  # a run saved before schedules were kept
            return total, None, 1.0
        if saved["total"] == total or step < self.config.warmup_steps:
            return total, saved["anchor"], saved["top"]
        cfg = self.config
        return total, step, lr_factor(step, saved["total"], cfg.warmup_steps, cfg.min_lr_ratio, saved["anchor"],
                                      saved["top"])

    def _label_names(self, corpus: Corpus, parent_meta: dict | None, resume: dict | None) -> list[str]:
        """The label vocabulary of a class-conditional run: the parent's, or the corpus's labels sorted."""
        if parent_meta is not None and parent_meta.get("labels"):
            return list(parent_meta["labels"])
        if not self.config.label:
            return []
        names = sorted({label for label in corpus.labels if label is not None})
        if not names:
            raise ComposerError(f"--label needs labelled items, and corpus '{self.config.corpus}' has none")
        return names

    def _label_ids(self, corpus: Corpus, names: list[str], valid_names: list[str],
                   valid_corpus: Corpus | None) -> tuple[Any, Any]:
        """Class ids of the training and validation sequences, in the order ``split`` gives them."""
        def ids(c: Corpus, positions: Any) -> Any:
            return class_ids([c.labels[i] for i in positions], names, "this model")

        if valid_corpus is not None:
            return ids(corpus, range(len(corpus.labels))), ids(valid_corpus, range(len(valid_corpus.labels)))
        cfg = self.config
        part = split_index(corpus, cfg.valid_fraction, cfg.seed, valid_names)
        # a tail split validates on the end of every training piece
        return ids(corpus, part.train), ids(corpus, part.train if part.tail is not None else part.valid)

    def _warn(self, msg: str) -> None:
        if self.is_main:
            print(f"warning: {msg}", file=sys.stderr)

    def _bar(self, epoch: int, total: int, initial: int):
        if not self.is_main:
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="step",
                    file=sys.stderr, dynamic_ncols=True, leave=False)

    def _frozen_groups(self, groups: list) -> list[str]:
        cfg = self.config
        names = [name for name, _ in groups]
        frozen = []
        if cfg.freeze_embedding:
            frozen.append(names[0])
        frozen += [n for n in names if n.startswith("layer") and int(n[5:]) < cfg.freeze_layers]
        return frozen

    def _apply_freezing(self, model: SequenceModel, groups: list, frozen: list[str], epoch: int) -> None:
        """Frozen groups stay frozen; with gradual unfreezing the topmost frozen group thaws every k epochs."""
        thawed = epoch // self.config.unfreeze_every if self.config.unfreeze_every else 0
        still = frozen[: max(0, len(frozen) - thawed)]
        for name, params in groups:
            for p in params:
                p.requires_grad_(name not in still)

    def _provenance(self, ctx: dict, step: int, epoch: int, best: float) -> dict:
        from composer import __version__

        cfg = self.config
        corpus: Corpus = ctx["corpus"]
        return {
            "corpus": cfg.corpus,
            "corpus_hash": corpus.digest,
            "sequences": len(corpus.sequences),
            "tokens": corpus.tokens,
            "valid": ctx["valid_names"],
            "epochs": epoch,
            "steps": step,
            "best_valid_loss": best if math.isfinite(best) else None,
            "project_version": __version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "parent": cfg.parent_name or cfg.parent or None,
            "train_config": dataclasses.asdict(cfg),
        }

    def _save_model(self, ctx: dict, step: int, epoch: int, best: float) -> None:
        path = self.out / "model.safetensors"
        meta = {**ctx["meta"], "provenance": self._provenance(ctx, step, epoch, best)}
        checkpoint.save(path, ctx["model"].state_dict(), meta)
        self.registry.pm.hook.on_checkpoint_saved(path=path, metadata=meta)

    def _save_state(self, ctx: dict, step: int, epoch: int, batch: int, best: float, bad_epochs: int) -> None:
        checkpoint.save_state(self.out / "state.pt", {
            "model": ctx["model"].state_dict(),
            "optimizer": ctx["optimizer"].state_dict(),
            "scaler": ctx["scaler"].state_dict(),
            "step": step, "epoch": epoch, "batch": batch, "best": best, "bad_epochs": bad_epochs,
            "torch_rng": torch.get_rng_state(),
            "config": json.dumps(dataclasses.asdict(self.config)),
            "encoder_state": json.dumps(ctx["encoder"].state_dict()),
            "valid_names": json.dumps(ctx["valid_names"]),
            "schedule": json.dumps(ctx["schedule"]),
        })


SHORT = {"accuracy": "acc", "offset_loss": "L_s", "pen_loss": "L_p", "kl": "KL", "nll_without_end": "without END"}


def _penalty(model: Any, metrics: dict[str, float]) -> float:
    """What a model adds to its reconstruction loss when runs are compared: a VAE's full-weight KL term
    (above its free bits), as its training loss has once the annealing is done."""
    config = getattr(model, "config", None)
    if "kl" not in metrics or config is None:
        return 0.0
    return config.kl_weight * max(metrics["kl"], config.kl_tolerance)


# A gloo worker thread can let go of a collective's work (which holds its tensors) a little after the call
# returned; had the work no other owner, freeing its tensors there needs the interpreter's lock, and aborts the
# process ("terminate called without an active exception") when the interpreter is exiting by then. The last
# work of each collective is kept here, so that the tensors are freed on this thread.
_LAST_WORK: dict[str, Any] = {}


def _collective(name: str, work: Any) -> None:
    """Wait for the work of a collective started with ``async_op=True``, and keep it (see above)."""
    work.wait()
    _LAST_WORK[name] = work


def _global_objective(out: Any, mask: torch.Tensor, world: int) -> tuple[torch.Tensor, float, int]:
    """Under DistributedDataParallel, which averages the ranks' gradients: the loss this rank back-propagates
    so that the average is the gradient of the global batch's token mean (every rank's counted positions
    together, as one process holding all the rows computes it), however the counted positions fall between
    the ranks. Returns it with the global step loss and the global count of masked-in tokens, from one
    all-reduce of four numbers. A model's term beyond the token mean (a VAE's KL, a mean over rows, and every
    rank holds as many rows) is averaged over the ranks as it is."""
    import torch.distributed as dist

    beyond = out.loss - out.loss_sum / out.count.clamp(min=1)  # 0 but for a VAE's KL term
    totals = torch.stack([out.loss_sum.detach().double(), out.count.detach().double(), beyond.detach().double(),
                          mask.sum().double()])
    _collective("step", dist.all_reduce(totals, async_op=True))
    loss_sum, count, beyond_sum, tokens = totals.tolist()
    count = max(count, 1.0)
    return beyond + out.loss_sum * (world / count), loss_sum / count + beyond_sum / world, int(tokens)


def _from_rank0(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank, so that decisions taken from it (the best model, early stopping)
    are the same everywhere and no rank leaves the loop while the others wait in a collective."""
    import torch.distributed as dist

    held = torch.tensor([value], dtype=torch.float64, device=device)
    _collective("rank0", dist.broadcast(held, src=0, async_op=True))
    return float(held.item())


def _raise_on_sigterm() -> Any:
    """``kill`` stops training the way Ctrl-C does (the resume state is saved first); returns the previous
    handler, or None where signals cannot be handled (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def _head_fields(encoder: Encoder) -> dict:
    spec = encoder.head.spec()
    fields: dict[str, Any] = {"head": spec}
    if encoder.input_dim:
        fields.update(input="features", input_dim=encoder.input_dim)
    else:
        fields.update(input="tokens", vocab_size=spec["vocab_size"])
    return fields


def train(config: TrainConfig, registry: Any, resume: bool = False, force: bool = False, given: Any = None) -> Trainer:
    """Run ``config`` (see :class:`Trainer` for ``resume``, ``force`` and ``given``); the trainer holds the result."""
    trainer = Trainer(config, registry, resume=resume, force=force, given=given)
    trainer.run()
    return trainer
