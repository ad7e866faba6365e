"""Render-back: render reference and prediction, compare the images (Deng et al.'s image metrics).

A prediction can differ from its reference in tokens and still typeset identically (``x^2`` and ``x^{2}``).
:func:`render_back` renders both with :func:`i2l.data.render.render_formulas`, binarises them (ink = pixel
< 0.5), crops them to the ink, and compares them exactly, with the all-white columns removed ("match ignoring
whitespace"), and column by column (image edit accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rapidfuzz.distance import Levenshtein

from i2l.data.render import render_formulas


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


__all__ = ["binarize", "images_match", "column_edit", "render_back"]
