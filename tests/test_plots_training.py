"""Tests of i2l.plots.training on a fabricated Lightning metrics.csv."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from i2l.errors import I2LError  # noqa: E402
from i2l.plots.training import plot_training_curves  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def write_metrics_csv(path, with_val=True, with_lr=True):
    """Sparse rows the way Lightning's CSVLogger writes them: step rows, then an epoch row for validation."""
    cols = ["epoch", "step", "train_loss_step"]
    if with_lr:
        cols.append("lr-AdamW")
    if with_val:
        cols += ["val_loss", "val_bleu", "val_edit_accuracy", "val_exact_match"]
    lines = [",".join(cols)]
    step = 0
    for epoch in range(3):
        for _ in range(4):
            step += 1
            row = {"epoch": epoch, "step": step, "train_loss_step": 3.0 / step, "lr-AdamW": 1e-3 * 0.9 ** step}
            lines.append(",".join(str(row.get(c, "")) for c in cols))
        if with_val:
            row = {"epoch": epoch, "step": step, "val_loss": 2.0 - epoch * 0.5, "val_bleu": 0.2 * (epoch + 1),
                   "val_edit_accuracy": 0.3 * (epoch + 1), "val_exact_match": 0.1 * epoch}
            lines.append(",".join(str(row.get(c, "")) for c in cols))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_training_curves(tmp_path):
    csv = write_metrics_csv(tmp_path / "metrics.csv")
    out = tmp_path / "figs" / "curves.png"
    fig = plot_training_curves(csv, path=out)
    assert out.exists() and out.stat().st_size > 1000
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "BLEU-4", "edit accuracy", "exact match", "learning rate"]
    bleu = fig.axes[1].lines[0]
    np.testing.assert_allclose(bleu.get_xdata(), [4, 8, 12])
    np.testing.assert_allclose(bleu.get_ydata(), [0.2, 0.4, 0.6])
    loss_labels = [ln.get_label() for ln in fig.axes[0].lines]
    assert loss_labels == ["train_loss_step", "val_loss"]
    assert len(fig.axes[0].lines[0].get_xdata()) == 12


def test_training_curves_missing_columns(tmp_path):
    csv = write_metrics_csv(tmp_path / "metrics.csv", with_val=False, with_lr=False)
    fig = plot_training_curves(csv)
    assert [ax.get_title() for ax in fig.axes] == ["loss"]
    with pytest.raises(I2LError, match="not found"):
        plot_training_curves(tmp_path / "missing.csv")
    (tmp_path / "odd.csv").write_text("a,b\n1,2\n")
    with pytest.raises(I2LError, match="none of the expected columns"):
        plot_training_curves(tmp_path / "odd.csv")
