import torch
from conftest import run_cli

from composer import Constraint, plugins
from composer.generate import generate
from composer.model import ModelConfig, SequenceModel


class Tiny:
    """A minimal token encoder stand-in: start 0, end 1, tokens 2..9."""

    bos, eos = 0, 1


def model(seed=0):
    torch.manual_seed(seed)
    return SequenceModel(ModelConfig(vocab_size=10, layers=2, hidden_size=16, embedding_size=8))


def sampler(name="temperature"):
    return plugins.get_registry().sampler(name)


def test_same_seed_same_tokens_and_rows_differ():
    m = model()
    a = generate(m, Tiny, sampler(), n=4, max_tokens=30, seed=3)
    b = generate(m, Tiny, sampler(), n=4, max_tokens=30, seed=3)
    c = generate(m, Tiny, sampler(), n=4, max_tokens=30, seed=4)
    assert a == b and a != c
    assert len({tuple(r) for r in a}) > 1


def test_rows_stop_at_the_end_token_and_start_with_primer():
    rows = generate(model(), Tiny, sampler(), n=8, max_tokens=50, primer=[5, 6], seed=0)
    for row in rows:
        assert row[:3] == [0, 5, 6]
        assert 1 not in row[:-1]
        assert len(row) <= 53


class Alternate(Constraint):
    """Forces 2, 3, 2, 3, ... then the end token after six tokens; counts its calls."""

    def start(self, batch_size, device):
        self.n, self.t = batch_size, 0

    def allowed(self):
        mask = torch.zeros(self.n, 10, dtype=torch.bool)
        mask[:, 1 if self.t >= 6 else 2 + self.t % 2] = True
        return mask

    def advance(self, tokens):
        self.t += 1


def test_constraint_forces_tokens_for_every_sampler():
    for name in ("greedy", "temperature", "top-k", "top-p"):
        rows = generate(model(), Tiny, sampler(name), n=3, max_tokens=20, constraint=Alternate(), seed=1)
        assert rows == [[0, 2, 3, 2, 3, 2, 3, 1]] * 3


def test_generation_steps_once_per_token_after_one_primer_pass():
    m = model()
    calls = {"forward": 0, "step": 0}
    forward, step = m.forward, m.step

    def counting_forward(*a, **k):
        calls["forward"] += 1
        return forward(*a, **k)

    def counting_step(*a, **k):
        calls["step"] += 1
        return step(*a, **k)

    m.forward, m.step = counting_forward, counting_step
    rows = generate(m, Tiny, sampler("greedy"), n=2, max_tokens=25, primer=[4, 4, 4], seed=0,
                    constraint=None)
    assert calls["forward"] == 1
    assert calls["step"] == max(len(r) for r in rows) - 4 - 1


def test_top_k_one_equals_greedy():
    m = model()
    assert generate(m, Tiny, sampler("top-k"), n=3, max_tokens=15, seed=2, sampler_options={"top_k": 1}) == \
        generate(m, Tiny, sampler("greedy"), n=3, max_tokens=15, seed=9)


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    picks = sampler("top-p").fn(logits, torch.Generator().manual_seed(0), top_p=0.75)
    assert set(picks.tolist()) == {0, 1}


def test_same_seed_gives_byte_identical_files(toy, toy_corpus, tmp_path):
    run = run_cli(["train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(tmp_path / "r"), "--epochs",
                   "1", "--layers", "1", "--hidden-size", "16", "--workers", "1", "--batch-size", "4",
                   "--seq-len", "8"], env=toy)
    assert run.returncode == 0, run.stderr
    ckpt = str(tmp_path / "r" / "model.safetensors")
    outputs = []
    for folder in ("a", "b"):
        result = run_cli(["sample", "--checkpoint", ckpt, "-n", "2", "--seed", "11", "-o", str(tmp_path / folder)],
                         env=toy)
        assert result.returncode == 0, result.stderr
        outputs.append([(tmp_path / folder / f"r-11-{i}.txt").read_bytes() for i in (1, 2)])
    assert outputs[0] == outputs[1]


def test_items_a_writer_skips_are_counted_and_the_rest_written(toy, toy_corpus, tmp_path):
    run = run_cli(["train", "--encoder", "toy", "--corpus", str(toy_corpus), "-o", str(tmp_path / "r"), "--epochs",
                   "1", "--layers", "1", "--hidden-size", "16", "--workers", "1", "--batch-size", "4"], env=toy)
    assert run.returncode == 0, run.stderr
    result = run_cli(["sample", "--checkpoint", str(tmp_path / "r" / "model.safetensors"), "-n", "6", "--seed", "3",
                      "--format", "txt,even", "-o", str(tmp_path / "out")], env=toy)
    assert result.returncode == 0, result.stderr
    texts = [(tmp_path / "out" / f"r-3-{i}.txt").read_text().strip() for i in range(1, 7)]
    even = sum(1 for t in texts if len(t) % 2 == 0)
    assert len(list((tmp_path / "out").glob("*.even"))) == even
    assert f"wrote {6 + even} file(s)" in result.stdout and f"even: {even} of 6 written" in result.stdout
    assert result.stderr.count("odd length") == 6 - even
