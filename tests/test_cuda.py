"""GPU paths: run where CUDA is present, skipped cleanly elsewhere."""

import json

import pytest
import torch

from composer import checkpoint, plugins
from composer.generate import generate
from composer.training import TrainConfig, train

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_with_mixed_precision_lowers_the_loss(toy, toy_corpus, tmp_path, precision):
    config = TrainConfig(corpus=str(toy_corpus), encoder="toy", output=str(tmp_path / "r"), epochs=6, batch_size=4,
                         seq_len=16, workers=1, lr=1e-2, warmup_steps=5, device="cuda", precision=precision,
                         model={"layers": 2, "hidden_size": 64, "embedding_size": 16})
    train(config, plugins.get_registry())
    metrics = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < 0.7 * metrics[0]["train_loss"]


def test_gpu_checkpoint_loads_on_cpu_and_samples_the_same(toy, toy_corpus, tmp_path):
    config = TrainConfig(corpus=str(toy_corpus), encoder="toy", output=str(tmp_path / "r"), epochs=1, batch_size=4,
                         seq_len=16, workers=1, device="cuda", model={"layers": 1, "hidden_size": 32})
    train(config, plugins.get_registry())
    reg = plugins.get_registry()
    cpu_model, encoder, _ = checkpoint.load_model(tmp_path / "r" / "model.safetensors", reg, "cpu")
    gpu_model, _, _ = checkpoint.load_model(tmp_path / "r" / "model.safetensors", reg, "cuda")
    for name in ("greedy", "beam"):  # deterministic: the same tokens wherever the logits are computed
        sampler = reg.sampler(name)
        on_cpu = generate(cpu_model, encoder, sampler, n=2, max_tokens=20, seed=0)
        on_gpu = generate(gpu_model, encoder, sampler, n=2, max_tokens=20, seed=0, device="cuda")
        assert [g.tokens for g in on_cpu] == [g.tokens for g in on_gpu], name
        assert [g.log_likelihood for g in on_cpu] == pytest.approx([g.log_likelihood for g in on_gpu], abs=1e-3)
