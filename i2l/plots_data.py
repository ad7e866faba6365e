"""Data exploration helpers for notebooks 01 and 02: pick a dataset, tabulate it, and plot it.

- :func:`find_data`: the full dataset in ``data/im2latex`` if downloaded, else the real sample in
  ``../shared``, else the synthetic set (generated if needed); says which.
- :func:`samples_table`: one row per sample (split, name, tokens, image size, formula) as a DataFrame.
- :func:`split_summary`, :func:`plot_samples`, :func:`plot_image_sizes`, :func:`plot_lengths`,
  :func:`plot_token_frequencies`: the figures of notebook 01.
- :func:`coverage_table`, :func:`length_coverage`, :func:`plot_coverage`: vocabulary and length choices
  (notebook 02).
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from i2l.config import Config, project_root
from i2l.data.im2latex import SPLITS, find_layout, load_image, load_split_report, read_formulas
from i2l.errors import I2LError
from i2l.plots import save
from i2l.tokenizer import Vocab, coverage

SHARED_SAMPLE = project_root().parent / "shared" / "data" / "im2latex" / "sample" / "processed"


@dataclass(frozen=True)
class DataChoice:
    """The dataset a notebook explores: its folder, ``kind`` ('full', 'sample' or 'synthetic') and a sentence."""

    root: Path
    kind: str
    description: str

    def figure_path(self, name: str) -> Path | None:
        """``figures/<name>`` for the README; None for the team's sample (its formulas stay out of the repo)."""
        return None if self.kind == "sample" else project_root() / "figures" / name


def find_data(cfg: Config, full: str | Path = "data/im2latex", sample: str | Path | None = None) -> DataChoice:
    """The full Im2Latex-100K if downloaded to ``full``, else the real sample, else the synthetic set."""
    full_path = cfg.resolve(full)
    try:
        find_layout(full_path)
        return DataChoice(full_path, "full", f"the full Im2Latex-100K dataset in {full_path}")
    except I2LError:
        pass
    sample_path = Path(sample) if sample is not None else SHARED_SAMPLE
    if (sample_path / "formulas.norm.lst").is_file():
        return DataChoice(sample_path, "sample", f"the official Im2Latex-100K sample (train + validate) in "
                                                 f"{sample_path}; download the full set with `i2l data download`")
    try:
        from i2l.data.synth import ensure_dataset
    except ImportError as exc:
        raise I2LError("no dataset found: download Im2Latex-100K with `i2l data download --dest data/im2latex` "
                       "(the synthetic generator is not available in this version)") from exc
    synth_cfg = cfg if Path(cfg.data_dir).name.startswith("synth") else cfg.replace(data_dir="data/synth")
    root = ensure_dataset(synth_cfg)
    return DataChoice(Path(root), "synthetic", f"the synthetic dataset in {root} (rendered formulas, not real "
                                               "arXiv data); download the real one with `i2l data download`")


def samples_table(root: str | Path, limit: int | None = None, image_sizes: bool = True):
    """A pandas DataFrame, one row per sample of every split: split, name, index, n_tokens, width, height, formula."""
    import pandas as pd

    layout = find_layout(root)
    formulas = read_formulas(layout.formulas)
    rows = []
    for split in SPLITS:
        if not layout.split_file(split).is_file():
            continue
        samples, _ = load_split_report(layout.root, split, layout.kind, formulas=formulas)
        for s in samples[:limit]:
            width = height = np.nan
            if image_sizes:
                if s.layout == "raw":
                    width, height = load_image(s).size
                else:
                    with Image.open(s.image_path) as img:
                        width, height = img.size
            tokens = s.tokens
            rows.append({"split": split, "name": s.name, "index": s.index, "n_tokens": len(tokens),
                         "width": width, "height": height, "formula": " ".join(tokens),
                         "image_path": str(s.image_path), "layout": s.layout})
    if not rows:
        raise I2LError(f"{root}: no samples in any split")
    return pd.DataFrame(rows)


def split_summary(table):
    """Per split: samples, token length mean / median / 95th percentile / max, share over 150, image size."""
    g = table.groupby("split", sort=False)
    out = g.agg(samples=("name", "size"), tokens_mean=("n_tokens", "mean"), tokens_median=("n_tokens", "median"),
                tokens_p95=("n_tokens", lambda x: float(np.percentile(x, 95))), tokens_max=("n_tokens", "max"),
                over_150=("n_tokens", lambda x: float((x > 150).mean())), width_mean=("width", "mean"),
                height_mean=("height", "mean"))
    return out.round(2)


def plot_samples(table, n: int = 8, seed: int = 0, path: str | Path | None = None) -> Figure:
    """A grid of ``n`` random sample images, each above its (wrapped) LaTeX."""
    rows = table.sample(min(n, len(table)), random_state=seed)
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.45 * len(rows)), squeeze=False)
    for ax, (_, row) in zip(axes[:, 0], rows.iterrows()):
        from i2l.data.im2latex import Sample

        img = load_image(Sample(row["name"], Path(row["image_path"]), row["formula"], int(row["index"]),
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


def token_counts(formulas: Iterable[str]) -> Counter:
    """How often each token occurs in ``formulas`` (normalized, whitespace-separated)."""
    counts: Counter = Counter()
    for f in formulas:
        counts.update(f.split())
    return counts


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


# ============================================================================ notebook 02
def coverage_table(train: Sequence[str], evaluate: Sequence[str], min_freqs: Sequence[int] = (1, 2, 3, 5, 10),
                   fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0)):
    """Vocabulary size and unknown rates on ``evaluate`` for each training fraction and ``min_freq``."""
    import pandas as pd

    rows = []
    for fraction in fractions:
        subset = list(train[: max(1, int(len(train) * fraction))])
        for min_freq in min_freqs:
            vocab = Vocab.build(subset, min_freq=min_freq)
            rep = coverage(vocab, evaluate)
            rows.append({"train_formulas": len(subset), "min_freq": min_freq, "vocab_size": len(vocab),
                         "unknown_token_rate": rep["unknown_rate"],
                         "formulas_with_unknown": rep["formula_unknown_rate"]})
    return pd.DataFrame(rows)


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


def length_coverage(formulas: Sequence[str], max_lens: Sequence[int] = (50, 100, 150, 200, 300)):
    """Share of ``formulas`` kept by each ``max_len``, in tokens and in characters (what a char model sees)."""
    import pandas as pd

    tokens = np.array([len(f.split()) for f in formulas])
    chars = np.array([len(f.replace(" ", "")) for f in formulas])
    return pd.DataFrame({"max_len": list(max_lens),
                         "kept_tokens": [float((tokens <= m).mean()) for m in max_lens],
                         "kept_characters": [float((chars <= m).mean()) for m in max_lens]})


__all__ = [
    "DataChoice", "find_data", "samples_table", "split_summary", "plot_samples", "plot_image_sizes", "plot_lengths",
    "token_counts", "plot_token_frequencies", "coverage_table", "plot_coverage", "length_coverage", "SHARED_SAMPLE",
]
