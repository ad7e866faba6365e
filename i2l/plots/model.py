"""Figures of the network (notebook 03): feature maps through the encoder, positional encodings, parameters.

Every function returns a matplotlib figure and saves it when given ``path`` (see :func:`i2l.plots.save`).

- :func:`plot_feature_maps`: the input and the most active channels of each encoder stage.
- :func:`plot_positional_encoding_1d`: the decoder's sinusoid table (positions x channels).
- :func:`plot_positional_encoding_2d`: a few channels of the encoder's 2-D encoding, and how similar every
  position's encoding is to one reference position.
- :func:`plot_parameter_counts`: parameters per part of the model, as horizontal bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from i2l.errors import I2LError
from i2l.model import sinusoid_1d, sinusoid_2d
from i2l.plots import save


def _top_channels(features: Tensor, n: int) -> list[int]:
    """Indices of the n channels with the largest mean activation magnitude; features (C, H, W)."""
    energy = features.detach().abs().float().mean(dim=(1, 2))  # (C,)
    return energy.argsort(descending=True)[:n].tolist()


def plot_feature_maps(
    trace: Mapping[str, Tensor],
    stages: Sequence[str] = ("inverted", "stem", "layer1", "layer2", "layer3", "proj"),
    channels: int = 4,
    index: int = 0,
    path: str | Path | None = None,
) -> Figure:
    """One row per encoder stage (from :func:`i2l.model.encoder_trace`): its ``channels`` most active maps."""
    stages = [s for s in stages if s in trace]
    if not stages:
        raise I2LError(f"none of the stages found in the trace; it has {sorted(trace)}")
    H, W = trace[stages[0]].shape[-2:]
    fig, axes = plt.subplots(
        len(stages), channels, figsize=(3.2 * channels, len(stages) * (3.2 * H / W + 0.45)), squeeze=False
    )
    for row, stage in zip(axes, stages):
        features = trace[stage][index]  # (C, h, w)
        picks = _top_channels(features, channels)
        for k, ax in enumerate(row):
            ax.set_axis_off()
            if k >= len(picks):
                continue
            ax.imshow(features[picks[k]].detach().float().cpu().numpy(), cmap="magma", aspect="auto")
            C, h, w = features.shape
            ax.set_title(f"{stage} ch {picks[k]} ({C}x{h}x{w})", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_positional_encoding_1d(
    length: int = 150, d_model: int = 128, path: str | Path | None = None
) -> Figure:
    """Heatmap of the 1-D sinusoidal encoding (length, d_model): fast waves left, slow waves right."""
    pe = sinusoid_1d(length, d_model).numpy()
    fig, ax = plt.subplots(figsize=(8, 4))
    im = ax.imshow(pe, cmap="RdBu", aspect="auto", vmin=-1, vmax=1)
    ax.set_xlabel("channel")
    ax.set_ylabel("token position")
    ax.set_title(f"1-D positional encoding ({length} positions x {d_model} channels)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return save(fig, path)


def plot_positional_encoding_2d(
    height: int = 8,
    width: int = 40,
    d_model: int = 128,
    channels: Sequence[int] | None = None,
    reference: tuple[int, int] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Some channels of the 2-D encoding (d_model, H', W') and the cosine similarity to a reference position."""
    pe = sinusoid_2d(height, width, d_model)  # (d, H', W')
    half = d_model // 2
    channels = list(channels) if channels is not None else [0, 2, half, half + 2, half + 8]
    if any(not 0 <= c < d_model for c in channels):
        raise I2LError(f"channels must lie in [0, {d_model}), got {channels}")
    ry, rx = reference if reference is not None else (height // 2, width // 3)
    flat = pe.reshape(d_model, -1)  # (d, H'W')
    ref = pe[:, ry, rx]  # (d,)
    sim = (ref @ flat / (ref.norm() * flat.norm(dim=0))).reshape(height, width).numpy()
    n = len(channels) + 1
    fig, axes = plt.subplots(n, 1, figsize=(8, n * (8 * height / width + 0.5)), squeeze=False)
    for ax, c in zip(axes[:, 0], channels):
        ax.imshow(pe[c].numpy(), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
        ax.set_title(f"channel {c} ({'y' if c < half else 'x'} position)", fontsize=9)
        ax.set_axis_off()
    ax = axes[-1, 0]
    ax.imshow(sim, cmap="viridis", aspect="auto")
    ax.plot([rx], [ry], "r+", markersize=12)
    ax.set_title(f"cosine similarity to position (y={ry}, x={rx})", fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    return save(fig, path)


def plot_parameter_counts(counts: Mapping[str, int], path: str | Path | None = None) -> Figure:
    """Horizontal bars of :func:`i2l.model.parameter_counts` (the total in the title)."""
    parts = {k: v for k, v in counts.items() if k != "total"}
    if not parts:
        raise I2LError("no parameter counts to plot")
    total = counts.get("total", sum(parts.values()))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(parts) + 1))
    names = list(parts)[::-1]
    values = np.array([parts[n] for n in names]) / 1e6
    ax.barh(names, values, color="tab:blue")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.3f}M", va="center", fontsize=9)
    ax.set_xlabel("parameters (millions)")
    ax.set_title(f"{total / 1e6:.2f}M parameters")
    ax.set_xlim(0, values.max() * 1.25)
    fig.tight_layout()
    return save(fig, path)


__all__ = [
    "plot_feature_maps",
    "plot_positional_encoding_1d",
    "plot_positional_encoding_2d",
    "plot_parameter_counts",
]
