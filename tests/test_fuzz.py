"""Random values for every option of `sample`, `train` and `finetune` (and harmonize's --melody), run in-process
through click's CliRunner on a tiny MIDI model and corpus. Whatever the value, a command either exits 0 having
written real output, or exits non-zero with one `Error: ...` line: never a traceback, never an `unexpected`
error, never a hang (each run has a time limit) and never a memory blow-up (each run has an address-space limit).

Default: a fixed set of examples, no shrinking (under a minute). `-m slow` runs the larger, random variant."""

from __future__ import annotations

import itertools
import os
import resource
import signal
from pathlib import Path

import click
import pretty_midi
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from composer import ComposerError, checkpoint, plugins

pytestmark = pytest.mark.fuzz

SECONDS = 30  # per command in the thorough variant: the "no hang past 30 s"
QUICK_SECONDS = 10  # per command by default: the tiny model and corpus need well under one
EXTRA_MEMORY = 4 * 2**30  # address space a command may add to what the test process holds already

# The tiny baselines each fuzzed option is added to (a later occurrence of an option wins in click).
BASELINES = {
    "sample": ["--length", "1", "--seed", "1", "--format", "mid"],
    "harmonize": ["--melody", "60 62 64", "--seed", "1", "--format", "mid"],
    "train": ["--encoder", "polyphony", "--layers", "1", "--hidden-size", "8", "--embedding-size", "8", "--epochs",
              "1", "--max-steps", "2", "--batch-size", "2", "--seq-len", "16", "--workers", "1", "--device", "cpu"],
    "finetune": ["--epochs", "1", "--max-steps", "2", "--batch-size", "2", "--seq-len", "16", "--workers", "1",
                 "--device", "cpu"],
}
# Options whose value names a place to write: no separators or home folders, so that a value cannot write
# outside the test's folder (these tests run as whatever user runs pytest).
WRITES = {"output", "output_dir", "save_to", "name"}


def numbers() -> st.SearchStrategy[str]:
    floats = st.floats(allow_nan=True, allow_infinity=True).map(repr)
    ints = st.one_of(st.integers(-10, 10), st.integers(-(2**70), 2**70)).map(str)
    return st.one_of(floats, ints, st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e9", "1e308", "2**64",
                                                    "0.5", "1.5", "-0"]))


def values(writes: bool = False) -> st.SearchStrategy[str]:
    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\~\x00" if writes else "\x00"),
                   max_size=40)
    return st.one_of(numbers(), text, st.just(""), st.text(max_size=300).filter(lambda s: "\x00" not in s)
                     if not writes else st.just("."))


def option_args(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.name not in ("help",)]


