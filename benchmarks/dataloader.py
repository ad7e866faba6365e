"""DataLoader throughput (images/s) on the real processed sample of Im2Latex-100K.

Run: ``.venv/bin/python benchmarks/dataloader.py [--epochs 3] [--workers 0 2]``. Measures the
Im2LatexDataModule's training loader (bucketed batches, with and without augmentation) and the evaluation
loader, side by side, on ../shared/data/im2latex/sample/processed (skips with a message if absent).
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time

import torch

from i2l.config import get_config, shared_data
from i2l.data.dataset import Im2LatexDataModule, padding_fraction

SAMPLE = shared_data() / "sample" / "processed"


def throughput(loader, epochs: int) -> float:
    """Images per second over ``epochs`` passes through ``loader`` (after one warm-up batch)."""
    next(iter(loader))
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += batch["images"].shape[0]
    return n / (time.perf_counter() - start)


def main() -> int:
    """Print images/s for each setting and the ratio to the first one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if not SAMPLE.is_dir():
        print(f"skipped: the real sample is not at {SAMPLE} (only on the team's machines)")
        return 0
    torch.set_num_threads(1)
    logging.getLogger("i2l").setLevel(logging.ERROR)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), "
          f"torch {torch.__version__}; data: {SAMPLE}")
    rows = []
    for workers in args.workers:
        for augment in (False, True):
            cfg = get_config("cpu", batch_size=args.batch_size, num_workers=workers, augment=augment,
                             max_len=150)
            dm = Im2LatexDataModule(cfg, data_dir=SAMPLE)
            dm.setup()
            loader = dm.train_dataloader()
            rate = throughput(loader, args.epochs)
            pad = padding_fraction(list(loader.batch_sampler), dm.train_set.sizes)
            rows.append((f"train  workers={workers} augment={augment}", rate, pad))
    sizes = dm.train_set.sizes
    order = torch.randperm(len(sizes), generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [order[k: k + args.batch_size] for k in range(0, len(order), args.batch_size)]
    base = rows[0][1]
    print(f"{'setting':<36}{'images/s':>10}{'ratio':>8}{'padding':>9}")
    for name, rate, pad in rows:
        print(f"{name:<36}{rate:>10.0f}{rate / base:>8.2f}{pad:>9.1%}")
    print(f"padding with random (unbucketed) batches: {padding_fraction(random_batches, sizes):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
