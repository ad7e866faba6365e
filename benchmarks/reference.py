"""The reference model's figures, as users get them: every score read by the Predictor from image files.

1. **Real validation proxy**: the real validation formulas (``../shared/data/im2latex/formulas/
   val.formulas.norm.txt``, all lengths) rendered by i2l's renderer into ``data/proxy-val`` (once; never
   committed, never trained on); a fixed random subset of ``--n`` of them (``--n 0``: all), read through the
   Predictor: corpus BLEU-4, token edit accuracy, exact match.
   Beside it, held-out synthetic formulas of the reference data (``--synthetic-n``), and the **realism** ratio:
   proxy BLEU / synthetic BLEU, 1.0 when real formulas read as well as the generator's.
2. **The ruler** on the real sample's 85 validate images (:mod:`i2l.ruler`): processed images as-is and through
   the Predictor, raw pages, the page crop at 0.5x-3x, JPEG, dark mode, transparent, 10 pt.
3. **CPU speed**: milliseconds per image at batch 1, one torch thread, greedy and beam 5.

``--ship`` then replaces the shipped weights (:func:`i2l.pretrained.ship`) with ``--checkpoint`` if its proxy
BLEU beats the shipped model's, with the proxy scores in ``i2l/weights/reference.json`` and its training
log (:func:`i2l.train.run_log`: a cooldown branch's log follows its main run's) in ``reference_metrics.csv``.
The figures go to ``--out`` (default: ``figures/reference.json`` for the shipped model, else beside the checkpoint).

    .venv/bin/python benchmarks/reference.py [--checkpoint pretrained | runs/reference/checkpoints/last.ckpt]
        [--n 1000] [--beam 1] [--threads 1] [--ship] [--skip-ruler] [--skip-speed]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from i2l.config import PRETRAINED, project_root, shared_data
from i2l.data.im2latex import load_split
from i2l.data.synth import is_dataset, make_dataset
from i2l.evaluate import metrics_of, score_rows
from i2l.infer import Predictor
from i2l.ruler import format_table, ruler_rows, sample_items
from i2l.train import training_record

SHARED = shared_data()
REAL_FORMULAS = SHARED / "formulas" / "val.formulas.norm.txt"
SAMPLE = SHARED / "sample"
PROXY_DIR = project_root() / "data" / "proxy-val"


def proxy_samples(folder: Path, n: int, seed: int = 0) -> list:
    """Every rendered proxy formula (all three splits of ``make_dataset``'s folder), or a seeded subset of ``n``."""
    if not is_dataset(folder):
        if not REAL_FORMULAS.is_file():
            raise SystemExit(f"{REAL_FORMULAS} not found: the proxy needs the real validation formulas (../shared)")
        make_dataset(folder, formulas_file=REAL_FORMULAS, progress=True)
    samples = [s for split in ("train", "validate", "test") for s in load_split(folder, split)]
    samples.sort(key=lambda s: s.index)
    if n and n < len(samples):
        samples = random.Random(seed).sample(samples, n)
    return samples


def proxy_scores(predictor: Predictor, samples: list, beam: int) -> dict:
    rows = score_rows(predictor, [s.image_path for s in samples], [s.tokens for s in samples], beam_size=beam,
                      max_len=predictor.cfg.max_len, desc=f"proxy (beam {beam})")
    m = metrics_of(rows, predictor.cfg.max_len)
    by_len = {}
    for name, lo, hi in (("<=40", 0, 40), ("41-80", 41, 80), ("81-150", 81, 150)):
        part = [r for r in rows if lo <= len(r["reference"].split()) <= hi]
        if part:
            pm = metrics_of(part, predictor.cfg.max_len)
            by_len[name] = {"n": len(part), "bleu": pm["bleu"], "exact_match": pm["exact_match"]}
    return {"n": m["n"], "bleu": m["bleu"], "edit_accuracy": m["edit_accuracy"], "exact_match": m["exact_match"],
            "unreadable": m["counts"]["unreadable_images"], "by_length": by_len}


def synthetic_samples(n: int, seed: int = 0) -> list:
    """A seeded subset of the reference data's held-out synthetic formulas (the validate splits of its shards)."""
    from i2l.config import get_config
    from i2l.data.synth import shard_dirs

    folders = shard_dirs(get_config("reference").data_path)
    samples = [s for folder in folders for s in load_split(folder, "validate")]
    return random.Random(seed).sample(samples, min(n, len(samples))) if samples else []


def speed(predictor: Predictor, samples: list, beams: tuple[int, ...] = (1, 5), n: int = 40) -> dict:
    """Milliseconds per image at batch 1 (preprocessing included), median of ``n`` images, per beam width."""
    images = [s.image_path for s in samples[:n]]
    predictor.predict(images[:2])  # warm-up
    out = {}
    for beam in beams:
        times = []
        for img in images:
            t0 = time.perf_counter()
            predictor.predict([img], beam=beam)
            times.append(time.perf_counter() - t0)
        times.sort()
        out[f"beam{beam}_ms"] = round(1000 * times[len(times) // 2], 1)
    return out


START, END = "<!-- reference figures: start -->", "<!-- reference figures: end -->"
DOCS = (project_root() / "README.md", project_root() / "i2l" / "weights" / "MODEL_CARD.md")


def markdown(result: dict) -> str:
    """The figures as Markdown: the proxy (with its targets), by length, the ruler and the speed."""
    px = result["proxy"]
    lines = [f"Model `{result['model']}`, beam {result['beam']}, measured by `benchmarks/reference.py` through the "
             "Predictor from image files.", "",
             "| real validation proxy | n | BLEU | edit accuracy | exact match |", "| --- | ---: | ---: | ---: | ---: |",
             f"| all lengths | {px['n']} | {px['bleu']:.3f} | {px['edit_accuracy']:.3f} | {px['exact_match']:.3f} |"]
    for name, part in px.get("by_length", {}).items():
        lines.append(f"| {name} tokens | {part['n']} | {part['bleu']:.3f} | | {part['exact_match']:.3f} |")
    lines.append("| *target (floor)* | | *0.80 (0.70)* | *0.85* | *0.25* |")
    if result.get("synthetic"):
        sy = result["synthetic"]
        lines.append(f"| held-out synthetic (realism {result['realism']:.2f} = proxy BLEU / this BLEU) | {sy['n']} | "
                     f"{sy['bleu']:.3f} | {sy['edit_accuracy']:.3f} | {sy['exact_match']:.3f} |")
    if result.get("simple"):
        sm = result["simple"]
        lines += ["", f"Simple formulas (`i2l.pretrained.read_simple`: {sm['n']} short basic-level formulas rendered "
                  f"afresh): {sm['exact']} of {sm['n']} read exactly (target 8), BLEU {sm['bleu']:.3f}."]
    if result.get("ruler"):
        lines += ["", "The ruler on the real sample's validate images (the rows of `i2l.ruler`):", "",
                  format_table(result["ruler"])]
    if result.get("speed"):
        sp = result["speed"]
        lines += ["", f"CPU speed at batch 1, {result['threads']} thread: greedy {sp['beam1_ms']:.0f} ms per image, "
                  f"beam 5 {sp['beam5_ms']:.0f} ms (targets: 100 ms and 300 ms)."]
    return "\n".join(lines)


def write_docs(result: dict, paths=DOCS) -> None:
    """Replace the text between the figure markers of the README and the model card with :func:`markdown`."""
    block = f"{START}\n{markdown(result)}\n{END}"
    for path in paths:
        text = path.read_text()
        if START not in text or END not in text:
            raise SystemExit(f"{path} has no {START} ... {END} markers")
        head, rest = text.split(START, 1)
        path.write_text(head + block + rest.split(END, 1)[1])
        print(f"updated {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=PRETRAINED, help="'pretrained' (the shipped model) or a .ckpt/.pt file")
    p.add_argument("--n", type=int, default=1000, help="proxy formulas to read (0: all)")
    p.add_argument("--synthetic-n", type=int, default=500,
                   help="held-out synthetic formulas of the reference data, for the realism ratio (0: none)")
    p.add_argument("--beam", type=int, default=1, help="beam width for the proxy and the ruler")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--proxy-dir", default=str(PROXY_DIR), help="where the rendered proxy lives")
    p.add_argument("--out", default=None, help="where the figures go (default: figures/reference.json for the "
                   "shipped model, reference.json beside any other checkpoint)")
    p.add_argument("--ship", action="store_true", help="ship --checkpoint if it beats the shipped model")
    p.add_argument("--skip-ruler", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--docs", action="store_true", help="write the figures into the README and the model card "
                   "(only for the shipped model)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    predictor = Predictor.load(args.checkpoint, device="cpu")
    samples = proxy_samples(Path(args.proxy_dir), args.n)
    result: dict = {"model": predictor.model_name, "beam": args.beam, "threads": args.threads,
                    "proxy": proxy_scores(predictor, samples, args.beam)}
    print(f"proxy ({result['proxy']['n']} real validation formulas, all lengths): BLEU {result['proxy']['bleu']:.3f}, "
          f"edit accuracy {result['proxy']['edit_accuracy']:.3f}, exact match {result['proxy']['exact_match']:.3f}")
    synthetic = synthetic_samples(args.synthetic_n) if args.synthetic_n else []
    if synthetic:  # realism: how much of what the model reads on its own kind of data carries over to real formulas
        result["synthetic"] = proxy_scores(predictor, synthetic, args.beam)
        result["realism"] = round(result["proxy"]["bleu"] / max(result["synthetic"]["bleu"], 1e-9), 3)
        print(f"synthetic held-out ({result['synthetic']['n']}): BLEU {result['synthetic']['bleu']:.3f}; "
              f"realism (proxy BLEU / synthetic BLEU) {result['realism']:.3f}")
    from i2l.pretrained import SIMPLE_TARGET, read_simple

    result["simple"] = read_simple(predictor)
    print(f"simple formulas read exactly: {result['simple']['exact']} of {result['simple']['n']} "
          f"(target {SIMPLE_TARGET}), BLEU {result['simple']['bleu']:.3f}")
    if not args.skip_ruler and SAMPLE.is_dir():
        rows = ruler_rows(predictor, sample_items(SAMPLE), beam=args.beam)
        result["ruler"] = rows
        print(format_table(rows))
    if not args.skip_speed:
        result["speed"] = speed(predictor, samples)
        print(f"speed at batch 1, {args.threads} thread(s): {result['speed']}")
    result["training"] = {} if args.checkpoint == PRETRAINED else training_record(args.checkpoint)
    result["seconds"] = round(time.time() - start, 1)
    if args.ship:
        from i2l.pretrained import ship

        scores = {"bleu": result["proxy"]["bleu"], "edit_accuracy": result["proxy"]["edit_accuracy"],
                  "exact_match": result["proxy"]["exact_match"], "n": result["proxy"]["n"],
                  "simple_exact": result["simple"]["exact"], "simple_bleu": result["simple"]["bleu"]}
        from i2l.errors import I2LError
        from i2l.train import write_run_log

        with tempfile.TemporaryDirectory() as tmp:
            try:  # the lineage's log: a cooldown branch's steps continue its main run's
                log = write_run_log(args.checkpoint, Path(tmp) / "metrics.csv")
            except I2LError:  # a checkpoint outside a run folder: shipped without its log
                log = None
            shipped = ship(args.checkpoint, scores, result["training"], metrics_csv=log)
        if shipped:
            from i2l.pretrained import model_name

            result["model"] = model_name()
        print("shipped" if shipped else "not shipped: the shipped model scores as well or better on the proxy")
        result["shipped"] = shipped
    is_shipped = args.checkpoint == PRETRAINED or result.get("shipped", False)
    out = Path(args.out) if args.out else (project_root() / "figures" / "reference.json" if is_shipped
                                          else Path(args.checkpoint).parent / "reference.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"written {out} ({result['seconds']:.0f} s)")
    if args.docs and is_shipped:
        write_docs(result)


if __name__ == "__main__":
    main()
