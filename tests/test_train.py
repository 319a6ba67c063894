import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli

from composer import checkpoint, plugins
from composer.training import TrainConfig, train

TINY = ["--layers", "1", "--hidden-size", "32", "--embedding-size", "16", "--batch-size", "4", "--seq-len", "16",
        "--workers", "1"]


def tiny_config(corpus, out, **kw):
    values = dict(corpus=str(corpus), encoder="toy", output=str(out), epochs=3, batch_size=4, seq_len=16,
                  workers=1, lr=1e-2, warmup_steps=5, model={"layers": 1, "hidden_size": 32, "embedding_size": 16})
    values.update(kw)
    return TrainConfig(**values)


def test_cli_train_then_sample_with_an_entry_point_encoder(toy, toy_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_cli(["train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(out), "--epochs", "2",
                      *TINY], env=toy)
    assert result.returncode == 0, result.stderr
    assert "trained" in result.stdout and (out / "model.safetensors").is_file()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    sample = run_cli(["sample", "--checkpoint", str(out / "model.safetensors"), "-n", "3", "--seed", "7", "-o",
                      str(tmp_path / "gen")], env=toy)
    assert sample.returncode == 0, sample.stderr
    written = sorted(p.name for p in (tmp_path / "gen").iterdir())
    assert written == ["run-7-1.txt", "run-7-2.txt", "run-7-3.txt"]
    assert "wrote 3 file(s)" in sample.stdout


def test_training_loss_falls_and_checkpoint_records_provenance(toy, toy_corpus, tmp_path):
    trainer = train(tiny_config(toy_corpus, tmp_path / "r", epochs=6), plugins.get_registry())
    metrics = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["valid_loss"] < 0.6 * metrics[0]["valid_loss"]
    meta = checkpoint.read_meta(tmp_path / "r" / "model.safetensors")
    prov = meta["provenance"]
    assert prov["corpus"] == str(toy_corpus) and prov["corpus_hash"] and prov["steps"] == trainer.result["steps"]
    assert prov["valid"] and prov["best_valid_loss"] == pytest.approx(min(m["valid_loss"] for m in metrics), abs=1e-4)
    assert meta["encoder"]["name"] == "toy" and meta["encoder"]["state"]["chars"]


def test_bf16_on_cpu_trains_with_a_falling_loss(toy, toy_corpus, tmp_path):
    train(tiny_config(toy_corpus, tmp_path / "r", epochs=5, precision="bf16"), plugins.get_registry())
    metrics = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < 0.7 * metrics[0]["train_loss"]


def test_training_is_reproducible_with_a_seed(toy, toy_corpus, tmp_path):
    a = train(tiny_config(toy_corpus, tmp_path / "a", epochs=2), plugins.get_registry()).result
    b = train(tiny_config(toy_corpus, tmp_path / "b", epochs=2), plugins.get_registry()).result
    assert a["best_valid_loss"] == b["best_valid_loss"]


def test_max_steps_then_resume_continues_from_the_saved_step(toy, toy_corpus, tmp_path):
    out = tmp_path / "r"
    first = train(tiny_config(toy_corpus, out, epochs=4, max_steps=5, save_every=1), plugins.get_registry())
    assert first.result["steps"] == 5
    state = checkpoint.load_state(out / "state.pt")
    assert state["step"] == 5
    resumed = train(tiny_config(toy_corpus, out, epochs=4), plugins.get_registry(), resume=True)
    assert resumed.result["epochs"] == 4
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(m["epoch"], m["step"]) for m in metrics][0] == (0, 5)  # the stopped run, mid-epoch
    assert [m["epoch"] for m in metrics[1:]] == [1, 2, 3, 4]
    assert metrics[1]["step"] > 5 and metrics[-1]["step"] == resumed.result["steps"]


def test_resume_without_a_run_is_a_clear_error(toy, toy_corpus, tmp_path):
    result = run_cli(["train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(tmp_path / "none"),
                      "--resume", *TINY], env=toy)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: nothing to resume: {tmp_path / 'none' / 'state.pt'} does not exist"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_interrupt_saves_state_and_resume_finishes(toy, toy_corpus, tmp_path, sig):
    out = tmp_path / "r"
    args = ["train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(out), "--epochs", "400", "--patience",
            "0", *TINY]  # no early stop: the run must still be going when the signal comes
    # a test runner started in the background (nohup, CI) passes SIGINT on as ignored: restore the default
    proc = subprocess.Popen([sys.executable, "-m", "composer", *args], env=toy, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err
    saved = checkpoint.load_state(out / "state.pt")["step"]
    assert saved > 0
    result = run_cli(["train", "-o", str(out), "--resume", "--epochs", str(saved // 12 + 3), *TINY[-2:]], env=toy)
    assert result.returncode == 0, result.stderr
    assert "at epoch" in result.stderr and f"step {saved}" in result.stderr


def test_eval_every_validates_inside_epochs_and_keeps_the_best(toy, toy_corpus, tmp_path):
    trainer = train(tiny_config(toy_corpus, tmp_path / "r", epochs=2, eval_every=3), plugins.get_registry())
    metrics = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    steps = [m["step"] for m in metrics]
    per_epoch = trainer.result["steps"] // 2
    assert len(metrics) > 2 and all(s % 3 == 0 for s in steps if s not in (per_epoch, 2 * per_epoch))
    assert [m["epoch"] for m in metrics if m["step"] < per_epoch] == [0] * sum(s < per_epoch for s in steps)
    assert all(m["elapsed"] >= 0 for m in metrics) and steps == sorted(steps)
    best = checkpoint.read_meta(tmp_path / "r" / "model.safetensors")["provenance"]["best_valid_loss"]
    assert best == pytest.approx(min(m["valid_loss"] for m in metrics), abs=1e-4)


def test_unknown_training_setting_in_config_file_is_an_error(toy, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('encoder = "toy"\nlearning_rate = 3\n')
    result = run_cli(["train", "--config", str(cfg)], env=toy)
    assert result.returncode == 1 and "unknown training setting(s): learning_rate" in result.stderr


def test_config_file_and_flags_combine(toy, toy_corpus, tmp_path):
    from composer.session import train_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'encoder = "toy"\ncorpus = "{toy_corpus}"\nepochs = 7\n[model]\nlayers = 3\n'
                   '[encoder_options]\nlowercase = "false"\n')
    config = train_config(cfg, {"epochs": 2, "hidden_size": 64}, {"lowercase": "true"})
    assert config.epochs == 2 and config.model == {"layers": 3, "hidden_size": 64}
    assert config.encoder_options == {"lowercase": "true"} and config.output == os.path.join("runs", "c")
    cfg.write_text(f'encoder = "toy"\ncorpus = ["{toy_corpus}", "-{toy_corpus / "1*.toy"}"]\n')
    assert train_config(cfg).corpus == f"{toy_corpus},-{toy_corpus / '1*.toy'}"
