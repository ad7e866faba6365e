"""Evaluate a checkpoint on a dataset split: decode every image, score with both metric families, render back.

``evaluate(checkpoint, data_dir, split)`` (the ``i2l evaluate`` command) writes to ``out_dir``:

- ``predictions.tsv``: one row per sample: image, reference, prediction, status and per-sample scores;
- ``metrics.json``: the standard protocol (:func:`i2l.metrics.compute_metrics`), the original project's
  family (:func:`i2l.metrics.seed_metrics`), the render-back comparison when asked, and the counts of every
  problem met on the way (unreadable images, failed or empty predictions, references with unknown tokens,
  lines the loader skipped).

Nothing a sample can do stops the evaluation: an unreadable image or a decoding error becomes a failed
(empty) prediction, which the standard protocol scores as wrong, and is counted.

Render-back (``render=True``, needs the LaTeX renderer or matplotlib): reference and prediction are rendered
with :func:`i2l.data.render.render_formulas`, binarised (ink = pixel < 0.5), cropped to the ink, and compared
exactly and with the all-white columns removed (Deng et al.'s "match ignoring whitespace").
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from i2l.errors import I2LError
from i2l.metrics import compute_metrics, sample_scores, seed_metrics

log = logging.getLogger(__name__)

TSV_COLUMNS = ("image", "reference", "prediction", "status", "ref_len", "pred_len", "edit_distance", "cer",
               "bleu", "exact_match", "exact_match_nospace", "unknown_in_ref")


# ----------------------------------------------------------------------------- batching and decoding
def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``cuda`` when available for ``"auto"``, else the CPU; any other value is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.no_grad()
def predict_images(
    model: torch.nn.Module, vocab: Any, images: Sequence[Any], beam_size: int = 1, max_len: int = 150,
    length_penalty: float = 1.0,
) -> list[list[str]]:
    """Token predictions for a list of PIL images (one batch; the model's device is used)."""
    from i2l.decoding import decode
    from i2l.preprocess import to_batch

    device = next(model.parameters()).device
    batch, sizes = to_batch(list(images))  # (B, 1, H, W) white-padded to a multiple of 16, (B, 2)
    hyps = decode(model, batch.to(device), sizes.to(device), beam_size=beam_size, max_len=max_len,
                  bos_id=vocab.bos_id, eos_id=vocab.eos_id, length_penalty=length_penalty)
    return [vocab.decode(h[0].tokens) if h else [] for h in hyps]


def _predict_robust(model, vocab, images, beam_size, max_len, length_penalty) -> tuple[list, list[str]]:
    """Predictions of a batch; on an error, image by image, so that one bad sample fails alone."""
    try:
        return predict_images(model, vocab, images, beam_size, max_len, length_penalty), [""] * len(images)
    except (RuntimeError, ValueError, I2LError) as exc:
        if len(images) == 1:
            return [None], [f"{type(exc).__name__}: {str(exc)[:200]}"]
    preds, errors = [], []
    for img in images:
        p, e = _predict_robust(model, vocab, [img], beam_size, max_len, length_penalty)
        preds += p
        errors += e
    return preds, errors


# ----------------------------------------------------------------------------- render-back
def binarize(image: Any, threshold: float = 0.5) -> np.ndarray:
    """Boolean ink mask (True = ink) of a PIL image or array (1 = white), cropped to the ink's bounding box."""
    arr = np.asarray(image.convert("L"), dtype=np.float32) / 255.0 if hasattr(image, "convert") else np.asarray(image)
    ink = arr < threshold
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return np.zeros((0, 0), dtype=bool)
    return ink[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]


def images_match(a: Any, b: Any) -> tuple[bool, bool]:
    """``(exact, ignoring_whitespace_columns)`` equality of two rendered formulas' binarised ink."""
    x, y = binarize(a), binarize(b)
    exact = x.shape == y.shape and bool((x == y).all())
    xs, ys = x[:, x.any(axis=0)], y[:, y.any(axis=0)]
    nospace = xs.shape == ys.shape and bool((xs == ys).all())
    return exact, nospace


def column_edit(a: Any, b: Any) -> tuple[int, int]:
    """``(Levenshtein distance, longer length)`` between the ink column sequences of two images (Deng et al.'s
    image edit distance: each binarised, ink-cropped column is one symbol); ``b=None`` means nothing rendered."""
    from rapidfuzz.distance import Levenshtein

    x = [col.tobytes() for col in binarize(a).T]
    y = [col.tobytes() for col in binarize(b).T] if b is not None else []
    return int(Levenshtein.distance(x, y)), max(len(x), len(y))


def render_back(references: Sequence[str], predictions: Sequence[str | None], backend: str = "auto") -> dict:
    """Render references and predictions and compare the images.

    Returns ``render_rate`` (share of predictions that render), ``ref_render_rate``, ``image_exact_match``,
    ``image_match_nospace`` and ``image_edit_accuracy`` (1 - column edits / columns) over the samples whose
    reference renders (a prediction that does not render counts as a mismatch), ``n_rendered_refs``, ``backend`` and per-sample ``matches``
    (``(exact, nospace)`` or None when the reference does not render).
    """
    from i2l.data.render import render_formulas

    refs = [str(r) for r in references]
    preds = [p or "" for p in predictions]
    todo = [k for k, p in enumerate(preds) if p.strip()]
    ref_res = render_formulas(refs, backend=backend)
    pred_res = render_formulas([preds[k] for k in todo], backend=backend) if todo else None
    pred_images: list[Any] = [None] * len(preds)
    if pred_res is not None:
        for k, img in zip(todo, pred_res.images):
            pred_images[k] = img
    matches: list[tuple[bool, bool] | None] = []
    dist = total = 0
    for ref_img, pred_img in zip(ref_res.images, pred_images):
        if ref_img is None:
            matches.append(None)
            continue
        matches.append((False, False) if pred_img is None else images_match(ref_img, pred_img))
        d, t = column_edit(ref_img, pred_img)
        dist, total = dist + d, total + t
    scored = [m for m in matches if m is not None]
    n = max(len(preds), 1)
    return {
        "backend": getattr(ref_res, "backend", backend),
        "render_rate": sum(img is not None for img in pred_images) / n,
        "ref_render_rate": sum(img is not None for img in ref_res.images) / n,
        "n_rendered_refs": len(scored),
        "image_exact_match": sum(m[0] for m in scored) / len(scored) if scored else 0.0,
        "image_match_nospace": sum(m[1] for m in scored) / len(scored) if scored else 0.0,
        "image_edit_accuracy": 1.0 - dist / total if total else 0.0,
        "matches": matches,
    }


# ----------------------------------------------------------------------------- published numbers
# Fractions in [0, 1]. Deng et al. 2017 (ICML, "Image-to-Markup Generation with Coarse-to-Fine Attention"),
# Table 2, IM2TEX on the Im2Latex-100K test set: corpus BLEU-4 and render-back image matches.
# The original project reported its own per-sample family (see i2l.metrics.seed_metrics).
PUBLISHED = {
    "Deng et al. 2017 (Im2Latex-100K test)": {"bleu": 0.8773, "image_edit_accuracy": 0.8760,
                                               "image_exact_match": 0.7746, "image_match_nospace": 0.7988},
    "original project (its own metrics)": {"seed_bleu": 0.81, "seed_exact_match": 0.25},
}

COMPARISON_ROWS = (
    ("BLEU-4, corpus (standard)", "bleu"),
    ("token edit accuracy (standard)", "edit_accuracy"),
    ("token exact match (standard)", "exact_match"),
    ("exact match ignoring spacing (standard)", "exact_match_nospace"),
    ("image exact match (render-back)", "image_exact_match"),
    ("image match ignoring whitespace (render-back)", "image_match_nospace"),
    ("image edit accuracy (render-back)", "image_edit_accuracy"),
    ("BLEU, mean sentence (seed)", "seed_bleu"),
    ("exact match (seed)", "seed_exact_match"),
    ("CER (seed)", "seed_cer"),
    ("edit distance, mean (seed)", "seed_edit_distance"),
)


def comparison_table(metrics: dict, name: str = "i2l (this run)"):
    """A pandas DataFrame: this run's metrics of both families beside the published numbers (NaN = not reported)."""
    import pandas as pd

    ours = {**metrics, **metrics.get("render", {})}
    columns = {name: ours, **PUBLISHED}
    data = {col: [vals.get(key, float("nan")) for _, key in COMPARISON_ROWS] for col, vals in columns.items()}
    return pd.DataFrame(data, index=[label for label, _ in COMPARISON_ROWS]).astype(float).round(4)


def find_checkpoint(cfg: Any, train_if_missing: bool = True) -> Path:
    """The checkpoint of ``cfg``'s run (``cfg.run_dir/checkpoints/best.ckpt``, else ``last.ckpt``), as notebook
    04 writes it; when there is none, train ``cfg`` first (seconds with the smoke preset). In smoke mode a
    checkpoint that no longer loads (written by an older version of the model) is replaced the same way."""
    from i2l.lit import load_checkpoint
    from i2l.train import checkpoint_dir, fit

    folder = checkpoint_dir(cfg)
    found = next((folder / n for n in ("best.ckpt", "last.ckpt") if (folder / n).is_file()), None)
    if found is not None:
        if not cfg.smoke:
            return found
        try:
            load_checkpoint(found)
            return found
        except I2LError as exc:
            log.warning("%s; training the smoke model again", exc)
    if not train_if_missing:
        raise I2LError(f"no checkpoint in {folder}: run notebook 04 or `i2l train --preset {cfg.name}` first")
    result = fit(cfg, overwrite=found is not None, progress_bar=False)
    ckpt = result.best_checkpoint or result.last_checkpoint
    if ckpt is None:
        raise I2LError(f"training {cfg.name} wrote no checkpoint in {folder}; see the training log above")
    return Path(ckpt)


def hardest(rows: Sequence[dict], k: int = 6) -> list[dict]:
    """The ``k`` worst predictions of readable images: highest CER first, longer references first on ties."""
    readable = [r for r in rows if r.get("status") != "unreadable"]
    return sorted(readable, key=lambda r: (-float(r["cer"]), -float(r["ref_len"])))[:k]


# ----------------------------------------------------------------------------- evaluation
def default_out_dir(checkpoint: str | Path, split: str, beam_size: int) -> Path:
    """``<run>/eval/<split>-beam<k>`` next to the run's ``checkpoints/`` folder (else next to the file)."""
    ckpt = Path(checkpoint).resolve()
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / "eval" / f"{split}-beam{beam_size}"


def evaluate(
    checkpoint: str | Path, data_dir: str | Path, split: str = "test", beam_size: int = 1, limit: int | None = None,
    out_dir: str | Path | None = None, batch_size: int = 32, render: bool = False, device: str = "auto",
    max_len: int | None = None, render_backend: str = "auto", progress: bool = True, verbose: bool = True,
) -> dict:
    """Decode ``split`` of ``data_dir`` with ``checkpoint``; write predictions.tsv and metrics.json to ``out_dir``;
    print a table; return the metrics dictionary (with the paths of both files)."""
    from i2l.data.im2latex import load_image, load_split_report
    from i2l.lit import load_checkpoint

    if beam_size < 1 or batch_size < 1:
        raise I2LError(f"beam_size ({beam_size}) and batch_size ({batch_size}) must be at least 1")
    start = time.time()
    model, vocab, cfg = load_checkpoint(checkpoint)
    dev = pick_device(device)
    model.to(dev).eval()
    max_len = max_len or cfg.max_len
    samples, report = load_split_report(data_dir, split)
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise I2LError(f"no samples to evaluate in the {split} split of {data_dir} ({report.summary()}): "
                       "check the folder and the split name")

    rows: list[dict] = []
    bar = tqdm(total=len(samples), desc=f"decoding {split} (beam {beam_size})", unit="img", disable=not progress)
    for i in range(0, len(samples), batch_size):
        chunk = samples[i: i + batch_size]
        images, ok, statuses = [], [], {}
        for k, s in enumerate(chunk):
            try:
                images.append(load_image(s))
                ok.append(k)
            except (I2LError, OSError) as exc:
                statuses[k] = ("unreadable", str(exc)[:200])
        preds: list = [None] * len(chunk)
        if images:
            got, errors = _predict_robust(model, vocab, images, beam_size, max_len, cfg.length_penalty)
            for k, p, e in zip(ok, got, errors):
                preds[k] = p
                if p is None:
                    statuses[k] = ("failed", e)
                    log.warning("%s: decoding failed (%s)", chunk[k].name, e)
        for k, s in enumerate(chunk):
            ref = s.tokens
            pred = preds[k] or []
            status = statuses.get(k, ("ok" if pred else "empty", ""))[0]
            rows.append({
                "image": str(s.image_path), "reference": " ".join(ref), "prediction": " ".join(pred),
                "status": status, **sample_scores(ref, pred), "unknown_in_ref": vocab.count_unknown(ref),
            })
        bar.update(len(chunk))
    bar.close()

    refs = [r["reference"] for r in rows]
    preds = [r["prediction"] for r in rows]
    metrics: dict[str, Any] = {**compute_metrics(refs, preds), **seed_metrics(refs, preds)}
    counts = {
        "samples": len(rows),
        "ok": sum(r["status"] == "ok" for r in rows),
        "empty_predictions": sum(r["status"] == "empty" for r in rows),
        "failed_predictions": sum(r["status"] == "failed" for r in rows),
        "unreadable_images": sum(r["status"] == "unreadable" for r in rows),
        "refs_with_unknown": sum(r["unknown_in_ref"] > 0 for r in rows),
        "unknown_tokens": sum(r["unknown_in_ref"] for r in rows),
        "hit_max_len": sum(r["pred_len"] >= max_len for r in rows),
        "refs_over_max_len": sum(r["ref_len"] > max_len for r in rows),  # cannot be matched in max_len tokens
        "skipped_by_loader": {k: getattr(report, k) for k in ("empty_formulas", "missing_images",
                                                              "empty_images", "bad_lines", "bad_indices")
                              if hasattr(report, k)},
    }
    if render:
        try:
            rb = render_back(refs, preds, backend=render_backend)
        except Exception as exc:  # noqa: BLE001 - the text metrics stand without the images
            log.warning("render-back failed (%s); the text metrics are still reported", exc)
            rb = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "matches": [None] * len(rows)}
        for r, m in zip(rows, rb.pop("matches")):
            r["image_exact_match"] = "" if m is None else float(m[0])
            r["image_match_nospace"] = "" if m is None else float(m[1])
        metrics["render"] = rb

    out = Path(out_dir) if out_dir is not None else default_out_dir(checkpoint, split, beam_size)
    out.mkdir(parents=True, exist_ok=True)
    tsv, js = out / "predictions.tsv", out / "metrics.json"
    write_predictions(rows, tsv)
    metrics.update({
        "counts": counts, "checkpoint": str(checkpoint), "data_dir": str(data_dir), "split": split,
        "beam_size": beam_size, "max_len": max_len, "limit": limit, "device": str(dev),
        "seconds": round(time.time() - start, 2), "predictions_tsv": str(tsv), "metrics_json": str(js),
    })
    js.write_text(json.dumps(metrics, indent=2) + "\n")
    if verbose:
        print(format_table(metrics))
        print(f"wrote {tsv} and {js}")
    return metrics


