"""Figures for the notebooks and the README, by subject. Every plotting function returns a matplotlib figure and
saves it when given ``path`` (parent folders are created, see :func:`save`).

- :mod:`i2l.plots.data`: the dataset (notebooks 01 and 02): sample images, image sizes, formula lengths, token
  frequencies, vocabulary coverage.
- :mod:`i2l.plots.model`: the network (notebook 03): encoder feature maps, positional encodings, parameter counts.
- :mod:`i2l.plots.training`: a training run (notebooks 04 and 05): the curves of Lightning's ``metrics.csv``.
- :mod:`i2l.plots.evaluation`: predictions against references (notebook 05): metrics by length, token
  confusions, hard cases, cross-attention maps, greedy against beam search.

This package itself holds the helpers they share: :func:`save` and :func:`to_array`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from i2l.errors import I2LError


def save(fig: Figure, path: str | Path | None) -> Figure:
    """Save ``fig`` to ``path`` (creating folders) when a path is given; return the figure."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight", dpi=150)
    return fig


def to_array(image: Any) -> np.ndarray:
    """A 2-D float array in [0, 1] (1 = white) from a PIL image, a (1, H, W) / (H, W) tensor or an array."""
    if image is None:
        raise I2LError("no image to show: pass a PIL image, a (1, H, W) tensor or an (H, W) array")
    if hasattr(image, "convert"):  # PIL
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if hasattr(image, "detach"):  # torch
        image = image.detach().float().cpu().numpy()
    arr = np.asarray(image, dtype=np.float32)
    while arr.ndim > 2:
        arr = arr[0]
    if arr.max() > 1.0:
        arr = arr / 255.0
    return arr


__all__ = ["save", "to_array"]
