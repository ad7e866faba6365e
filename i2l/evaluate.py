"""Evaluate a checkpoint on a dataset split through the Predictor, score with both metric families, render back.

Every image is read by :class:`i2l.infer.Predictor` from its file, as a user would hand it over (the
user's path: preprocessing included); ``as_is=True`` (``i2l evaluate --as-is``) reads the dataset's images as
the training loader does instead, so that the two can be set side by side.

``evaluate(checkpoint, data_dir, split)`` (the ``i2l evaluate`` command) writes to ``out_dir``:

- ``predictions.tsv``: one row per sample: image, reference, prediction, status and per-sample scores;
- ``metrics.json``: the standard protocol (:func:`i2l.metrics.compute_metrics`), the original project's
  family (:func:`i2l.metrics.seed_metrics`), the render-back comparison when asked, and the counts of every
  problem met on the way (unreadable images, failed or empty predictions, references with unknown tokens,
  lines the loader skipped).

Nothing a sample can do stops the evaluation: an unreadable image or a decoding error becomes a failed
(empty) prediction, which the standard protocol scores as wrong, and is counted.

Render-back (``render=True``, needs the LaTeX renderer or matplotlib) is :func:`i2l.renderback.render_back`;
the published numbers to compare with are in :mod:`i2l.published`.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from i2l.data.im2latex import load_split_report, sample_image
from i2l.errors import I2LError
from i2l.infer import Predictor
from i2l.metrics import compute_metrics, sample_scores, seed_metrics
from i2l.renderback import render_back

log = logging.getLogger(__name__)

TSV_COLUMNS = ("image", "reference", "prediction", "status", "ref_len", "pred_len", "edit_distance", "cer",
               "bleu", "exact_match", "exact_match_nospace", "unknown_in_ref", "scale")


def hardest(rows: Sequence[dict], k: int = 6) -> list[dict]:
    """The ``k`` worst predictions of readable images: highest CER first, longer references first on ties."""
    readable = [r for r in rows if r.get("status") != "unreadable"]
    return sorted(readable, key=lambda r: (-float(r["cer"]), -float(r["ref_len"])))[:k]


# ----------------------------------------------------------------------------- evaluation
def default_out_dir(checkpoint: str | Path, split: str, beam_size: int, as_is: bool = False) -> Path:
    """``<run>/eval/<split>-beam<k>[-as-is]`` next to the run's ``checkpoints/`` folder (else next to the file)."""
    ckpt = Path(checkpoint).resolve()
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / "eval" / f"{split}-beam{beam_size}{'-as-is' if as_is else ''}"


def score_rows(predictor: Predictor, images: Sequence[Any], references: Sequence[Sequence[str]],
               beam_size: int = 1, max_len: int | None = None, as_is: bool = False, names: Sequence[str] | None = None,
               progress: bool = True, desc: str = "decoding") -> list[dict]:
    """Read ``images`` with ``predictor`` (the user's path; ``as_is=True``: the dataset's processed images as
    they are) and score each reading against its reference tokens: one row per image (see TSV_COLUMNS)."""
    rows: list[dict] = []
    step = max(1, predictor.batch_size)
    bar = tqdm(total=len(images), desc=desc, unit="img", disable=not progress)
    for i in range(0, len(images), step):
        results = predictor.predict(list(images[i:i + step]), beam=beam_size, max_len=max_len, strict=False,
                                    as_is=as_is)
        for k, res in enumerate(results, start=i):
            ref = list(references[k])
            pred = res.tokens if res.ok else []
            if res.ok:
                status = "ok" if pred else "empty"
            else:
                status = "unreadable" if res.image is None else "failed"
                log.warning("%s: %s", names[k] if names else f"image {k}", res.error)
            rows.append({
                "image": str(names[k]) if names else _describe(images[k]), "reference": " ".join(ref),
                "prediction": " ".join(pred), "status": status, **sample_scores(ref, pred),
                "unknown_in_ref": predictor.vocab.count_unknown(ref), "scale": res.scale,
            })
        bar.update(len(results))
    bar.close()
    return rows


def _describe(image: Any) -> str:
    return str(image) if isinstance(image, (str, Path)) else f"<{type(image).__name__}>"


