"""Tests for i2l.config: presets, JSON/YAML round trips, the smoke switch."""

import dataclasses
from pathlib import Path

import pytest

from i2l.config import PRESETS, Config, get_config, project_root, smoke_mode


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_json(name, tmp_path):
    cfg = PRESETS[name]
    again = Config.from_json(cfg.to_json())
    assert again == cfg
    assert isinstance(again.milestones, tuple)
    path = cfg.save(tmp_path / "cfg.json")
    assert Config.load(path) == cfg


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_yaml(name, tmp_path):
    cfg = PRESETS[name].replace(limit_train=7, devices=2)
    assert Config.from_yaml(cfg.to_yaml()) == cfg
    assert Config.load(cfg.save(tmp_path / "cfg.yaml")) == cfg


def test_seed_preset_is_the_original_recipe():
    s = PRESETS["seed"]
    assert (s.d_model, s.dim_feedforward, s.num_heads, s.num_layers) == (128, 256, 4, 2)
    assert (s.dropout, s.max_len, s.lr, s.weight_decay, s.batch_size, s.max_epochs) == (0.3, 150, 1e-3, 1e-4, 8, 15)
    assert s.schedule == "multistep" and s.milestones == (10,) and s.gamma == 0.5


def test_replace_and_unknown_fields():
    cfg = get_config("cpu", max_epochs=3)
    assert cfg.max_epochs == 3 and cfg.name == "cpu"
    assert dataclasses.replace(cfg, lr=0.5).lr == 0.5
    with pytest.raises(ValueError, match="Unknown config field"):
        Config.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="Unknown preset"):
        get_config("huge")


def test_smoke_switch(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("I2L_SMOKE", raising=False)
    assert not smoke_mode()
    assert get_config().name == "cpu"
    monkeypatch.setenv("CI", "true")
    assert smoke_mode() and get_config().name == "smoke"
    monkeypatch.setenv("I2L_SMOKE", "0")
    assert not smoke_mode()
    monkeypatch.setenv("I2L_SMOKE", "1")
    assert smoke_mode()


def test_paths_resolve_against_project_root(monkeypatch, tmp_path):
    monkeypatch.setenv("I2L_HOME", str(tmp_path))
    cfg = get_config("smoke")
    assert project_root() == tmp_path
    assert cfg.data_path == tmp_path / "data" / "synth-smoke"
    assert cfg.run_dir == tmp_path / "runs" / "smoke"
    assert cfg.resolve("/abs/x") == __import__("pathlib").Path("/abs/x")


def test_shared_data_is_beside_the_repository_unless_overridden(monkeypatch, tmp_path):
    from i2l.config import SHARED_ENV, shared_data

    monkeypatch.delenv(SHARED_ENV, raising=False)
    repo = Path(__file__).resolve().parents[1]
    assert shared_data() == repo.parent / "shared" / "data" / "im2latex"
    monkeypatch.setenv(SHARED_ENV, str(tmp_path / "none"))
    assert shared_data() == tmp_path / "none"
    from i2l.data.choice import choose_data
    from i2l.data.grammar import real_formulas_path

    assert real_formulas_path() == tmp_path / "none" / "formulas" / "val.formulas.norm.txt"
    cfg = get_config("smoke", data_dir=str(tmp_path / "synth-x"), synth_size=12)
    assert choose_data(cfg, full=tmp_path / "no-full").kind == "synthetic"  # no sample where it points


def test_with_settings_reads_yaml_values_and_names_what_is_wrong():
    cfg = get_config("reference").with_settings(["curriculum=[]", "lr=3e-4", "augment=false", "milestones=[2, 4]"])
    assert cfg.curriculum == () and cfg.lr == 3e-4 and cfg.augment is False and cfg.milestones == (2, 4)
    assert cfg.with_settings(["curriculum=[[0, 40], [1, 150]]"]).curriculum == ((0, 40), (1, 150))
    assert get_config("cpu").with_settings([]) == get_config("cpu")
    with pytest.raises(ValueError, match="nonsense"):
        cfg.with_settings(["nonsense=1"])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        cfg.with_settings(["lr"])
