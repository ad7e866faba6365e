"""Tests of i2l.data.choice: which dataset a notebook explores (full, sample or synthetic)."""

from __future__ import annotations

import pytest
from test_dataset import make_dataset  # tests/ is on sys.path under pytest

from i2l.config import get_config
from i2l.data.choice import choose_data


@pytest.fixture()
def data_dir(tmp_path):
    return make_dataset(tmp_path / "ds", n=12, long_every=5)


def test_choose_data_prefers_the_full_dataset(data_dir, tmp_path):
    cfg = get_config("smoke")
    choice = choose_data(cfg, full=data_dir)
    assert choice.kind == "full" and choice.root == data_dir
    sample = choose_data(cfg, full=tmp_path / "absent", sample=data_dir)
    assert sample.kind == "sample" and "sample" in sample.description


def test_choose_data_falls_back_to_the_real_sample(shared_data, tmp_path):
    choice = choose_data(get_config("smoke"), full=tmp_path / "absent")
    assert choice.kind == "sample" and (choice.root / "images_processed").is_dir()
    assert choice.eval_split == "validate"  # the sample withholds the test split


def test_eval_split_is_test_where_there_is_one(data_dir):
    assert choose_data(get_config("smoke"), full=data_dir).eval_split == "test"
    (data_dir / "test_filter.lst").write_text("")
    assert choose_data(get_config("smoke"), full=data_dir).eval_split == "validate"


def test_figures_of_the_real_sample_and_of_smoke_runs_stay_out_of_the_repo(data_dir, tmp_path):
    cfg = get_config("cpu")
    assert choose_data(cfg, full=tmp_path / "absent", sample=data_dir).figure_path("x.png") is None
    assert choose_data(cfg, full=data_dir).figure_path("x.png").parent.name == "figures"
    assert choose_data(get_config("smoke"), full=data_dir).figure_path("x.png") is None
