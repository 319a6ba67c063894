import math

import pytest
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


def tokens(results):
    return [g.tokens for g in results]


def test_same_seed_same_tokens_and_rows_differ():
    m = model()
    a = tokens(generate(m, Tiny, sampler(), n=4, max_tokens=30, seed=3))
    b = tokens(generate(m, Tiny, sampler(), n=4, max_tokens=30, seed=3))
    c = tokens(generate(m, Tiny, sampler(), n=4, max_tokens=30, seed=4))
    assert a == b and a != c
    assert len({tuple(r) for r in a}) > 1


def test_rows_stop_at_the_end_token_and_start_with_primer():
    rows = tokens(generate(model(), Tiny, sampler(), n=8, max_tokens=50, primer=[5, 6], seed=0))
    for row in rows:
        assert row[:3] == [0, 5, 6]
        assert 1 not in row[:-1]
        assert len(row) <= 53


class Alternate(Constraint):
    """Forces 2, 3, 2, 3, ... then the end token after six tokens (a per-row count, so beams can follow)."""

    row_state = ("t",)

    def start(self, batch_size, device):
        self.t = torch.zeros(batch_size, dtype=torch.long)

    def allowed(self):
        mask = torch.zeros(len(self.t), 10, dtype=torch.bool)
        mask[torch.arange(len(self.t)), torch.where(self.t >= 6, 1, 2 + self.t % 2)] = True
        return mask

    def advance(self, tokens):
        self.t += 1


def test_constraint_forces_tokens_for_every_sampler():
    for name in plugins.get_registry().samplers:
        n = 1 if name == "beam" else 3  # beam search returns different sequences, and there is one
        rows = tokens(generate(model(), Tiny, sampler(name), n=n, max_tokens=20, constraint=Alternate(), seed=1))
        assert rows == [[0, 2, 3, 2, 3, 2, 3, 1]] * n


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
    rows = tokens(generate(m, Tiny, sampler("greedy"), n=2, max_tokens=25, primer=[4, 4, 4], seed=0,
                           constraint=None))
    assert calls["forward"] == 1
    assert calls["step"] == max(len(r) for r in rows) - 4 - 1


def test_top_k_one_equals_greedy():
    m = model()
    top1 = sampler("ancestral").options({"top_k": "1"})
    assert tokens(generate(m, Tiny, sampler("ancestral"), n=3, max_tokens=15, seed=2, options=top1)) == \
        tokens(generate(m, Tiny, sampler("greedy"), n=3, max_tokens=15, seed=9))


def test_top_p_keeps_only_the_nucleus():
    from composer_samplers import draw

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    picks = draw(logits, torch.Generator().manual_seed(0), temperature=1.0, top_k=0, top_p=0.75)
    assert set(picks.tolist()) == {0, 1}


def test_filters_compose_top_k_then_top_p():
    from composer_samplers import draw

    logits = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]])).repeat(2000, 1)
    # top_k 3 leaves 0.4/0.3/0.2 (renormalised 0.44/0.33/0.22): top_p 0.7 then keeps the first two
    picks = draw(logits, torch.Generator().manual_seed(0), temperature=1.0, top_k=3, top_p=0.7)
    assert set(picks.tolist()) == {0, 1}
    assert set(draw(logits, torch.Generator().manual_seed(0), 1.0, 3, 1.0).tolist()) == {0, 1, 2}


class Markov:
    """A model whose next-token distribution depends on the last token only (state: the last token).
    From the start (0): 2 with 0.6, 3 with 0.4. After 2: tokens 4..9 evenly (1/6 each, and the end 1 never).
    After 3: the end 1 with 0.95. Greedy takes 2 (myopic: every continuation is then unlikely); the most
    likely whole sequence is 0 3 1."""

    def __init__(self):
        p = torch.full((10, 10), 1e-6)
        p[0, 2], p[0, 3] = 0.6, 0.4
        p[2, 4:] = 1 / 6
        p[3, 1], p[3, 4] = 0.95, 0.05
        p[4:, 1] = 1.0
        p[1, 1] = 1.0
        self.logits = torch.log(p / p.sum(-1, keepdim=True))

    def eval(self):
        return self

    def __call__(self, x):
        from composer.model import ModelOutput, State

        last = x[:, -1]
        return ModelOutput(self.logits[x], State(((last.float()[:, None],),)))

    def step(self, token, state):
        from composer.model import State

        return self.logits[token], State(((token.float()[:, None],),))


