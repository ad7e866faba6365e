"""Training speed of the reference recipe's choices on this CPU, side by side in one run.

Each variant (model size x precision x torch.compile) trains on the same batches of a dataset, at one torch
thread as the long run does; the variants take turns, batch by batch, over several rounds, so that a noisy
machine slows all of them alike. Reported: seconds per training step (median over rounds) and the ratio to the
first variant. Accuracy per CPU-hour is what decides the recipe; this gives the "per CPU-hour" half.

    .venv/bin/python benchmarks/recipe_speed.py [--data data/synth-reference] [--batches 12] [--rounds 3]
        [--max-len 150] [--variants seed-fp32,reference-fp32,reference-bf16,reference-bf16-compile]

A variant is ``SIZE-PRECISION[-compile][-tN]``; ``-tN`` runs it on N torch threads (default ``--threads``), e.g.
``--variants reference-bf16,reference-bf16-t2`` is what one thread costs against two.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext

import torch

from i2l.config import get_config
from i2l.lit import LitIm2Latex
from i2l.train import make_datamodule

SIZES = {  # d_model, heads, layers, feed-forward
    "seed": dict(d_model=128, num_heads=4, num_layers=2, dim_feedforward=256),
    "reference": {k: getattr(get_config("reference"), k) for k in ("d_model", "num_heads", "num_layers",
                                                                   "dim_feedforward")},
}


def threads_of(variant: str, default: int) -> int:
    """The torch threads of ``variant`` (its ``-tN`` part), else ``default``."""
    return next((int(part[1:]) for part in variant.split("-")[2:] if part[:1] == "t" and part[1:].isdigit()),
                default)


def build(variant: str, vocab) -> tuple[LitIm2Latex, torch.optim.Optimizer, bool]:
    size, precision, *rest = variant.split("-")
    cfg = get_config("reference", **SIZES[size])
    lit = LitIm2Latex(cfg.to_dict(), vocab.to_dict())
    if "compile" in rest:
        lit.compile_model()
    lit.train()
    return lit, torch.optim.AdamW(lit.parameters(), lr=1e-4), precision == "bf16"


def step(lit: LitIm2Latex, opt: torch.optim.Optimizer, bf16: bool, batch: dict) -> float:
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
        loss, _ = lit.loss(batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(lit.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/synth-reference")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-len", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default="seed-fp32,reference-fp32,reference-bf16,reference-bf16-compile")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = get_config("reference", data_dir=args.data, max_len=args.max_len, curriculum=(), augment=False)
    dm = make_datamodule(cfg)
    loader = iter(dm.train_dataloader())
    batches = [next(loader) for _ in range(args.batches)]
    variants = args.variants.split(",")
    models = {v: build(v, dm.vocab) for v in variants}
    for v in variants:  # warm-up (and compilation) outside the timing
        torch.set_num_threads(threads_of(v, args.threads))
        step(*models[v], batches[0])
    per_round: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        totals = dict.fromkeys(variants, 0.0)
        for batch in batches:
            for v in variants:
                torch.set_num_threads(threads_of(v, args.threads))
                totals[v] += step(*models[v], batch)
        for v in variants:
            per_round[v].append(totals[v] / len(batches))
    base = statistics.median(per_round[variants[0]])
    rows = []
    for v in variants:
        sec = statistics.median(per_round[v])
        rows.append({"variant": v, "seconds_per_step": round(sec, 4), "ratio": round(sec / base, 3),
                     "parameters_m": round(sum(p.numel() for p in models[v][0].parameters()) / 1e6, 2)})
    mean_tokens = sum(b["tokens"].shape[1] for b in batches) / len(batches)
    print(f"{len(batches)} batches of {cfg.batch_size} (mean padded length {mean_tokens:.0f} tokens), "
          f"{args.rounds} rounds, {args.threads} thread(s)")
    print(f"{'variant':28s} {'s/step':>8s} {'ratio':>6s} {'params M':>9s}")
    for r in rows:
        print(f"{r['variant']:28s} {r['seconds_per_step']:8.3f} {r['ratio']:6.2f} {r['parameters_m']:9.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
