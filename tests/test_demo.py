"""Tests for i2l.demo: the whole demo on a tiny configuration, and how minutes / n map onto the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from i2l.config import get_config
from i2l.demo import demo_config, run_demo


def test_demo_config_maps_minutes_and_size():
    cfg = demo_config(minutes=2, n=500)
    assert cfg.name == "cpu" and cfg.run_name == "demo"
    assert cfg.max_time_minutes == 2.0 and cfg.synth_size == 500 and cfg.data_dir == "data/synth-basic-500"
    default = demo_config()
    assert default.data_dir == get_config("cpu").data_dir and default.max_time_minutes == get_config("cpu").max_time_minutes


@pytest.mark.slow
def test_demo_runs_end_to_end_on_a_tiny_config(tmp_path, capsys):
    cfg = get_config("smoke", data_dir=str(tmp_path / "synth-demo"), synth_size=60, out_dir=str(tmp_path / "runs"),
                     run_name="demo", limit_train_batches=2, limit_val_batches=1, val_decode_samples=2)
    summary = run_demo(cfg=cfg, figures_dir=tmp_path / "figures")
    out = capsys.readouterr().out
    assert Path(summary["checkpoint"]).is_file() and Path(summary["metrics_csv"]).is_file()
    assert "=== done ===" in out and "5/5 figures" in out
    assert summary["missing"] == []  # evaluation, predictor and plots are all there
    assert set(summary["metrics"]) == {"bleu", "edit_accuracy", "exact_match"}
    assert 1 <= len(summary["transcriptions"]) <= 5
    assert all(Path(f).is_file() for f in summary["figures"]) and summary["figures"]
    again = run_demo(cfg=cfg, figures_dir=tmp_path / "figures")  # a second demo replaces the first run
    assert Path(again["checkpoint"]).is_file()
