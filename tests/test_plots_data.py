"""Tests of i2l.plots.data: the figures of notebooks 01 and 02."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure
from test_dataset import make_dataset  # tests/ is on sys.path under pytest

from i2l.data.explore import coverage_table, samples_table
from i2l.plots.data import plot_coverage, plot_image_sizes, plot_lengths, plot_samples, plot_token_frequencies


@pytest.fixture()
def data_dir(tmp_path):
    return make_dataset(tmp_path / "ds", n=12, long_every=5)


def test_figures(data_dir, tmp_path):
    table = samples_table(data_dir)
    for fig in (plot_samples(table, n=3, path=tmp_path / "grid.png"), plot_image_sizes(table),
                plot_lengths(table, max_len=150), plot_token_frequencies(table["formula"], top=5)):
        assert isinstance(fig, Figure)
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_coverage_figure():
    table = coverage_table(["a + b", "a + c", "b + c", "a - d"], ["a + e"], min_freqs=(1, 2), fractions=(0.5, 1.0))
    fig = plot_coverage(table)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
