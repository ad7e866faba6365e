"""Tests of i2l.plots: the helpers its submodules share (to_array, save)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from i2l import plots  # noqa: E402


def test_to_array():
    assert plots.to_array(torch.zeros(1, 4, 5)).shape == (4, 5)
    assert plots.to_array(Image.new("RGB", (5, 4), (255, 255, 255))).max() == pytest.approx(1.0)
    assert plots.to_array(np.full((4, 5), 255, dtype=np.uint8)).max() == pytest.approx(1.0)


def test_save_creates_folders_only_when_given_a_path(tmp_path):
    fig, _ = plt.subplots()
    assert plots.save(fig, None) is fig
    out = tmp_path / "a" / "b" / "fig.png"
    assert plots.save(fig, out) is fig and out.stat().st_size > 0
    plt.close(fig)
