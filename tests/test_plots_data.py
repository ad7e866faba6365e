"""Tests of i2l.plots_data: dataset choice, the samples table, coverage and length tables, figures."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure
from test_dataset import make_dataset  # tests/ is on sys.path under pytest

from i2l.config import get_config
from i2l.plots_data import (
    coverage_table,
    find_data,
    length_coverage,
    plot_image_sizes,
    plot_lengths,
    plot_samples,
    plot_token_frequencies,
    samples_table,
    split_summary,
)


@pytest.fixture()
def data_dir(tmp_path):
    return make_dataset(tmp_path / "ds", n=12, long_every=5)


def test_find_data_prefers_the_full_dataset(data_dir, tmp_path):
    cfg = get_config("smoke")
    choice = find_data(cfg, full=data_dir)
    assert choice.kind == "full" and choice.root == data_dir
    sample = find_data(cfg, full=tmp_path / "absent", sample=data_dir)
    assert sample.kind == "sample" and "sample" in sample.description


def test_samples_table_and_summary(data_dir):
    table = samples_table(data_dir)
    assert len(table) == 36 and set(table["split"]) == {"train", "validate", "test"}
    assert {"n_tokens", "width", "height", "formula"} <= set(table.columns)
    summary = split_summary(table)
    assert summary.loc["train", "samples"] == 12 and summary.loc["test", "tokens_max"] == 207
    assert len(samples_table(data_dir, limit=2)) == 6


def test_figures(data_dir, tmp_path):
    table = samples_table(data_dir)
    for fig in (plot_samples(table, n=3, path=tmp_path / "grid.png"), plot_image_sizes(table),
                plot_lengths(table, max_len=150), plot_token_frequencies(table["formula"], top=5)):
        assert isinstance(fig, Figure)
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_coverage_and_length_tables():
    train = ["a + b", "a + c", "b + c", "a - d"]
    cov = coverage_table(train, ["a + e"], min_freqs=(1, 2), fractions=(0.5, 1.0))
    assert len(cov) == 4
    full = cov[cov["train_formulas"] == 4].set_index("min_freq")
    assert full.loc[1, "vocab_size"] == 4 + 6 and full.loc[2, "vocab_size"] == 4 + 4
    assert full.loc[1, "unknown_token_rate"] == pytest.approx(1 / 3)
    lengths = length_coverage(["a b", "a b c d e"], max_lens=(2, 5))
    assert lengths["kept_tokens"].tolist() == [0.5, 1.0] and lengths["kept_characters"].tolist() == [0.5, 1.0]


def test_find_data_falls_back_to_the_real_sample(shared_data, tmp_path):
    choice = find_data(get_config("smoke"), full=tmp_path / "absent")
    assert choice.kind == "sample" and (choice.root / "images_processed").is_dir()


def test_figures_of_the_team_sample_stay_out_of_the_repo(data_dir, tmp_path):
    cfg = get_config("smoke")
    assert find_data(cfg, full=tmp_path / "absent", sample=data_dir).figure_path("x.png") is None
    assert find_data(cfg, full=data_dir).figure_path("x.png").parent.name == "figures"
