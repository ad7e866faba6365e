"""Figures of a training run: the curves of Lightning's ``metrics.csv`` (notebooks 04 and 05).

- :func:`read_metrics_csv`: the CSVLogger file as a DataFrame.
- :func:`plot_training_curves`: loss, BLEU, edit accuracy, exact match and learning rate against the step
  (columns that were not logged are skipped).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from i2l.errors import I2LError
from i2l.plots import save


def read_metrics_csv(path: str | Path):
    """Lightning's CSVLogger file as a pandas DataFrame (rows are sparse: one row per logging call)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise I2LError(f"{path} not found: train a model first (notebook 04 or `i2l train`), which writes it")
    return pd.read_csv(path)


def _series(df, column: str):
    """(x, y) of the non-empty values of ``column`` against ``step`` (or ``epoch``, or the row number)."""
    rows = df[df[column].notna()]
    xcol = "step" if "step" in df else ("epoch" if "epoch" in df else None)
    x = rows[xcol].to_numpy() if xcol else np.arange(len(rows))
    return x, rows[column].to_numpy(dtype=float)


def plot_training_curves(metrics_csv: str | Path, path: str | Path | None = None) -> Figure:
    """Loss, BLEU, edit accuracy, exact match and learning rate against the training step."""
    df = read_metrics_csv(metrics_csv)
    panels = [
        ("loss", [c for c in ("train_loss_step", "train_loss", "train_loss_epoch", "val_loss") if c in df]),
        ("BLEU-4", [c for c in df if c.startswith("val_bleu") or c.startswith("val_seed_bleu")]),
        ("edit accuracy", [c for c in df if c.startswith("val_edit")]),
        ("exact match", [c for c in df if c.startswith("val_exact")]),
        ("learning rate", [c for c in df if c.startswith("lr")]),
    ]
    panels = [(title, cols) for title, cols in panels if cols]
    if not panels:
        raise I2LError(f"{metrics_csv} holds none of the expected columns (train_loss, val_loss, val_bleu, lr-*); "
                       f"it has {list(df.columns)}")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (title, cols) in zip(axes[0], panels):
        for col in cols:
            x, y = _series(df, col)
            style = "-" if len(x) > 20 else "o-"
            ax.plot(x, y, style, label=col, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("step" if "step" in df else "epoch")
        if title == "loss" and (df[cols].dropna(how="all") > 0).all().all():
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)


__all__ = ["read_metrics_csv", "plot_training_curves"]