def write_predictions(rows: list[dict], path: str | Path) -> Path:
    """Write per-sample rows as a tab-separated file (tabs and newlines inside fields become spaces)."""
    path = Path(path)
    columns = list(TSV_COLUMNS) + [c for c in (rows[0] if rows else {}) if c not in TSV_COLUMNS]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, quotechar=None)
        w.writerow(columns)
        for r in rows:
            w.writerow([_clean(r.get(c, "")) for c in columns])
    return path


def _clean(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return " ".join(str(value).split("\t")).replace("\r", " ").replace("\n", " ")


def read_predictions(path: str | Path) -> list[dict]:
    """Rows of a ``predictions.tsv`` (or of the one in a folder), numbers parsed back."""
    path = Path(path)
    if path.is_dir():
        path = path / "predictions.tsv"
    if not path.is_file():
        raise I2LError(f"{path} not found: run `i2l evaluate` (or i2l.evaluate.evaluate) first")
    rows = []
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            values = line.rstrip("\n").split("\t")
            row: dict[str, Any] = dict(zip(header, values))
            for key in header[4:]:
                if row.get(key, "") != "":
                    row[key] = float(row[key])
            rows.append(row)
    return rows


def format_table(metrics: dict) -> str:
    """A plain-text table of both metric families and the counts."""
    lines = [f"{metrics.get('split', '?')} split, beam {metrics.get('beam_size', '?')}, {metrics.get('n', 0)} samples",
             f"{'standard protocol (Deng et al. 2017)':<40}{'':>8}   {'seed family (original project)':<32}"]
    std = [("BLEU-4 (corpus)", "bleu"), ("edit accuracy", "edit_accuracy"), ("exact match", "exact_match"),
           ("exact match (no spacing)", "exact_match_nospace")]
    seed = [("BLEU (mean sentence)", "seed_bleu"), ("CER", "seed_cer"), ("edit distance", "seed_edit_distance"),
            ("exact match", "seed_exact_match")]
    for (a, ka), (b, kb) in zip(std, seed):
        lines.append(f"  {a:<38}{metrics.get(ka, float('nan')):>8.4f}     {b:<30}{metrics.get(kb, float('nan')):>8.4f}")
    r = metrics.get("render")
    if r and "error" in r:
        lines.append(f"  render-back failed: {r['error']}")
    elif r:
        lines.append(f"  render-back ({r['backend']}): renders {r['render_rate']:.3f}, image exact "
                     f"{r['image_exact_match']:.3f}, ignoring spaces {r['image_match_nospace']:.3f}, "
                     f"edit accuracy {r['image_edit_accuracy']:.3f}")
    c = metrics.get("counts", {})
    if c:
        lines.append("  counts: " + ", ".join(f"{k} {v}" for k, v in c.items() if not isinstance(v, dict)))
    return "\n".join(lines)
