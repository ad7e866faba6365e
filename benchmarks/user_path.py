"""The ruler: one checkpoint read through the user's path (the Predictor, from image files), row by row.

On the real sample's validate split (``../shared/data/im2latex/sample``, both layouts) the rows are the
processed images as-is (as the training loader reads them), the same files through the Predictor, the raw
full pages, the formula cropped from its page at 0.5x to 3x, as JPEG q75, in dark mode, on a transparent
background, and rendered at 10 pt (see :mod:`i2l.ruler`). With ``--images DIR --labels FILE`` it measures any
folder of images (labels: ``<file name><TAB><normalized formula>`` per line) and the same variants of them.

    .venv/bin/python benchmarks/user_path.py --checkpoint runs/learn_full/checkpoints/best.ckpt \
        [--data ../shared/data/im2latex/sample] [--images DIR --labels FILE] [--beam 1] [--max-tokens 40]
        [--out runs/user_path.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from i2l.config import shared_data
from i2l.infer import Predictor
from i2l.ruler import folder_items, format_table, ruler_rows, sample_items

SAMPLE = shared_data() / "sample"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a training checkpoint (.ckpt) or a weights file (.pt)")
    p.add_argument("--data", default=str(SAMPLE), help="a dataset folder with processed/ (and raw/) layouts")
    p.add_argument("--split", default="validate", help="split of --data to read")
    p.add_argument("--images", default=None, help="instead of --data: a folder of your own images")
    p.add_argument("--labels", default=None, help="with --images: lines '<file name><TAB><formula>'")
    p.add_argument("--beam", type=int, default=1, help="beam width")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="only formulas of at most this many tokens (e.g. the length a model was trained on)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--no-10pt", action="store_true", help="leave out the 10 pt row (it needs pdflatex)")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.images or args.labels:
        if not (args.images and args.labels):
            p.error("--images and --labels go together")
        items = folder_items(args.images, args.labels)
    else:
        items = sample_items(args.data, args.split)
    if args.max_tokens:
        items = [it for it in items if len(it.tokens) <= args.max_tokens]
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    t0 = time.time()
    rows = ruler_rows(predictor, items, beam=args.beam, render_10pt=not args.no_10pt,
                      progress=lambda name: print(f"reading: {name}", flush=True))
    print(f"\n{args.checkpoint}, {len(items)} formulas, beam {args.beam}, {time.time() - t0:.0f} s\n")
    print(format_table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"checkpoint": args.checkpoint, "n": len(items), "beam": args.beam,
                                              "max_tokens": args.max_tokens, "rows": rows}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
