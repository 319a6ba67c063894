"""Training is bounded, validated and locked: bad values are one-line errors naming the option, a run folder or a
style name in use is refused naming its holder, --resume refuses contradicting flags, corpora are read once per
real file, --time-budget fits the schedule, and a resumed run's learning rate never jumps."""

import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import run_cli

from composer import checkpoint, plugins
from composer.api import ComposerError
from composer.cli import cli
from composer.data import load_corpus, skip_reason
from composer.locks import Lock
from composer.training import TrainConfig, flag, train

TINY = ["--layers", "1", "--hidden-size", "16", "--embedding-size", "8", "--batch-size", "4", "--seq-len", "16",
        "--workers", "1"]


def tiny(corpus, out, **kw):
    values = dict(corpus=str(corpus), encoder="toy", output=str(out), epochs=2, batch_size=4, seq_len=16, workers=1,
                  lr=1e-2, warmup_steps=5, model={"layers": 1, "hidden_size": 16, "embedding_size": 8})
    values.update(kw)
    return TrainConfig(**values)


def invoke(*args):
    """The command line in this process (fast): exit code and the output's lines."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output.strip().splitlines()


def refused(code, lines, *names):
    assert code != 0 and len(lines) == 1, lines
    assert lines[0].startswith("Error: ") and "unexpected" not in lines[0], lines
    for name in names:
        assert name in lines[0], lines


@pytest.mark.parametrize("option, value, range_text", [
    ("--batch-size", "0", "[1, 65536]"), ("--seq-len", "0", "[1, "), ("--lr", "nan", "(0, 10]"),
    ("--lr", "-1", "(0, 10]"), ("--layers", "0", "[1, 64]"), ("--hidden-size", "-1", "[1, 16384]"),
    ("--dropout", "1", "[0, 1)"), ("--attention", "-1", "[0, 4096]"), ("--valid-fraction", "1.5", "(0, 1)"),
    ("--epochs", "0", "[1, "), ("--max-steps", "-1", "[0, "), ("--weight-decay", "inf", "[0, 10]"),
    ("--clip", "0", "(0, "), ("--min-lr-ratio", "2", "[0, 1]"), ("--seed", str(2**64), "[0, "),
    ("--time-budget", "-1", "[0, "), ("--save-every", "-5", "[0, "),
])
def test_bad_training_value_is_refused_in_one_line_naming_the_option_and_range(toy, toy_corpus, tmp_path, option,
                                                                               value, range_text):
    out = tmp_path / "run"
    code, lines = invoke("train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(out), *TINY,
                         option, value)
    refused(code, lines, option, range_text)
    assert not out.exists()  # refused before anything was written: no untrained model with exit 0


def test_finetune_layer_lr_decay_below_zero_is_refused(toy, toy_corpus, tmp_path):
    code, lines = invoke("finetune", "--from", "bach", "--name", "x", "--corpus", str(toy_corpus),
                         "--layer-lr-decay", "-1")
    refused(code, lines, "--layer-lr-decay", "(0, 1]")


@pytest.mark.parametrize("recipe, names", [
    ('epochs = "ten"', ["epochs", "a whole number"]),
    ("batch_size = 2.5", ["batch_size", "a whole number"]),
    ("augment = 1", ["augment", "true or false"]),
    ("[model]\nlayerz = 2", ["unknown model setting 'layerz'", "valid: ", "hidden_size", "layers"]),
    ("[model]\nhidden_size = true", ["hidden_size", "a whole number"]),
    ("[model]\ncell = 'transformer'", ["cell", "one of lstm, gru, peephole"]),
])
def test_recipe_with_a_wrong_type_or_unknown_model_key_is_refused_naming_it(toy, toy_corpus, tmp_path, recipe,
                                                                            names):
    config = tmp_path / "r.toml"
    config.write_text(f'encoder = "toy"\ncorpus = "{toy_corpus}"\noutput = "{tmp_path / "run"}"\n{recipe}\n')
    refused(*invoke("train", "--config", str(config)), *names)


def test_min_count_that_leaves_no_vocabulary_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("some text to read\n" * 20)
    code, lines = invoke("train", "--encoder", "char", "--corpus", str(tmp_path / "a.txt"), "-o",
                         str(tmp_path / "run"), "-O", "min_count", "1000000", *TINY)
    refused(code, lines, "min_count", "vocabulary would be empty")


@pytest.mark.parametrize("corpus", [None, "", "  "], ids=["missing", "empty", "blank"])
def test_training_needs_a_corpus_and_never_reads_the_current_folder(toy, toy_corpus, tmp_path, monkeypatch, corpus):
    monkeypatch.chdir(toy_corpus)  # a folder full of readable files: it must not be trained on
    args = [] if corpus is None else ["--corpus", corpus]
    code, lines = invoke("train", "--encoder", "toy", "-o", str(tmp_path / "run"), *TINY, *args)
    refused(code, lines, "--corpus")
    assert not (tmp_path / "run").exists()


def test_second_run_into_a_folder_in_use_is_refused_naming_the_holder(toy, toy_corpus, tmp_path):
    out = tmp_path / "run"
    with Lock(out / ".lock", "run folder"):  # held by this process, as a running `train` holds it
        result = run_cli(["train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(out), *TINY], env=toy)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert f"run folder {out} is in use by pid {os.getpid()} on " in lines[0] and "started 20" in lines[0]
    assert not (out / "model.safetensors").exists()


def test_a_killed_runs_lock_and_temp_files_are_taken_over_by_resume(toy, toy_corpus, tmp_path):
    out = tmp_path / "run"
    train(tiny(toy_corpus, out, max_steps=3, save_every=1), plugins.get_registry())
    # what kill -9 leaves: a lock file naming a process that is gone, and a half-written state
    (out / ".lock").write_text(json.dumps({"pid": 999_999_999, "host": "here", "started": "earlier"}))
    (out / ".state.pt.abc123.tmp").write_bytes(b"half")
    trainer = train(tiny(toy_corpus, out), plugins.get_registry(), resume=True)
    assert trainer.result["steps"] > 3
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "model.safetensors", "state.pt"]


def test_a_finished_run_is_not_replaced_without_resume_or_force(toy, toy_corpus, tmp_path):
    out = tmp_path / "run"
    train(tiny(toy_corpus, out, epochs=1), plugins.get_registry())
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(ComposerError, match=r"is not empty \(metrics.jsonl, model.safetensors, state.pt\); "
                                            r"continue its run with --resume, replace it with --force"):
        train(tiny(toy_corpus, out, epochs=1, seed=5), plugins.get_registry())
    assert (out / "model.safetensors").read_bytes() == before
    train(tiny(toy_corpus, out, epochs=1, seed=5), plugins.get_registry(), force=True)
    assert (out / "model.safetensors").read_bytes() != before
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # the old run's metrics went with it


def test_resume_refuses_flags_that_contradict_the_saved_run(toy, toy_corpus, tmp_path):
    out = tmp_path / "run"
    train(tiny(toy_corpus, out, epochs=1), plugins.get_registry())
    code, lines = invoke("train", "--encoder", "toy", "--corpus", str(toy_corpus / "1*.toy"), "-o", str(out),
                         "--resume", "--epochs", "2", "--lr", "0.5", "--layers", "3", "--workers", "1")
    refused(code, lines, "--corpus (saved", "--lr (saved 0.01, given 0.5)", "--layers (saved 1, given 3)")
    assert "--epochs" not in lines[0]  # more epochs is what resuming is for
    code, lines = invoke("train", "-o", str(out), "--resume", "--epochs", "2", "--lr", "0.01", "--workers", "1")
    assert code == 0, lines


def test_resume_compares_encoder_options_by_value_not_by_spelling(toy, toy_corpus, tmp_path):
    out = tmp_path / "run"
    train(tiny(toy_corpus, out, epochs=1), plugins.get_registry())  # the toy encoder's lowercase: True
    code, lines = invoke("train", "-o", str(out), "--resume", "--epochs", "2", "-O", "lowercase", "false",
                         "--workers", "1")
    refused(code, lines, "-O lowercase (saved True, given False)")
    code, lines = invoke("train", "-o", str(out), "--resume", "--epochs", "2", "-O", "lowercase", "true",
                         "--workers", "1")
    assert code == 0, lines


def test_finetune_refuses_a_built_in_style_name(toy_corpus):
    code, lines = invoke("finetune", "--from", "bach", "--name", "bach", "--corpus", str(toy_corpus))
    refused(code, lines, "'bach' is the name of a built-in style", "--name")


@pytest.fixture
def parent(toy, toy_corpus, tmp_path):
    train(tiny(toy_corpus, tmp_path / "parent"), plugins.get_registry())
    return tmp_path / "parent" / "model.safetensors"


def test_two_concurrent_finetunes_of_one_name_one_finishes_the_other_refuses(toy, parent, toy_corpus, isolated):
    args = [sys.executable, "-m", "composer", "finetune", "--from", str(parent), "--name", "mine", "--corpus",
            str(toy_corpus), "--batch-size", "4", "--seq-len", "16", "--workers", "1", "--patience", "0"]
    first = subprocess.Popen([*args, "--epochs", "60"], env=toy, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    lock = isolated / "styles" / ".mine.safetensors.lock"
    deadline = time.time() + 60
    while not lock.exists() and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run([*args, "--epochs", "1"], env=toy, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=240)
    assert first.returncode == 0, err
    assert "style 'mine' saved" in out
    lines = second.stderr.strip().splitlines()
    assert second.returncode != 0 and len(lines) == 1 and "saved" not in second.stdout, second.stderr
    assert f"style 'mine' is in use by pid {first.pid} on " in lines[0]
    run_model = isolated / "runs" / "mine" / "model.safetensors"
    assert (isolated / "styles" / "mine.safetensors").read_bytes() == run_model.read_bytes()
    assert checkpoint.read_meta(run_model)["provenance"]["epochs"] > 1  # the long run's model, not the refused one's


def test_a_glob_through_a_link_loop_reads_each_file_once_and_counts_bad_links(toy, toy_corpus, tmp_path):
    (toy_corpus / "loop").symlink_to(toy_corpus, target_is_directory=True)  # the folder holds itself
    (toy_corpus / "self.toy").symlink_to(toy_corpus / "self.toy")
    (toy_corpus / "gone.toy").symlink_to(tmp_path / "missing.toy")
    warnings = []
    corpus = load_corpus(f"{toy_corpus}/**/*.toy", plugins.get_registry().encoder("toy")(),
                         plugins.get_registry().corpora, workers=1, use_cache=False, progress=False,
                         warn=warnings.append)
    refs = {name.split("#")[0] for name in corpus.names}
    assert len(refs) == 12 == len({os.path.realpath(ref) for ref in refs})
    assert len(corpus.names) == 24  # each file's 1-3 lines once
    reasons = {os.path.basename(ref): reason for ref, reason in corpus.skipped}
    assert reasons == {"self.toy": "a link that loops back on itself", "gone.toy": "a broken link (no such file)"}
    assert len(warnings) == 2


def test_skip_reasons_keep_a_readers_message_and_hide_python_internals():
    def reader_says():
        raise ValueError("empty toy file")

    def library_breaks():
        return max([])

    def attribute_breaks():
        return object().partName

    reasons = []
    for fail in (reader_says, library_breaks, attribute_breaks):
        try:
            fail()
        except Exception as exc:
            reasons.append(skip_reason(exc, "not a readable MIDI file"))
    assert reasons == ["empty toy file", "not a readable MIDI file", "not a readable MIDI file"]


def lrs(out):
    return [(m["step"], m["lr"]) for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]


def test_time_budget_stops_in_time_with_the_rate_decayed_and_the_best_model_saved(toy, toy_corpus, tmp_path):
    out = tmp_path / "run"
    started = time.time()
    trainer = train(tiny(toy_corpus, out, epochs=100_000, patience=0, time_budget=0.1, eval_every=10),
                    plugins.get_registry())
    assert time.time() - started < 6 + 2  # the budget, and the last validation and save
    assert trainer.result["steps"] > 20 and (out / "model.safetensors").is_file()
    schedule = json.loads(checkpoint.load_state(out / "state.pt")["schedule"])
    assert trainer.result["steps"] <= schedule["total"] < 100_000  # fitted to the budget, not to the epochs
    # decayed towards lr * min_lr_ratio (0.001), not the 0.01 of a schedule over 100,000 epochs; a busy
    # machine's stall in the last second can stop it a little short of the end
    assert lrs(out)[-1][1] < 1e-2 * 0.4


def test_resume_with_more_epochs_continues_the_rate_without_a_jump(toy, toy_corpus, tmp_path):
    out = tmp_path / "run"
    train(tiny(toy_corpus, out, epochs=2, eval_every=1), plugins.get_registry())
    first = lrs(out)
    train(tiny(toy_corpus, out, epochs=4, eval_every=1), plugins.get_registry(), resume=True)
    both = lrs(out)[len(first):]
    steps = [step for step, _ in both]
    assert steps[0] == first[-1][0] + 1
    rates = [lr for _, lr in first if _ > 5] + [lr for _, lr in both]
    assert all(b <= a + 1e-12 for a, b in zip(rates, rates[1:]))  # after the warm-up it only falls
    assert both[-1][1] == pytest.approx(1e-2 * 0.1, rel=1e-3)  # and ends at the minimum


def test_every_training_setting_is_a_flag():
    from composer.cli import finetune as finetune_command
    from composer.cli import train as train_command

    flags = {opt for command in (train_command, finetune_command) for p in command.params for opt in p.opts}
    internal = {"model", "encoder_options", "output", "parent", "parent_name", "sampler_defaults"}
    missing = [flag(f) for f in TrainConfig.__dataclass_fields__ if f not in internal and flag(f) not in flags]
    assert not missing


def test_divergence_is_reported_on_a_line_of_its_own_not_after_the_progress_bar(toy, toy_corpus, tmp_path,
                                                                                monkeypatch):
    import torch

    def poison(parameters, max_norm):  # gradients that turn the weights into nan: the next loss is nan
        for p in parameters:
            if p.grad is not None:
                p.grad.fill_(float("nan"))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", poison)
    result = CliRunner().invoke(cli, ["train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o",
                                      str(tmp_path / "run"), *TINY])
    assert result.exit_code == 1
    lines = [line.strip() for line in result.output.replace("\r", "\n").splitlines() if "diverged" in line]
    assert len(lines) == 1 and lines[0].startswith("Error: training diverged at step 2"), result.output


def test_a_midi_file_too_large_to_hold_in_memory_is_skipped_naming_its_size(tmp_path, monkeypatch):
    import pretty_midi
    from composer_midi import corpora

    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0))
    pm.instruments[0].notes += [pretty_midi.Note(90, 60 + i % 12, i / 4, i / 4 + 0.25) for i in range(400)]
    pm.write(str(tmp_path / "big.mid"))
    monkeypatch.setattr(corpora, "MAX_MIDI_BYTES", 1024)
    with pytest.raises(ComposerError, match=r"^too large to read \(.* MB; MIDI files of up to .* MB are read\): split"):
        corpora.read_midi(tmp_path / "big.mid")


def test_likelihood_is_also_reported_without_the_end_tokens(toy, toy_corpus, tmp_path):
    import torch

    from composer import load
    from composer.training import evaluate_sequences

    out = tmp_path / "run"
    train(tiny(toy_corpus, out, epochs=1), plugins.get_registry())
    assert "valid_nll_without_end" in json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    session = load(out / "model.safetensors", device="cpu")
    sequences = [[0, 3, 4, 5, 3, 4, 5, 1], [0, 5, 4, 1]]
    result = evaluate_sequences(session.model, sequences, session.device, "fp32", eos=1)
    without, counted = result.sums["nll_without_end"]
    end_nll = 0.0
    for seq in sequences:  # the model's NLL of each piece's last token, the END
        x = torch.tensor([seq[:-1]])
        with torch.no_grad():
            logits = session.model(x, targets=torch.tensor([seq[1:]])).output
        end_nll -= float(torch.log_softmax(logits[0, -1], -1)[1])
    assert counted == result.count - 2
    assert result.loss_sum - without == pytest.approx(end_nll, rel=1e-4)
    scores = session.score_sequences(sequences)
    assert scores.metrics["nll_without_end"] == pytest.approx(without / counted)
    # per step (a frame of music), the step's own tokens without the END
    assert scores.nll_per_step_without_end == pytest.approx(without / scores.steps)
    assert scores.nll_per_step - scores.nll_per_step_without_end == pytest.approx(end_nll / scores.steps, rel=1e-4)


def test_a_window_longer_than_every_piece_trains_as_one_window_per_piece(toy, toy_corpus, tmp_path):
    out = tmp_path / "run"
    args = [a if a != "16" or i != TINY.index("--seq-len") + 1 else "635539" for i, a in enumerate(TINY)]
    code, lines = invoke("train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(out), *args,
                         "--epochs", "1")
    assert code == 0, lines
    assert (out / "model.safetensors").exists()


def test_running_out_of_memory_is_one_line_naming_the_settings(toy, toy_corpus, tmp_path, monkeypatch):
    from composer import training

    def exhausted(self):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                           "you tried to allocate 910091848 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(training.Trainer, "_run", exhausted)
    code, lines = invoke("train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(tmp_path / "run"), *TINY)
    refused(code, lines, "out of memory", "--batch-size", "--seq-len")


def test_finetune_refuses_encoder_options_that_differ_from_the_parents(toy, toy_corpus, tmp_path):
    code, lines = invoke("finetune", "--from", "bach", "--name", "restruck", "--corpus", str(toy_corpus),
                         "-o", str(tmp_path / "run"), "-O", "held_notes", "false")
    refused(code, lines, "keeps the parent's encoder", "-O held_notes", "the parent's: True")
    assert not (tmp_path / "run" / "model.safetensors").exists()
