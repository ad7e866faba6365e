"""Training throughput: images/s of each preset on the CPU and, where a GPU is present, seconds per epoch.

CPU: a few optimiser steps (forward, backward, AdamW) of every preset on batches of a small synthetic set
(the preset's batch size and model), images/s printed side by side with the ratio to the fastest preset.

GPU (only when CUDA is available): the ``seed`` and ``base`` presets with the precision ``fit`` would choose,
timed on the same batches repeated, and extrapolated to one epoch of the processed Im2Latex-100K training
split (about 76k images; pass --train-size to change it) and to the 15-epoch recipe.

    .venv/bin/python benchmarks/train_throughput.py [--steps 5] [--presets smoke cpu seed base]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from i2l.config import get_config
from i2l.data.synth import make_dataset
from i2l.train import choose_precision, make_datamodule, time_steps

IM2LATEX_TRAIN = 76_000


def batches_for(cfg, data: Path, n: int) -> tuple[list[dict], int]:
    """``n`` training batches of ``cfg`` from the synthetic set at ``data`` (cycled), and the vocabulary size."""
    dm = make_datamodule(cfg.replace(data_dir=str(data), augment=False, num_workers=0))
    out: list[dict] = []
    while len(out) < n:
        for batch in dm.train_dataloader():
            out.append(batch)
            if len(out) == n:
                break
    return out, len(dm.vocab)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="timed steps per preset on the CPU")
    p.add_argument("--gpu-steps", type=int, default=30)
    p.add_argument("--presets", nargs="+", default=["smoke", "cpu", "seed", "base"])
    p.add_argument("--train-size", type=int, default=IM2LATEX_TRAIN)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "synth-bench", n=200, seed=0, max_len=60, progress=False)
        rows = []
        for name in args.presets:
            cfg = get_config(name, max_len=60)
            batches, V = batches_for(cfg, data, args.steps + 1)
            rows.append((name, cfg.batch_size, time_steps(cfg, batches, V)))
        best = max(r[2] for r in rows)
        print("\nCPU training throughput (synthetic formulas <= 60 tokens)")
        print(f"{'preset':8s} {'batch':>5s} {'images/s':>9s} {'vs fastest':>10s}")
        for name, bs, ips in rows:
            print(f"{name:8s} {bs:5d} {ips:9.2f} {ips / best:10.2f}")
        if torch.cuda.is_available():
            print(f"\nGPU: {torch.cuda.get_device_name(0)}; epoch = {args.train_size} images")
            print(f"{'preset':8s} {'precision':>10s} {'images/s':>9s} {'s/epoch':>8s} {'15 epochs':>10s}")
            for name in ("seed", "base"):
                cfg = get_config(name, max_len=150)
                batches, V = batches_for(cfg, data, args.gpu_steps + 1)
                ips = time_steps(cfg, batches, V, device="cuda")
                epoch = args.train_size / ips
                print(f"{name:8s} {choose_precision(cfg):>10s} {ips:9.1f} {epoch:8.0f} {15 * epoch / 3600:9.2f}h")
        else:
            print("\nno GPU here: seconds per epoch of Im2Latex-100K are measured on a CUDA machine")


if __name__ == "__main__":
    main()
