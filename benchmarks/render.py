"""Rendering speed (both backends, batched vs naive), generator statistics vs real formulas, fidelity.

Run: ``.venv/bin/python benchmarks/render.py [--n 400]``. Prints:

1. formulas/s of the latex backend (many formulas per pdflatex document, one Ghostscript call per batch,
   parallel pipelines) side by side with the naive way (one document per formula, ``pdflatex`` then a
   full-page ``gs -sDEVICE=pnggray`` to a PNG, then the same processing), and the ratio;
   formulas/s of the mathtext fallback;
2. the generator against the real validation formulas (token coverage, length, structure frequencies);
3. fidelity: the share of the real sample formulas whose rendering has the size of the real processed image
   and an ink box within 2 px, for the raw and for the normalized formulas.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from i2l.config import shared_data
from i2l.data.grammar import compare_statistics, generate_formulas
from i2l.data.im2latex import read_formulas
from i2l.data.render import PREAMBLE, latex_available, render_formulas
from i2l.images import process_page, to_gray

SHARED = shared_data()


def naive_render(formula: str, workdir: Path) -> Image.Image | None:
    """The baseline: one document, one pdflatex, one full-page pnggray PNG per formula."""
    (workdir / "f.tex").write_text(PREAMBLE + f"\\begin{{displaymath}}\n{formula}\n\\end{{displaymath}}\n"
                                   "\\end{document}\n")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "f.tex"], cwd=workdir, capture_output=True)
    if not (workdir / "f.pdf").exists():
        return None
    subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=pnggray", "-r200",
                    "-dTextAlphaBits=4", "-dGraphicsAlphaBits=4", "-o", "f.png", "f.pdf"], cwd=workdir,
                   capture_output=True)
    page = np.asarray(to_gray(Image.open(workdir / "f.png")))
    (workdir / "f.pdf").unlink()
    binary = np.where(page < 255, 0, 255).astype(np.uint8)
    return process_page(Image.fromarray(binary)) if (binary < 255).any() else None


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def bench_speed(n: int, n_naive: int) -> None:
    formulas = generate_formulas(n, seed=123)
    print(f"== speed: {n} generated formulas (mean {np.mean([len(f.split()) for f in formulas]):.0f} tokens), "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    if latex_available():
        with tempfile.TemporaryDirectory() as tmp:
            naive = rate(lambda: [naive_render(f, Path(tmp)) for f in formulas[:n_naive]], n_naive)
        one = rate(lambda: render_formulas(formulas, backend="latex", workers=1, progress=False), n)
        many = rate(lambda: render_formulas(formulas, backend="latex", progress=False), n)
        print(f"latex naive (1 doc + full-page png per formula): {naive:7.1f} formulas/s")
        print(f"latex batched, 1 pipeline:                       {one:7.1f} formulas/s  ({one / naive:.1f}x)")
        print(f"latex batched, parallel pipelines:               {many:7.1f} formulas/s  ({many / naive:.1f}x)")
    else:
        print("latex: pdflatex/gs not installed, skipped")
    m = min(n, 200)
    mt = rate(lambda: render_formulas(formulas[:m], backend="mathtext", progress=False), m)
    print(f"mathtext (1 process):                            {mt:7.1f} formulas/s")


def bench_statistics(n: int) -> None:
    path = SHARED / "formulas" / "val.formulas.norm.txt"
    if not path.exists():
        print(f"== statistics: {path} not found, skipped")
        return
    stats = compare_statistics(generate_formulas(n, seed=0), path.read_text().split("\n"))
    print(f"== generator vs {stats['n_real']} real validation formulas ({n} generated)")
    print(f"token coverage (real occurrences): {stats['token_coverage']:.4f}   token types: "
          f"{stats['type_coverage']:.3f}")
    for key in ("length_mean", "length_std", "depth_mean"):
        print(f"{key:12s} generated {stats[key]['generated']:6.1f}   real {stats[key]['real']:6.1f}")
    print(f"length mean ratio {stats['length_mean_ratio']:.3f}, std ratio {stats['length_std_ratio']:.3f}")
    print("share of formulas containing:        generated   real")
    for name, s in stats["structures"].items():
        print(f"  {name:32s} {s['generated']:8.3f} {s['real']:7.3f}")
    print("most frequent real tokens never generated:", " ".join(stats["missing_tokens"][:12]))


def ink_box(a: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(a < 255)
    return np.array([ys.min(), ys.max(), xs.min(), xs.max()])


def bench_fidelity() -> None:
    sample = SHARED / "sample"
    if not sample.exists() or not latex_available():
        print("== fidelity: real sample or pdflatex missing, skipped")
        return
    pairs = [line.split() for split in ("train", "validate")
             for line in (sample / "processed" / f"{split}_filter.lst").read_text().splitlines()]
    print(f"== fidelity on the {len(pairs)} real sample images (same size and ink box within 2 px)")
    for label, path in (("raw formulas.lst", sample / "raw" / "formulas.lst"),
                        ("normalized formulas.norm.lst", sample / "processed" / "formulas.norm.lst")):
        formulas = read_formulas(path)
        result = render_formulas([formulas[int(i)] for _, i in pairs], backend="latex", progress=False)
        size = box = 0
        for (name, _), image in zip(pairs, result.images):
            real = np.asarray(to_gray(Image.open(sample / "processed" / "images_processed" / name)))
            if image is not None and image.size == real.shape[::-1]:
                size += 1
                box += int(np.abs(ink_box(np.asarray(image)) - ink_box(real)).max() <= 2)
        print(f"{label:30s} same size {size / len(pairs):.3f}   size and box {box / len(pairs):.3f}   "
              f"failed {len(result.failed)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400, help="formulas for the speed test")
    p.add_argument("--naive", type=int, default=30, help="formulas for the naive baseline")
    p.add_argument("--stats-n", type=int, default=10000)
    args = p.parse_args()
    bench_speed(args.n, args.naive)
    bench_statistics(args.stats_n)
    bench_fidelity()


if __name__ == "__main__":
    main()