@st.composite
def fuzzed(draw, command_name: str) -> list[str]:
    """One option of the command with a random value (or values, for KEY VALUE pairs), or a flag."""
    from composer.cli import cli

    command = cli.commands[command_name]
    options = option_args(command)
    if command_name == "harmonize":
        options = [o for o in options if o.name == "melody_text"]
    option = draw(st.sampled_from(options))
    flag = option.opts[0]
    if option.is_flag:
        return [flag]
    strategy = values(writes=option.name in WRITES)
    return [flag, *(draw(strategy) for _ in range(max(option.nargs, 1)))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny untrained polyphony checkpoint and a three-piece MIDI corpus."""
    from composer.model import ModelConfig, SequenceModel
    from composer.training import _head_fields

    folder = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    encoder = plugins.get_registry().encoder("polyphony")()
    config = ModelConfig.from_dict({"layers": 1, "hidden_size": 16, "embedding_size": 8, **_head_fields(encoder)})
    ckpt = folder / "tiny.safetensors"
    checkpoint.save(ckpt, SequenceModel(config).state_dict(), {
        "model": config.to_dict(), "encoder": {"name": "polyphony", "modality": "midi", "state": encoder.state_dict()},
        "sampler_defaults": {}})
    corpus = folder / "corpus"
    corpus.mkdir()
    for k in range(3):
        pm = pretty_midi.PrettyMIDI(initial_tempo=120)
        inst = pretty_midi.Instrument(0)
        inst.notes = [pretty_midi.Note(80, 60 + (k + i) % 12, 0.5 * i, 0.5 * (i + 1)) for i in range(16)]
        pm.instruments.append(inst)
        pm.write(str(corpus / f"{k}.mid"))
    return ckpt, corpus


class Hang(BaseException):
    """A command ran past its time limit (a BaseException: the CLI's Group turns Exceptions into messages)."""


def _alarm(signum, frame):
    raise Hang()


COUNTER = itertools.count()


def run_fuzzed(command_name: str, extra: list[str], tiny: tuple[Path, Path], home: Path,
               seconds: int = SECONDS) -> str | None:
    """Run one command with its baseline and ``extra``; None if it behaved, else what went wrong."""
    from composer.cli import cli

    ckpt, corpus = tiny
    n = next(COUNTER)
    where = {"sample": ["--checkpoint", str(ckpt), "-o", f"out{n}"],
             "harmonize": ["--checkpoint", str(ckpt), "-o", f"out{n}"],
             "train": ["--corpus", str(corpus), "-o", f"run{n}"],
             "finetune": ["--from", str(ckpt), "--name", f"fuzz{n}", "--corpus", str(corpus), "-o", f"run{n}"]}
    args = [command_name, *where[command_name], *BASELINES[command_name], *extra]
    before = set(Path.cwd().rglob("*")) | set(home.rglob("*"))
    limit = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    resource.setrlimit(resource.RLIMIT_AS, (pages * resource.getpagesize() + EXTRA_MEMORY, limit[1]))
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        result = CliRunner().invoke(cli, args)
    except Hang:
        return f"ran past {seconds} s"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, limit)
    errors = [line.strip() for line in result.stderr.splitlines() if line.startswith("Error:")]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"raised {type(result.exception).__name__}: {result.exception}"
    if "Traceback" in result.output or "unexpected" in result.stderr:
        return f"exit {result.exit_code}: {errors[-1] if errors else result.stderr.strip()[-300:]}"
    if result.exit_code != 0:
        ok = len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0]
        return None if ok else f"exit {result.exit_code} without one error line: {result.stderr.strip()[-300:]!r}"
    made = sorted((set(Path.cwd().rglob("*")) | set(home.rglob("*"))) - before)
    return _not_real(command_name, made) if made else "exit 0 and nothing written"


def _not_real(command_name: str, made: list[Path]) -> str | None:
    """What is wrong with the files a successful run wrote (None: real output)."""
    if command_name in ("sample", "harmonize"):
        pieces = [p for p in made if p.suffix == ".mid"]
        if not pieces:
            return "exit 0 and no MIDI file written"
        for path in pieces:
            notes = sum(len(inst.notes) for inst in pretty_midi.PrettyMIDI(str(path)).instruments)
            if notes == 0:
                return f"exit 0 and {path.name} holds no notes"
        return None
    models = [p for p in made if p.suffix == ".safetensors" and p.is_file()]
    if not models:
        return "exit 0 and no model written"
    try:
        checkpoint.load_model(models[0], plugins.get_registry())
    except ComposerError as exc:
        return f"exit 0 and the model written does not load: {exc}"
    return None


COMMANDS = ["sample", "harmonize", "train", "finetune"]
FAST = settings(max_examples=12, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], database=None)
# the thorough run: COMPOSER_FUZZ=N examples per command (minutes: a run that trains takes seconds)
THOROUGH_EXAMPLES = int(os.environ.get("COMPOSER_FUZZ") or 0)
THOROUGH = settings(max_examples=max(1, THOROUGH_EXAMPLES), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command_name", COMMANDS)
def test_any_option_value_gives_real_output_or_one_error_line(command_name, tiny, in_tmp, isolated):
    @FAST
    @given(extra=fuzzed(command_name))
    def check(extra):
        assert run_fuzzed(command_name, extra, tiny, isolated, QUICK_SECONDS) is None, extra

    check()


@pytest.mark.slow
@pytest.mark.skipif(not THOROUGH_EXAMPLES, reason="the thorough fuzz runs with COMPOSER_FUZZ=N (examples per command)")
@pytest.mark.parametrize("command_name", COMMANDS)
def test_any_option_value_gives_real_output_or_one_error_line_thoroughly(command_name, tiny, in_tmp, isolated):
    @THOROUGH
    @given(extra=fuzzed(command_name))
    def check(extra):
        assert run_fuzzed(command_name, extra, tiny, isolated) is None, extra

    check()
