"""torchrun + DistributedDataParallel (gloo, CPU) trains as one process holding the whole global batch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from composer import checkpoint

TINY = ["--layers", "1", "--hidden-size", "16", "--embedding-size", "8", "--seq-len", "8", "--workers", "1",
        "--device", "cpu", "--dropout", "0", "--seed", "3"]


@pytest.fixture
def uneven_corpus(tmp_path: Path) -> Path:
    """Pieces of 3 to 52 characters: windows end at different places, so the ranks' rows count different
    numbers of tokens at most steps (the padding is masked out)."""
    folder = tmp_path / "uneven"
    folder.mkdir()
    for i in range(18):
        (folder / f"{i}.toy").write_text(("abcdabcaabbcd" * 5)[: 3 + (i * 7) % 52])
    return folder


def train(env: dict, corpus: Path, out: Path, batch_size: int, processes: int = 1,
          *extra: str) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] \
        if processes > 1 else []
    cmd = [sys.executable, *launcher, "-m", "composer", "train", "--encoder", "toy", "--corpus", str(corpus),
           "-o", str(out), "--batch-size", str(batch_size), *TINY, *extra]
    result = subprocess.run(cmd, env=dict(env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    """The same steps, per-epoch train and validation losses, and the same weights (the best
    model and the last state), up to float32 sums taken in another order."""
    ma, mb = metrics(a), metrics(b)
    assert [(m["epoch"], m["step"]) for m in ma] == [(m["epoch"], m["step"]) for m in mb]
    for x, y in zip(ma, mb):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4)
        assert x["valid_loss"] == pytest.approx(y["valid_loss"], rel=1e-4)
    best_a = checkpoint.load(a / "model.safetensors").weights
    best_b = checkpoint.load(b / "model.safetensors").weights
    last_a = checkpoint.load_state(a / "state.pt")["model"]
    last_b = checkpoint.load_state(b / "state.pt")["model"]
    for wa, wb in ((best_a, best_b), (last_a, last_b)):
        assert wa.keys() == wb.keys()
        for name in wa:
            torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=1e-5, msg=name)


def test_torchrun_two_processes_equal_one_process_with_the_global_batch(toy, uneven_corpus, tmp_path):
    schedule = ["--epochs", "2", "--lr", "0.02", "--warmup-steps", "2"]
    two, one = tmp_path / "two", tmp_path / "one"
    result = train(toy, uneven_corpus, two, 2, 2, *schedule)
    train(toy, uneven_corpus, one, 4, 1, *schedule)
    assert result.stderr.count("model: 1x16 lstm") == 1 and result.stdout.count("trained") == 1  # rank 0 logs
    assert [m["epoch"] for m in metrics(two)] == [1, 2]  # and writes
    assert checkpoint.read_meta(two / "model.safetensors")["provenance"]["steps"] == metrics(two)[-1]["step"]
    assert_same_run(two, one)


@pytest.mark.slow
def test_torchrun_resume_continues_as_the_run_without_a_stop(toy, uneven_corpus, tmp_path):
    # the warm-up outlasts the run, so the learning rate does not depend on how many epochs were asked for
    schedule = ["--warmup-steps", "1000", "--lr", "1"]
    stopped, straight = tmp_path / "stopped", tmp_path / "straight"
    train(toy, uneven_corpus, stopped, 2, 2, "--epochs", "1", *schedule)
    result = train(toy, uneven_corpus, stopped, 2, 2, "--epochs", "2", "--resume", *schedule)
    assert result.stderr.count("resuming") == 1
    train(toy, uneven_corpus, straight, 4, 1, "--epochs", "2", *schedule)
    assert_same_run(stopped, straight)
