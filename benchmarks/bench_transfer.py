"""What transfer learning buys: fine-tuning a pretrained style against training the same model from scratch.

Both runs use the project's own commands on a small style corpus that the parent never saw (by default
Beethoven's string quartets, which `checkpoints/base.toml` leaves out of pretraining):

    composer finetune --from PARENT ...       (the parent's weights, encoder and model shape)
    composer train --encoder ENCODER ...      (the same encoder options and model shape, random weights)

They share the corpus, the held-out split (same fraction and seed, checked), the batch shape, the number of
optimizer steps and the validation schedule, and run side by side, one CPU thread each, so their wall
times are comparable. The validation loss is converted to NLL per time step (nats per 16th note for the
polyphony encoding), and the final models are scored with `composer evaluate`.

    python benchmarks/bench_transfer.py                      # base -> music21:beethoven, 600 steps
    python benchmarks/bench_transfer.py --steps 100 --eval-every 20 --corpus music21:mozart
    python benchmarks/bench_transfer.py --save               # also writes results/transfer.json and .png

Prints the results as JSON and a summary; with --save, writes results/transfer.json and
results/transfer.png (learning curves against steps and seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from composer import ComposerError
from composer.checkpoint import read_meta
from composer.data import load_corpus
from composer.plugins import get_registry

HERE = Path(__file__).resolve().parent
RESULT, PLOT = HERE / "results" / "transfer.json", HERE / "results" / "transfer.png"
MODEL_KEYS = ("layers", "hidden_size", "embedding_size", "dropout", "cell", "layer_norm", "residual", "attention")


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def write_toml(path: Path, values: dict, tables: dict[str, dict]) -> None:
    lines = [f"{k} = {toml_value(v)}" for k, v in values.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def checkpoint_of(target: str) -> Path:
    """A checkpoint file, or the checkpoint of a style name."""
    path = Path(target).expanduser()
    return path if path.is_file() else get_registry().style(target).checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parent", default="base", help="style name or checkpoint to fine-tune from (default base)")
    ap.add_argument("--corpus", default="music21:beethoven",
                    help="the held-out style corpus (default music21:beethoven)")
    ap.add_argument("--steps", type=int, default=600, help="optimizer steps for each run (default 600)")
    ap.add_argument("--eval-every", type=int, default=50, help="steps between validations (default 50)")
    ap.add_argument("--valid-fraction", type=float, default=0.2, help="held-out share of the corpus (default 0.2)")
    ap.add_argument("--batch-size", type=int, default=32, help="sequences per batch (default 32)")
    ap.add_argument("--seq-len", type=int, default=128, help="tokens per training window (default 128)")
    ap.add_argument("--finetune-lr", type=float, default=5e-4, help="default: `composer finetune`'s default")
    ap.add_argument("--scratch-lr", type=float, default=3e-3, help="default: the rate the shipped recipes use")
    ap.add_argument("--seed", type=int, default=1, help="seed of the split and of both runs (default 1)")
    ap.add_argument("--sequential", action="store_true", help="run one after the other instead of side by side")
    ap.add_argument("--work", default="runs/bench-transfer",
                    help="folder for the two runs and their logs (default runs/bench-transfer)")
    ap.add_argument("--save", action="store_true",
                    help=f"write {RESULT.relative_to(HERE.parent)} and {PLOT.relative_to(HERE.parent)}")
    args = ap.parse_args(argv)
    if min(args.steps, args.eval_every, args.batch_size, args.seq_len) < 1 or not 0 < args.valid_fraction < 1:
        ap.error("--steps, --eval-every, --batch-size and --seq-len take positive numbers, --valid-fraction one "
                 "between 0 and 1")
    try:
        args.parent_checkpoint = checkpoint_of(args.parent)
    except ComposerError as exc:
        ap.error(f"--parent: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = read_meta(args.parent_checkpoint)
    enc_meta, model_meta = meta["encoder"], meta["model"]
    reg = get_registry()
    encoder = reg.encoder(enc_meta["name"])()
    encoder.load_state_dict(enc_meta["state"])
    # read the corpus once here, so that both runs find it in the cache
    corpus = load_corpus(args.corpus, encoder, reg.corpora, fitted=True)
    print(f"corpus {args.corpus}: {corpus.summary()}", flush=True)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    common = {"corpus": args.corpus, "valid_fraction": args.valid_fraction, "seed": args.seed, "epochs": 10_000,
              "max_steps": args.steps, "eval_every": args.eval_every, "patience": 0, "batch_size": args.batch_size,
              "seq_len": args.seq_len, "save_every": 0, "augment": True}
    finetune_cfg, scratch_cfg = work / "finetune.toml", work / "scratch.toml"
    write_toml(finetune_cfg, {**common, "lr": args.finetune_lr, "warmup_steps": 20}, {})
    write_toml(scratch_cfg, {**common, "encoder": enc_meta["name"], "lr": args.scratch_lr, "warmup_steps": 100},
               {"model": {k: model_meta[k] for k in MODEL_KEYS if k in model_meta},
                "encoder_options": enc_meta["state"].get("options", {})})
    runs = {
        "finetuned": (work / "finetuned", ["finetune", "--from", str(args.parent), "--name", "bench-transfer",
                                           "--config", str(finetune_cfg),
                                           "--save-to", str(work / "finetuned.safetensors")]),
        "scratch": (work / "scratch", ["train", "--config", str(scratch_cfg)]),
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs: dict[str, subprocess.Popen] = {}
    for name, (run, argv) in runs.items():
        if run.exists():
            shutil.rmtree(run)
        cmd = [sys.executable, "-m", "composer", *argv, "-o", str(run)]
        print(f"{name}: {' '.join(cmd[2:])}", flush=True)
        with open(work / f"{name}.log", "w") as log:  # the child keeps its own handle
            procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        if args.sequential:
            procs[name].wait()
    seen = {name: 0 for name in runs}
    while True:
        for name, (run, _) in runs.items():
            metrics = read_metrics(run)
            for m in metrics[seen[name]:]:
                print(f"  {name:9s} step {m['step']:5d}  {m['elapsed']:7.1f} s  valid {m['valid_loss']:.4f} nats/token",
                      flush=True)
            seen[name] = len(metrics)
        if all(p.poll() is not None for p in procs.values()):
            break
        time.sleep(5)
    for name, p in procs.items():
        if p.returncode:
            print(f"error: the {name} run failed (exit {p.returncode}); see {work / (name + '.log')}", file=sys.stderr)
            return 1

    models = {"finetuned": work / "finetuned.safetensors", "scratch": runs["scratch"][0] / "model.safetensors"}
    valids = {name: read_meta(path)["provenance"]["valid"] for name, path in models.items()}
    if valids["finetuned"] != valids["scratch"]:
        print("error: the two runs validated on different pieces", file=sys.stderr)
        return 1
    scores = {}
    for name, path in models.items():
        out = subprocess.run([sys.executable, "-m", "composer", "evaluate", "--checkpoint", str(path),
                              "--samples", "0", "--json"], capture_output=True, text=True, env=env, check=True)
        scores[name] = json.loads(out.stdout)
    per_step = scores["scratch"]["tokens"] / scores["scratch"]["steps"]  # tokens per time step of the valid split

    curves = {}
    for name, (run, _) in runs.items():
        curves[name] = [{"step": m["step"], "elapsed": m["elapsed"], "nll_per_token": m["valid_loss"],
                         "nll_per_step": round(m["valid_loss"] * per_step, 4)} for m in read_metrics(run)]
    ft, sc = curves["finetuned"], curves["scratch"]
    ft_time = ft[-1]["elapsed"]
    sc_at_time = [c for c in sc if c["elapsed"] <= ft_time] or sc[:1]
    ft_best = min(c["nll_per_step"] for c in ft)
    reach = next((c["step"] for c in sc if c["nll_per_step"] <= ft_best), None)
    summary = {
        "equal_steps": {"steps": args.steps, "finetuned_nll_per_step": ft_best,
                        "scratch_nll_per_step": min(c["nll_per_step"] for c in sc)},
        "equal_time": {"seconds": ft_time, "finetuned_nll_per_step": ft_best,
                       "scratch_nll_per_step": min(c["nll_per_step"] for c in sc_at_time)},
        "finetuned_first_eval": ft[0],
        "scratch_steps_to_reach_finetuned": reach,
        "evaluate": {name: {k: s[k] for k in ("nll_per_token", "nll_per_step", "token_accuracy", "sequences",
                                               "tokens", "steps")} for name, s in scores.items()},
    }
    result = {
        "command": "python benchmarks/bench_transfer.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "parent": args.parent, "corpus": args.corpus, "corpus_summary": corpus.summary(),
        "valid_pieces": valids["scratch"], "cpu_threads_per_run": 1, "side_by_side": not args.sequential,
        "settings": {**common, "finetune_lr": args.finetune_lr, "scratch_lr": args.scratch_lr},
        "summary": summary, "curves": curves,
    }
    print(json.dumps(result, indent=1))
    eq, et = summary["equal_steps"], summary["equal_time"]
    print(f"after {args.steps} steps: fine-tuned {eq['finetuned_nll_per_step']:.3f}, from scratch "
          f"{eq['scratch_nll_per_step']:.3f} nats per time step (held-out {args.corpus})")
    print(f"after {et['seconds']:.0f} s: fine-tuned {et['finetuned_nll_per_step']:.3f}, from scratch "
          f"{et['scratch_nll_per_step']:.3f}")
    print(f"from scratch reached the fine-tuned model's best {'at step ' + str(reach) if reach else 'never'}")
    if args.save:
        RESULT.parent.mkdir(exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
        plot(curves, args, PLOT)
        print(f"wrote {RESULT} and {PLOT}")
    return 0


def plot(curves: dict, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    labels = {"finetuned": f"fine-tuned from {args.parent}", "scratch": "from scratch"}
    for name, points in curves.items():
        axes[0].plot([p["step"] for p in points], [p["nll_per_step"] for p in points], marker=".", label=labels[name])
        axes[1].plot([p["elapsed"] for p in points], [p["nll_per_step"] for p in points], marker=".",
                     label=labels[name])
    axes[0].set_xlabel("optimizer steps")
    axes[1].set_xlabel("wall time (s, one CPU thread per run)")
    axes[0].set_ylabel("validation NLL per time step (nats)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{args.corpus} (held out from pretraining): fine-tuning vs training from scratch")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
