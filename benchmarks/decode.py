"""Decoding speed at the ``seed`` preset: cached vs full-recomputation greedy, beam search, images per second.

Every sequence decodes exactly ``--max-len`` tokens (the end token is suppressed), on random weights (speed does
not depend on them) and synthetic formula-sized images. Timings are the best of ``--repeats`` runs, measured side
by side in one process, so the ratios hold even on a busy machine where the absolute figures are noisy.

    .venv/bin/python benchmarks/decode.py               # about 1-3 minutes on a 2-core CPU
    .venv/bin/python benchmarks/decode.py --threads 2 --json runs/bench_decode.json

On a CPU shared with other jobs, one thread is usually faster and much steadier than two for this small
decoder (OpenMP threads wait on each other for every tiny operation); ``--threads`` sets it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from i2l.config import get_config
from i2l.decoding import beam_search, greedy_decode, greedy_decode_uncached
from i2l.model import Im2LatexModel, parameter_counts


def formula_images(B: int, H: int, W: int, seed: int = 0) -> torch.Tensor:
    """(B, 1, H, W) white images with a band of random dark 'ink' where a formula would be."""
    g = torch.Generator().manual_seed(seed)
    images = torch.ones(B, 1, H, W)
    images[:, :, H // 4 : 3 * H // 4, W // 10 : 9 * W // 10] = torch.rand(
        B, 1, 3 * H // 4 - H // 4, 9 * W // 10 - W // 10, generator=g
    )
    return images


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print a table and the ratios, return the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="seed")
    p.add_argument("--vocab", type=int, default=500, help="vocabulary size (Im2Latex-100K: about 500)")
    p.add_argument("--max-len", type=int, default=150)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--batches", default="1,8,32", help="batch sizes for images/s")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = get_config(args.preset)
    model = Im2LatexModel(cfg, args.vocab).eval()
    n_params = parameter_counts(model)["total"]
    L, k = args.max_len, args.beam_size
    kw = dict(max_len=L, min_len=L)  # every sequence decodes exactly L tokens
    print(
        f"preset {cfg.name}: {n_params / 1e6:.2f}M parameters, vocab {args.vocab}, images {args.height}x{args.width}, "
        f"{L} tokens | torch {torch.__version__}, {args.threads} thread(s), {platform.processor() or platform.machine()}"
    )
    greedy_decode(model, formula_images(2, args.height, args.width), max_len=5)  # warm-up
    results: dict = {"preset": cfg.name, "parameters": n_params, "threads": args.threads, "max_len": L}

    # 1. cached vs full recomputation, side by side
    rows = []
    for B in (1, 8):
        images = formula_images(B, args.height, args.width, seed=B)
        with torch.inference_mode():
            t_enc, _ = best_time(lambda images=images: model.encode(images), args.repeats)
        t_c, out_c = best_time(lambda images=images: greedy_decode(model, images, **kw), args.repeats)
        t_u, out_u = best_time(
            lambda images=images: greedy_decode_uncached(model, images, **kw), args.repeats
        )
        assert out_c == out_u, "cached and uncached greedy disagree"
        rows.append((B, t_enc, t_c, t_u))
        results[f"greedy_b{B}"] = {
            "encoder_s": t_enc,
            "cached_s": t_c,
            "uncached_s": t_u,
            "speedup": t_u / t_c,
        }
    print(f"\n1. Greedy, {L} tokens: cached vs full recomputation (identical tokens)")
    print(f"{'batch':>5} {'encoder':>9} {'cached':>9} {'uncached':>9} {'speed-up':>9} {'decoder only':>13}")
    for B, t_enc, t_c, t_u in rows:
        dec = (t_u - t_enc) / max(t_c - t_enc, 1e-9)
        results[f"greedy_b{B}"]["speedup_decoder_only"] = dec
        print(f"{B:>5} {t_enc:>8.3f}s {t_c:>8.3f}s {t_u:>8.3f}s {t_u / t_c:>8.1f}x {dec:>12.1f}x")

    # 2. beam search vs greedy at batch 1
    images = formula_images(1, args.height, args.width, seed=1)
    t_g, _ = best_time(lambda: greedy_decode(model, images, **kw), args.repeats)
    t_b, _ = best_time(lambda: beam_search(model, images, beam_size=k, **kw), args.repeats)
    results["beam_vs_greedy_b1"] = {"greedy_s": t_g, "beam_s": t_b, "ratio": t_b / t_g, "beam_size": k}
    print(f"\n2. Beam search k={k} vs cached greedy, batch 1: {t_b:.3f}s vs {t_g:.3f}s = {t_b / t_g:.2f}x")

    # 3. throughput
    print(f"\n3. Images per second ({L} tokens each)")
    print(f"{'batch':>5} {'greedy':>10} {'beam k=' + str(k):>10}")
    for B in (int(b) for b in args.batches.split(",")):
        images = formula_images(B, args.height, args.width, seed=B)
        reps = max(1, args.repeats - (B >= 32))
        t_g, _ = best_time(lambda images=images: greedy_decode(model, images, **kw), reps)
        t_b, _ = best_time(lambda images=images: beam_search(model, images, beam_size=k, **kw), reps)
        results[f"throughput_b{B}"] = {"greedy_img_s": B / t_g, "beam_img_s": B / t_b}
        print(f"{B:>5} {B / t_g:>10.1f} {B / t_b:>10.1f}")

    ok1 = all(results[f"greedy_b{B}"]["speedup"] >= 5 for B in (1, 8))
    ok2 = results["beam_vs_greedy_b1"]["ratio"] <= 3
    print(f"\ntargets: cached >= 5x uncached at batch 1 and 8: {ok1} | beam k={k} <= 3x greedy: {ok2}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