def test_beam_search_beats_myopic_greedy_in_model_likelihood():
    greedy = generate(Markov(), Tiny, sampler("greedy"), n=1, max_tokens=5, seed=0)[0]
    beam = generate(Markov(), Tiny, sampler("beam"), n=1, max_tokens=5, seed=0)[0]
    assert greedy.tokens[:2] == [0, 2] and beam.tokens == [0, 3, 1]
    assert beam.log_likelihood > greedy.log_likelihood
    assert beam.log_likelihood == pytest.approx(math.log(0.4) + math.log(0.95), abs=1e-4)


def test_beam_returns_the_n_best_distinct_sequences_in_order():
    results = generate(Markov(), Tiny, sampler("beam"), n=3, max_tokens=5, seed=0)
    scores = [g.log_likelihood for g in results]
    assert scores == sorted(scores, reverse=True) and len({tuple(g.tokens) for g in results}) == 3


def test_beam_with_one_beam_and_one_branch_is_greedy():
    m = model()
    one = sampler("beam").options({"beam_size": 1, "branch_factor": 1})
    assert tokens(generate(m, Tiny, sampler("beam"), n=1, max_tokens=20, seed=0, options=one)) == \
        tokens(generate(m, Tiny, sampler("greedy"), n=1, max_tokens=20, seed=0))


def test_beam_with_several_steps_per_iteration_and_sampled_branches_keeps_its_promises():
    m = model()
    for options in ({"steps_per_iteration": 3}, {"steps_per_iteration": 2, "sample": "true", "temperature": 0.8}):
        chosen = sampler("beam").options(options)
        results = generate(m, Tiny, sampler("beam"), n=2, max_tokens=10, seed=4, options=chosen)
        again = generate(m, Tiny, sampler("beam"), n=2, max_tokens=10, seed=4, options=chosen)
        assert tokens(results) == tokens(again) and all(g.new_tokens <= 10 for g in results)
        assert results[0].log_likelihood >= results[1].log_likelihood


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
    again = run_cli(["sample", "--checkpoint", ckpt, "-n", "2", "--seed", "11", "-o", str(tmp_path / "a"),
                     "--length", "5"], env=toy)
    assert again.returncode == 1 and "already exist" in again.stderr and len(again.stderr.splitlines()) == 1
    assert [(tmp_path / "a" / f"r-11-{i}.txt").read_bytes() for i in (1, 2)] == outputs[0]  # nothing overwritten
    forced = run_cli(["sample", "--checkpoint", ckpt, "-n", "2", "--seed", "11", "-o", str(tmp_path / "a"),
                      "--length", "5", "--force"], env=toy)
    assert forced.returncode == 0, forced.stderr
    assert len((tmp_path / "a" / "r-11-1.txt").read_text()) <= 6


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


def test_generation_runs_on_one_cpu_thread_unless_the_user_chose(monkeypatch):
    import torch

    from composer.generate import generation_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("COMPOSER_THREADS", raising=False)
    torch.set_num_threads(2)
    try:
        with generation_threads(torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2  # restored
        monkeypatch.setenv("COMPOSER_THREADS", "2")
        with generation_threads(torch.device("cpu")):
            assert torch.get_num_threads() == 2
        monkeypatch.delenv("COMPOSER_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        with generation_threads(torch.device("cpu")):
            assert torch.get_num_threads() == 2  # the user's setting stands
    finally:
        torch.set_num_threads(1)


def test_a_big_batch_takes_the_cores_other_work_leaves_free(monkeypatch):
    import torch

    from composer import generate as gen

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("COMPOSER_THREADS", raising=False)
    monkeypatch.setattr(gen.os, "cpu_count", lambda: 2)
    torch.set_num_threads(2)
    try:
        for load, threads in [(0.1, 2), (1.0, 1), (2.5, 1)]:
            monkeypatch.setattr(gen, "_busy_cores", lambda load=load: load)
            with gen.generation_threads(torch.device("cpu"), rows=64):
                assert torch.get_num_threads() == threads, load
            with gen.generation_threads(torch.device("cpu"), rows=1):
                assert torch.get_num_threads() == 1  # a few rows: always one
    finally:
        torch.set_num_threads(1)
