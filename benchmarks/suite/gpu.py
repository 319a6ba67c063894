"""Section ``cuda`` (only where ``torch.cuda.is_available()``): training tokens/s in fp32, bf16 and fp16 for
3x512 and 3x1024 at batch 64 and 256 against the bare fused multi-layer ``nn.LSTM`` (cuDNN) at the same
precision (autocast, and a GradScaler for fp16, on both sides), and generation tokens/s at batch 1, 64 and
1024 against the bare loop on the GPU. The same code as the CPU sections (benchmarks/train.py and
benchmarks/generation.py), with ``torch.cuda.synchronize`` before every clock read.
"""

from __future__ import annotations

import torch

from benchmarks.suite import generation, train
from benchmarks.suite.common import Measure, Section, at_least


def precisions(device: torch.device) -> list[str]:
    if device.type != "cuda":
        return ["fp32"]
    return ["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp32", "fp16"]


def run(section: Section, sizes: dict, device: torch.device | None = None) -> None:
    """``device``: the GPU (default cuda:0); the CPU only for checking this code runs (tests)."""
    if device is None:
        if not torch.cuda.is_available():
            section.status = "skipped: no CUDA"
            section.say("skipped: no CUDA")
            return
        device = torch.device("cuda", 0)
    precs = sizes.get("precisions") or precisions(device)
    seq_len, steps, warmup = sizes["seq_len"], sizes["steps"], sizes["warmup"]
    section.settings = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda"
                        else None, "seq_len": seq_len, "steps": steps, "warmup": warmup, "precisions": precs,
                        "statistic": "tokens/s from each loop's fastest step; steps alternate ours / bare"}
    rows = []
    for layers, hidden in sizes["shapes"]:
        for batch in sizes["batches"]:
            for precision in precs:
                try:
                    r = train.compare(layers, hidden, batch=batch, seq_len=seq_len, steps=steps, warmup=warmup,
                                      device=device, precision=precision)
                except Exception as exc:  # one precision failing (a kernel missing) leaves the others
                    section.note(f"train {layers}x{hidden} batch {batch} {precision} failed: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                    rows.append([f"{layers}x{hidden}", batch, precision, "failed", "", "", ""])
                    continue
                rows.append([f"{layers}x{hidden}", batch, precision, f"{r['ours_tok_s']:,.0f}",
                             f"{r['bare_tok_s']:,.0f}", f"{r['ratio']:.3f}", f"{r['median_ratio']:.3f}"])
                section.add(Measure(f"train {layers}x{hidden} batch {batch} {precision}, composer / bare",
                                    r["ratio"], "ratio", f">= {train.TARGET:.2f}", at_least(r["ratio"], train.TARGET),
                                    note=f"{r['ours_tok_s']:,.0f} / {r['bare_tok_s']:,.0f} tok/s",
                                    detail={k: v for k, v in r.items() if k != "shape"}))
    section.table(f"Training tokens/s on {device.type}", ["shape", "batch", "precision", "composer tok/s",
                                                           "bare tok/s", "ratio", "ratio of medians"], rows)

    registry, model, encoder, meta = generation.load_bach(device)
    sampler = registry.sampler("ancestral")
    rows = []
    for batch in sizes["gen_batches"]:
        r = generation.compare(model, encoder, sampler, batch=batch, tokens=sizes["gen_tokens"],
                               repeats=sizes["gen_repeats"], device=device, paired=device.type != "cuda")
        # whole runs, synchronized at both ends: on a GPU the bare loop's steps are queued, not finished, when
        # the clock is read at each one, so per-step times say little there (and are not taken)
        rows.append([batch, f"{r['ours_run_tok_s']:,.0f}", f"{r['bare_run_tok_s']:,.0f}", f"{r['run_ratio']:.3f}",
                     f"{r['median_run_ratio']:.3f}"])
        section.add(Measure(f"generate batch {batch}, composer / bare loop", r["run_ratio"], "ratio",
                            f">= {generation.TARGET:.2f}", at_least(r["run_ratio"], generation.TARGET),
                            note=f"{r['ours_run_tok_s']:,.0f} / {r['bare_run_tok_s']:,.0f} tok/s", detail=r))
    section.table(f"Generation tokens/s on {device.type} (bach checkpoint, ancestral; fastest whole runs)",
                  ["batch", "composer tok/s", "bare tok/s", "ratio", "ratio of median runs"], rows)
