"""Tests of i2l.data.explore: the samples table, its summary, coverage and length tables."""

from __future__ import annotations

import pytest
from test_dataset import make_dataset  # tests/ is on sys.path under pytest

from i2l.data.explore import coverage_table, length_coverage, samples_table, split_summary, token_counts


@pytest.fixture()
def data_dir(tmp_path):
    return make_dataset(tmp_path / "ds", n=12, long_every=5)


def test_samples_table_and_summary(data_dir):
    table = samples_table(data_dir)
    assert len(table) == 36 and set(table["split"]) == {"train", "validate", "test"}
    assert {"n_tokens", "width", "height", "formula"} <= set(table.columns)
    summary = split_summary(table)
    assert summary.loc["train", "samples"] == 12 and summary.loc["test", "tokens_max"] == 207
    assert len(samples_table(data_dir, limit=2)) == 6


def test_coverage_and_length_tables():
    train = ["a + b", "a + c", "b + c", "a - d"]
    cov = coverage_table(train, ["a + e"], min_freqs=(1, 2), fractions=(0.5, 1.0))
    assert len(cov) == 4
    full = cov[cov["train_formulas"] == 4].set_index("min_freq")
    assert full.loc[1, "vocab_size"] == 4 + 6 and full.loc[2, "vocab_size"] == 4 + 4
    assert full.loc[1, "unknown_token_rate"] == pytest.approx(1 / 3)
    lengths = length_coverage(["a b", "a b c d e"], max_lens=(2, 5))
    assert lengths["kept_tokens"].tolist() == [0.5, 1.0] and lengths["kept_characters"].tolist() == [0.5, 1.0]


def test_token_counts():
    assert token_counts(["a + b", "a ^ { 2 }"]) == {"a": 2, "+": 1, "b": 1, "^": 1, "{": 1, "2": 1, "}": 1}
