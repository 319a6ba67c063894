import json
import subprocess
import sys

import pytest

from composer import checkpoint


@pytest.mark.slow
def test_torchrun_two_processes_train_with_ddp_and_rank0_saves(toy, toy_corpus, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "composer",
           "train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(out), "--epochs", "2", "--device", "cpu",
           "--layers", "1", "--hidden-size", "16", "--batch-size", "2", "--seq-len", "8", "--workers", "1"]
    result = subprocess.run(cmd, env=dict(toy, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]  # one writer: rank 0
    assert result.stderr.count("model: 1x16 lstm") == 1
    assert checkpoint.read_meta(out / "model.safetensors")["provenance"]["steps"] == metrics[-1]["step"]
