"""Figures of a model's predictions against the references (notebook 05, error analysis).

- :func:`plot_metrics_by_length`: the standard metrics against formula length.
- :func:`plot_token_confusions`: the most frequent token substitutions, deletions and insertions.
- :func:`plot_hard_cases`: input image, reference and prediction rendered, for the worst predictions.
- :func:`plot_attention`: the decoder's cross-attention laid over the input image, one panel per token.
- :func:`plot_greedy_vs_beam`: the metrics of several decoding settings side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from i2l.errors import I2LError
from i2l.metrics import TokensLike, as_tokens, metrics_by_length, token_confusions
from i2l.plots import save, to_array

METRIC_LABELS = {
    "bleu": "BLEU-4",
    "edit_accuracy": "edit accuracy",
    "exact_match": "exact match",
    "exact_match_nospace": "exact match (no spacing)",
}


def plot_metrics_by_length(
    references: Sequence[TokensLike], predictions: Sequence[TokensLike], bins: Sequence[int] = (0, 20, 40, 60, 80, 100, 150),
    path: str | Path | None = None,
) -> Figure:
    """BLEU-4, edit accuracy and exact match per bin of reference length (bar labels: samples per bin)."""
    rows = metrics_by_length(references, predictions, bins=bins)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if not rows:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
        return save(fig, path)
    labels = [f"{r['lo']}-{r['hi']}" for r in rows]
    x = np.arange(len(rows))
    keys = ("bleu", "edit_accuracy", "exact_match")
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        ax.bar(x + (i - 1) * width, [r[key] for r in rows], width, label=METRIC_LABELS[key])
    for xi, r in zip(x, rows):
        ax.text(xi, 1.02, f"n={r['n']}", ha="center", fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("reference length (tokens)")
    ax.set_title("metrics against formula length")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return save(fig, path)


def plot_token_confusions(
    references: Sequence[TokensLike], predictions: Sequence[TokensLike], top: int = 20, path: str | Path | None = None,
) -> Figure:
    """The ``top`` most frequent edits of aligned predictions: ``ref → pred``, ``ref → ∅`` (missed),
    ``∅ → pred`` (inserted)."""
    counts = token_confusions(references, predictions).most_common(top)
    fig, ax = plt.subplots(figsize=(6, 0.28 * max(len(counts), 4) + 1))
    if not counts:
        ax.text(0.5, 0.5, "no errors", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return save(fig, path)
    labels = [f"{r or '∅'}  →  {p or '∅'}" for (r, p), _ in counts][::-1]
    ax.barh(np.arange(len(counts)), [c for _, c in counts][::-1], color="tab:red")
    ax.set_yticks(np.arange(len(counts)), labels, fontsize=8, family="monospace")
    ax.set_xlabel("count")
    ax.set_title("most frequent token errors (reference → prediction)")
    fig.tight_layout()
    return save(fig, path)


def _render(formulas: list[str], backend: str) -> list[Any]:
    """Rendered images (or None) of ``formulas`` with the synthetic-data renderer, None everywhere if missing."""
    try:
        from i2l.data.render import render_formulas

        return list(render_formulas(formulas, backend=backend).images)
    except Exception:  # noqa: BLE001 - rendering is illustrative only: fall back to the text
        return [None] * len(formulas)


def plot_hard_cases(
    images: Sequence[Any], references: Sequence[TokensLike], predictions: Sequence[TokensLike],
    render: bool = True, backend: str = "auto", path: str | Path | None = None,
) -> Figure:
    """One row per case: the input image, the reference rendered and the prediction rendered (text when a
    formula does not render), titled with the token strings."""
    refs = [" ".join(as_tokens(r)) for r in references]
    preds = [" ".join(as_tokens(p)) for p in predictions]
    n = len(refs)
    if n == 0:
        raise I2LError("plot_hard_cases needs at least one case")
    rendered = _render(refs + preds, backend) if render else [None] * (2 * n)
    fig, axes = plt.subplots(n, 3, figsize=(12, 1.3 * n + 0.6), squeeze=False)
    for i in range(n):
        cells = [("input", images[i], None), ("reference", rendered[i], refs[i]),
                 ("prediction", rendered[n + i], preds[i])]
        for ax, (name, img, text) in zip(axes[i], cells):
            ax.set_xticks([])
            ax.set_yticks([])
            if img is not None:
                ax.imshow(to_array(img), cmap="gray", vmin=0, vmax=1)
            else:
                msg = "(does not render)" if text else "(empty prediction)"
                ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, fontsize=8)
            label = name if text is None else f"{name}: {_shorten(text)}"
            ax.set_title(label, fontsize=7, loc="left", family="monospace")
    fig.tight_layout()
    return save(fig, path)


def _shorten(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def plot_attention(
    image: Any, tokens: Sequence[str], attention: Any, max_tokens: int = 12, ncols: int = 3, stride: int = 16,
    path: str | Path | None = None,
) -> Figure:
    """Cross-attention maps ``attention`` (T, H', W') laid over ``image``: one panel per predicted token.

    Each map cell covers ``stride`` x ``stride`` pixels (the encoder's stride, :data:`i2l.model.STRIDE`), so the
    maps of an image that the model padded to a multiple of the stride line up with the unpadded image; maps
    of another shape are stretched over the image.
    """
    img = to_array(image)
    maps = attention.detach().float().cpu().numpy() if hasattr(attention, "detach") else np.asarray(attention)
    if maps.ndim != 3:
        raise I2LError(f"attention must have shape (T, H', W'), got {maps.shape}")
    T = min(len(tokens), maps.shape[0], max_tokens)
    if T == 0:
        raise I2LError("no tokens to show attention for (the prediction is empty)")
    nrows = math.ceil(T / ncols)
    H, W = img.shape
    Hf, Wf = maps.shape[1:]
    fits = (Hf - 1) * stride < H <= Hf * stride and (Wf - 1) * stride < W <= Wf * stride
    extent = (0, Wf * stride, Hf * stride, 0) if fits else (0, W, H, 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, (4 * H / W + 0.4) * nrows + 0.3), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= T:
            continue
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.imshow(maps[k], cmap="jet", alpha=0.45, extent=extent, interpolation="bilinear")
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ax.set_title(f"{k}: {tokens[k]}", fontsize=9, family="monospace")
    fig.tight_layout()
    return save(fig, path)


def plot_greedy_vs_beam(results: Mapping[str, Mapping[str, float]], path: str | Path | None = None) -> Figure:
    """Grouped bars of BLEU-4, edit accuracy and exact match for each decoding setting (``{"greedy": metrics,
    "beam 5": metrics}``)."""
    if not results:
        raise I2LError("plot_greedy_vs_beam needs at least one decoding setting")
    keys = [k for k in ("bleu", "edit_accuracy", "exact_match", "exact_match_nospace")
            if all(k in m for m in results.values())]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(keys))
    width = 0.8 / len(results)
    for i, (name, m) in enumerate(results.items()):
        offset = (i - (len(results) - 1) / 2) * width
        bars = ax.bar(x + offset, [m[k] for k in keys], width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, [METRIC_LABELS[k].replace(" (", "\n(") for k in keys])
    ax.set_ylim(0, 1.1)
    ax.set_title("greedy against beam search")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


__all__ = ["METRIC_LABELS", "plot_metrics_by_length", "plot_token_confusions", "plot_hard_cases", "plot_attention",
           "plot_greedy_vs_beam"]