def metrics_of(rows: Sequence[dict], max_len: int) -> dict[str, Any]:
    """Both metric families over ``rows`` (of :func:`score_rows`) and the counts of every problem met."""
    refs = [r["reference"] for r in rows]
    preds = [r["prediction"] for r in rows]
    metrics: dict[str, Any] = {**compute_metrics(refs, preds), **seed_metrics(refs, preds)}
    metrics["counts"] = {
        "samples": len(rows),
        "ok": sum(r["status"] == "ok" for r in rows),
        "empty_predictions": sum(r["status"] == "empty" for r in rows),
        "failed_predictions": sum(r["status"] == "failed" for r in rows),
        "unreadable_images": sum(r["status"] == "unreadable" for r in rows),
        "refs_with_unknown": sum(r["unknown_in_ref"] > 0 for r in rows),
        "unknown_tokens": sum(r["unknown_in_ref"] for r in rows),
        "hit_max_len": sum(r["pred_len"] >= max_len for r in rows),
        "refs_over_max_len": sum(r["ref_len"] > max_len for r in rows),  # cannot be matched in max_len tokens
    }
    return metrics


def evaluate(
    checkpoint: str | Path, data_dir: str | Path, split: str = "test", beam_size: int = 1, limit: int | None = None,
    out_dir: str | Path | None = None, batch_size: int = 32, render: bool = False, device: str = "auto",
    max_len: int | None = None, render_backend: str = "auto", progress: bool = True, verbose: bool = True,
    as_is: bool = False,
) -> dict:
    """Read ``split`` of ``data_dir`` with ``checkpoint`` through the :class:`~i2l.infer.Predictor`, from the image
    files as a user hands them over (raw pages too); write predictions.tsv and metrics.json to ``out_dir``; print a
    table; return the metrics dictionary (with the paths of both files).

    ``as_is=True`` reads the dataset's images as the training loader does instead (processed images unchanged,
    raw pages through :func:`i2l.images.process_page`), to set the two paths side by side."""
    if beam_size < 1 or batch_size < 1:
        raise I2LError(f"beam_size ({beam_size}) and batch_size ({batch_size}) must be at least 1")
    start = time.time()
    predictor = Predictor.load(checkpoint, device=device, batch_size=batch_size)
    max_len = max_len or predictor.cfg.max_len
    samples, report = load_split_report(data_dir, split)
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise I2LError(f"no samples to evaluate in the {split} split of {data_dir} ({report.summary()}): "
                       "check the folder and the split name")
    images = [_dataset_image(s) for s in samples] if as_is else [s.image_path for s in samples]
    rows = score_rows(predictor, images, [s.tokens for s in samples], beam_size, max_len, as_is=as_is,
                      names=[str(s.image_path) for s in samples], progress=progress,
                      desc=f"decoding {split} (beam {beam_size}{', as is' if as_is else ''})")
    metrics = metrics_of(rows, max_len)
    metrics["counts"]["skipped_by_loader"] = {
        k: getattr(report, k) for k in ("empty_formulas", "missing_images", "empty_images", "bad_lines",
                                        "bad_indices")}
    if render:
        try:
            rb = render_back([r["reference"] for r in rows], [r["prediction"] for r in rows],
                             backend=render_backend)
        except Exception as exc:  # noqa: BLE001 - the text metrics stand without the images
            log.warning("render-back failed (%s); the text metrics are still reported", exc)
            rb = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "matches": [None] * len(rows)}
        for r, m in zip(rows, rb.pop("matches")):
            r["image_exact_match"] = "" if m is None else float(m[0])
            r["image_match_nospace"] = "" if m is None else float(m[1])
        metrics["render"] = rb

    out = Path(out_dir) if out_dir is not None else default_out_dir(checkpoint, split, beam_size, as_is)
    out.mkdir(parents=True, exist_ok=True)
    tsv, js = out / "predictions.tsv", out / "metrics.json"
    write_predictions(rows, tsv)
    metrics.update({
        "checkpoint": str(checkpoint), "data_dir": str(data_dir), "split": split, "path": "as-is" if as_is else
        "predictor", "beam_size": beam_size, "max_len": max_len, "limit": limit, "device": str(predictor.device),
        "seconds": round(time.time() - start, 2), "predictions_tsv": str(tsv), "metrics_json": str(js),
    })
    js.write_text(json.dumps(metrics, indent=2) + "\n")
    if verbose:
        print(format_table(metrics))
        print(f"wrote {tsv} and {js}")
    return metrics


def _dataset_image(sample: Any) -> Any:
    """The image of a sample as the training loader reads it, or the path (the Predictor then reports why not)."""
    try:
        return sample_image(sample)
    except I2LError:
        return sample.image_path


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
    if value is None:
        return ""
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
