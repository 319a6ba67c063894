"""Training throughput of composer's model against a bare ``nn.LSTM`` loop of the same shape, measured in
the same run: tokens per second of forward + backward + AdamW step, as in char-rnn training.

    python benchmarks/bench_lstm.py                      # 2x256 and 3x512, batch 32 x 128, vocab 96
    python benchmarks/bench_lstm.py --threads 2 --steps 20
    python benchmarks/bench_lstm.py --threads 2 --steps 8 --save    # also writes results/lstm.json

Prints a table. The two loops alternate step by step so that a busy machine slows both alike.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from composer.model import ModelConfig, SequenceModel, detach_state

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "lstm.json"


class Bare(torch.nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int, layers: int):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, emb)
        self.lstm = torch.nn.LSTM(emb, hidden, layers, batch_first=True)
        self.out = torch.nn.Linear(hidden, vocab)

    def forward(self, x, y, state):
        h, state = self.lstm(self.emb(x), state)
        logits = self.out(h)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), state


def measure(layers: int, hidden: int, args) -> dict:
    torch.manual_seed(0)
    vocab, batch, seq = args.vocab, args.batch, args.seq_len
    ours = SequenceModel(ModelConfig(vocab_size=vocab, layers=layers, hidden_size=hidden, embedding_size=64))
    bare = Bare(vocab, 64, hidden, layers)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (ours, bare)]
    data = torch.randint(0, vocab, (args.steps + 2, batch, seq + 1))
    times = [0.0, 0.0]
    states = [None, None]
    for i, window in enumerate(data):
        x, y = window[:, :-1], window[:, 1:]
        for k, (model, opt) in enumerate(zip((ours, bare), opts)):
            start = time.perf_counter()
            if k == 0:
                out = model(x, targets=y, state=states[0])
                loss, states[0] = out.loss, detach_state(out.state)
            else:
                loss, state = model(x, y, states[1])
                states[1] = tuple(s.detach() for s in state)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if i >= 2:  # the first steps warm up allocators and kernels
                times[k] += time.perf_counter() - start
    tokens = args.steps * batch * seq
    return {"shape": f"{layers}x{hidden}", "composer_tok_s": round(tokens / times[0]),
            "bare_lstm_tok_s": round(tokens / times[1]), "ratio": round(times[1] / times[0], 3)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each loop, after two warm-up steps")
    parser.add_argument("--batch", type=int, default=32, help="sequences per batch")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--vocab", type=int, default=96, help="vocabulary size")
    parser.add_argument("--conditions", help="how the machine was while measuring, recorded with the results")
    parser.add_argument("--save", action="store_true", help=f"write the results to {RESULT.relative_to(HERE.parent)}")
    args = parser.parse_args(argv)
    if min(args.threads, args.steps, args.batch, args.seq_len, args.vocab) < 1:
        parser.error("--threads, --steps, --batch, --seq-len and --vocab take positive numbers")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [measure(layers, hidden, args) for layers, hidden in ((2, 256), (3, 512))]
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads",
              "torch": torch.__version__, "batch": args.batch, "seq_len": args.seq_len, "rows": rows}
    if args.conditions:
        result["conditions"] = args.conditions
    print(f"{'shape':6}  {'composer tok/s':>14}  {'bare nn.LSTM tok/s':>18}  {'composer/bare':>13}")
    for row in rows:
        print(f"{row['shape']:6}  {row['composer_tok_s']:>14,}  {row['bare_lstm_tok_s']:>18,}  {row['ratio']:>13.2f}")
    if args.save:
        RESULT.parent.mkdir(exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
