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


def _toy_model(**overrides):
    from composer.model import ModelConfig, SequenceModel

    torch.manual_seed(0)
    return SequenceModel(ModelConfig(**{"vocab_size": 40, "layers": 3, "hidden_size": 64, "embedding_size": 16,
                                        **overrides}))


def test_a_plain_stack_runs_as_one_cudnn_call_on_weights_in_one_chunk():
    import warnings

    model = _toy_model().cuda()
    weights = model._stack_weights()
    storage = {w.untyped_storage().data_ptr() for w in weights}
    assert len(storage) == 1  # every layer's weights are views into one buffer, as in a multi-layer nn.LSTM
    x, y = torch.randint(0, 40, (8, 32), device="cuda"), torch.randint(0, 40, (8, 32), device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cuDNN warns when it has to compact weights on every call
        fused = model(x, targets=y)
        fused.loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.fuse = False
    model.zero_grad()
    per_layer = model(x, targets=y)
    per_layer.loss.backward()
    torch.testing.assert_close(fused.loss, per_layer.loss, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads, [p.grad for p in model.parameters()], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    moved = model.cpu().cuda()  # .to() keeps the stack in one chunk
    assert len({w.untyped_storage().data_ptr() for w in moved._stack_weights()}) == 1


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_follows_fp32_within_a_tolerance(precision):
    """The same model, data and seed for 30 AdamW steps: the loss under autocast (with GradScaler for fp16)
    stays within 3% of fp32's at every tenth step."""
    from composer.training import autocast

    device = torch.device("cuda")
    torch.manual_seed(1)
    data = torch.randint(0, 40, (30, 16, 33), device=device)
    curves = {}
    for name in ("fp32", precision):
        model = _toy_model().to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
        scaler = torch.amp.GradScaler("cuda", enabled=name == "fp16")
        losses = []
        for window in data:
            with autocast(device, name):
                out = model(window[:, :-1], targets=window[:, 1:])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(out.loss))
        curves[name] = losses
    assert curves["fp32"][-1] < 0.9 * curves["fp32"][0]  # it learns
    for step in range(0, 30, 10):
        assert curves[precision][step] == pytest.approx(curves["fp32"][step], rel=0.03), step


def test_generation_steps_never_wait_for_the_host_and_a_seed_repeats_on_the_gpu():
    from composer_samplers import draw

    from composer.generate import Decoding

    model = _toy_model().cuda().eval()
    runs = []
    for _ in range(2):
        run = Decoding(model, [1], n=4, max_tokens=32, eos=None, constraint=None, seed=7,
                       device=torch.device("cuda"), history_from=1)
        with torch.no_grad():
            logits, state = run.start(4)
            tokens = []
            torch.cuda.set_sync_debug_mode("error")  # any copy to the host or wait for the GPU raises
            try:
                for _ in range(32):
                    token = draw(run.mask(logits), run.device_generator, 1.0, 0, 0.9)
                    tokens.append(token)
                    logits, state = run.step(token, state)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        runs.append(torch.stack(tokens, 1).cpu())
    assert torch.equal(runs[0], runs[1])
