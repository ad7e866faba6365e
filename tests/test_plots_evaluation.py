"""Tests of i2l.plots.evaluation on hand-made predictions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from i2l.errors import I2LError  # noqa: E402
from i2l.plots.evaluation import (  # noqa: E402
    plot_attention,
    plot_greedy_vs_beam,
    plot_hard_cases,
    plot_metrics_by_length,
    plot_token_confusions,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


REFS = ["a + b", "x ^ { 2 }", "\\frac { a } { b }", " ".join(["y"] * 30)]
PREDS = ["a - b", "x ^ { 2 }", "\\frac { b } { b }", " ".join(["y"] * 25)]


def test_metrics_by_length(tmp_path):
    fig = plot_metrics_by_length(REFS, PREDS, bins=(0, 10, 40), path=tmp_path / "len.png")
    assert (tmp_path / "len.png").exists()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0-10", "10-40"]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 6  # 2 bins x 3 metrics
    assert heights[4] == pytest.approx(1 / 3)  # exact match, short bin: 1 of 3


def test_token_confusions(tmp_path):
    fig = plot_token_confusions(REFS, PREDS, top=5, path=tmp_path / "conf.png")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1] == "y  →  ∅"  # the most frequent error (5 deletions) is drawn on top
    assert "+  →  -" in labels and "a  →  b" in labels
    empty = plot_token_confusions(["a"], ["a"])
    assert empty.axes[0].texts[0].get_text() == "no errors"


def test_hard_cases_without_rendering(tmp_path):
    images = [torch.ones(1, 32, 96), Image.new("L", (96, 32), 255)]
    fig = plot_hard_cases(images, REFS[:2], [PREDS[0], ""], render=False, path=tmp_path / "hard.png")
    assert len(fig.axes) == 6
    assert fig.axes[1].get_title(loc="left") == "reference: a + b"
    assert fig.axes[5].texts[0].get_text() == "(empty prediction)"
    assert (tmp_path / "hard.png").exists()


def test_attention_overlay(tmp_path):
    image = torch.ones(1, 32, 128)
    attention = torch.rand(4, 2, 8)
    fig = plot_attention(image, ["a", "+", "b", "</s>"], attention, ncols=2, path=tmp_path / "att.png")
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == ["0: a", "1: +", "2: b", "3: </s>"]
    overlay = fig.axes[0].images[1]
    assert overlay.get_extent() == [0, 128, 32, 0]  # the map covers the whole image
    # an unpadded 40 x 100 image: the model padded it to 48 x 112, a 3 x 7 grid of 16-pixel cells
    fig = plot_attention(torch.ones(1, 40, 100), ["a"], torch.rand(1, 3, 7))
    assert fig.axes[0].images[1].get_extent() == [0, 112, 48, 0]
    assert tuple(fig.axes[0].get_xlim()) == (0, 100) and tuple(fig.axes[0].get_ylim()) == (40, 0)
    fig = plot_attention(torch.ones(1, 40, 100), ["a"], torch.rand(1, 5, 5))  # not a stride-16 grid
    assert fig.axes[0].images[1].get_extent() == [0, 100, 40, 0]
    with pytest.raises(I2LError, match="shape"):
        plot_attention(image, ["a"], torch.rand(2, 8))


def test_greedy_vs_beam(tmp_path):
    results = {"greedy": {"bleu": 0.5, "edit_accuracy": 0.6, "exact_match": 0.1},
               "beam 3": {"bleu": 0.55, "edit_accuracy": 0.65, "exact_match": 0.12}}
    fig = plot_greedy_vs_beam(results, path=tmp_path / "gb.png")
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [0.5, 0.6, 0.1, 0.55, 0.65, 0.12]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["greedy", "beam 3"]
