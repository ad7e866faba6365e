"""Figures of a dataset for notebooks 01 and 02 (the tables they draw are in :mod:`i2l.data.explore`).

- :func:`plot_samples`, :func:`plot_image_sizes`, :func:`plot_lengths`, :func:`plot_token_frequencies`: the
  figures of notebook 01, drawn from :func:`i2l.data.explore.samples_table`.
- :func:`plot_coverage`: unknown-token rate and vocabulary size (notebook 02), from
  :func:`i2l.data.explore.coverage_table`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from i2l.data.explore import token_counts
from i2l.data.im2latex import Sample, sample_image
from i2l.plots import save


def plot_samples(table, n: int = 8, seed: int = 0, path: str | Path | None = None) -> Figure:
    """A grid of ``n`` random sample images, each above its (wrapped) LaTeX."""
    rows = table.sample(min(n, len(table)), random_state=seed)
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.45 * len(rows)), squeeze=False)
    for ax, (_, row) in zip(axes[:, 0], rows.iterrows()):
        img = sample_image(Sample(row["name"], Path(row["image_path"]), row["formula"], int(row["index"]),
                                  row["layout"]))
        ax.imshow(np.asarray(img), cmap="gray", vmin=0, vmax=255)
        text = textwrap.shorten(row["formula"], 150, placeholder=" ...")
        ax.set_title(f"[{row['split']}] {text}", fontsize=7, loc="left", family="monospace")
        ax.axis("off")
    fig.tight_layout()
    return save(fig, path)


def plot_image_sizes(table, top: int = 15, path: str | Path | None = None) -> Figure:
    """The most common image sizes (buckets) as a share of each split, and image width against formula length."""
    import seaborn as sns

    sizes = table.assign(size=table["width"].astype(int).astype(str) + "x" + table["height"].astype(int).astype(str))
    order = list(sizes["size"].value_counts().index[:top])
    shares = (sizes.groupby("split", sort=False)["size"].value_counts(normalize=True).rename("share")
              .reset_index())
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4), width_ratios=(2, 1))
    sns.barplot(data=shares[shares["size"].isin(order)], x="size", y="share", hue="split", order=order, ax=ax1)
    ax1.set(title="image sizes (width x height, after downsampling)", xlabel="", ylabel="share of the split")
    ax1.tick_params(axis="x", rotation=60)
    sns.scatterplot(data=table, x="n_tokens", y="width", hue="split", alpha=0.3, s=15, ax=ax2)
    ax2.set(title="longer formulas, wider images", xlabel="tokens", ylabel="width (pixels)")
    fig.tight_layout()
    return save(fig, path)


def plot_lengths(table, max_len: int | None = 150, path: str | Path | None = None) -> Figure:
    """Histogram of formula lengths in tokens per split, with the ``max_len`` cut-off."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(9, 3.5))
    sns.histplot(data=table, x="n_tokens", hue="split", stat="density", common_norm=False, element="step",
                 bins=40, ax=ax)
    if max_len:
        ax.axvline(max_len, color="k", ls="--", lw=1)
        ax.text(max_len, ax.get_ylim()[1] * 0.9, f" max_len={max_len}", fontsize=9)
    ax.set(title="formula length", xlabel="tokens", ylabel="density")
    fig.tight_layout()
    return save(fig, path)


def plot_token_frequencies(formulas: Iterable[str], top: int = 30, path: str | Path | None = None) -> Figure:
    """The ``top`` most frequent tokens and the rank-frequency curve (log-log, Zipf-like)."""
    import seaborn as sns

    counts = token_counts(formulas)
    common = counts.most_common(top)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4), width_ratios=(2, 1))
    sns.barplot(x=[t for t, _ in common], y=[c for _, c in common], color="steelblue", ax=ax1)
    ax1.set(title=f"the {top} most frequent tokens", ylabel="count")
    ax1.tick_params(axis="x", rotation=75)
    freqs = np.array(sorted(counts.values(), reverse=True))
    ax2.loglog(np.arange(1, len(freqs) + 1), freqs)
    ax2.set(title=f"rank vs frequency ({len(freqs)} distinct tokens)", xlabel="rank", ylabel="count")
    fig.tight_layout()
    return save(fig, path)


def plot_coverage(table, path: str | Path | None = None) -> Figure:
    """Unknown-token rate and vocabulary size against the training set size, one line per ``min_freq``."""
    import seaborn as sns

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8))
    sns.lineplot(data=table, x="train_formulas", y="unknown_token_rate", hue="min_freq", marker="o",
                 palette="viridis", ax=ax1)
    ax1.set(title="unknown tokens on held-out formulas", ylabel="share of tokens")
    sns.lineplot(data=table, x="train_formulas", y="vocab_size", hue="min_freq", marker="o", palette="viridis",
                 ax=ax2)
    ax2.set(title="vocabulary size")
    fig.tight_layout()
    return save(fig, path)


__all__ = ["plot_samples", "plot_image_sizes", "plot_lengths", "plot_token_frequencies", "plot_coverage"]
