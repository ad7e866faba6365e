"""Tests of i2l.notebook: the shared header of the notebooks, Drive, the model choice, setup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from i2l.config import PRETRAINED, get_config
from i2l.errors import I2LError
from i2l.notebook import (
    DRIVE_RUNS,
    INSTALL_CELL,
    REPO,
    choose_model,
    colab_badge,
    header_problems,
    setup,
    sync_header,
    use_drive,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))


def test_six_notebooks_share_the_header():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]
    for path in NOTEBOOKS:
        assert header_problems(path) == [], "run `python -m i2l.notebook` to rewrite the headers"
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert "setup(" in "".join(code[1]["source"]), f"{path.name}: the setup cell follows the install cell"


def test_the_readme_badges_use_the_one_repository():
    readme = (REPO_ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert colab_badge(path.name) in readme, path.name
    assert readme.count("colab.research.google.com/github/") == readme.count(f"colab.research.google.com/github/{REPO}/")


def test_install_cell_is_valid_python_and_names_the_repository():
    compile(INSTALL_CELL, "install", "exec")
    assert f"git+https://github.com/{REPO}" in INSTALL_CELL and "I2L_INSTALL_URL" in INSTALL_CELL


def test_sync_header_inserts_then_is_stable(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# 09 · Title\n", "*sub*\n"]},
                    {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": ["from i2l.notebook import setup; cfg = setup()"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "09_x.ipynb"
    path.write_text(json.dumps(nb))
    assert len(header_problems(path)) == 2
    assert sync_header(path) is True
    assert header_problems(path) == []
    assert sync_header(path) is False  # a second run changes nothing
    cells = json.loads(path.read_text())["cells"]
    assert [c["cell_type"] for c in cells] == ["markdown", "code", "code"]
    assert "setup()" in "".join(cells[2]["source"])
    # an outdated install cell and badge are replaced, not duplicated
    cells[1]["source"] = ['if importlib.util.find_spec("i2l") is None:\n', "    pass"]
    cells[0]["source"] = ["# 09\n", "[![Open In Colab](x.svg)](https://colab.research.google.com/github/old/repo)\n"]
    path.write_text(json.dumps({**nb, "cells": cells}))
    assert sync_header(path) is True and header_problems(path) == []
    cells = json.loads(path.read_text())["cells"]
    assert len(cells) == 3 and "old/repo" not in "".join(cells[0]["source"])


def test_use_drive_mounts_and_points_the_run_folder(tmp_path, monkeypatch):
    cfg = get_config("seed")
    assert use_drive(cfg) == cfg  # not on Colab: unchanged
    assert use_drive(cfg, enabled=False) == cfg
    mounted = []
    monkeypatch.setattr("i2l.notebook.DRIVE_RUNS", str(tmp_path / "drive" / "runs"))
    moved = use_drive(cfg, mount=mounted.append)
    assert mounted == ["/content/drive"]
    assert moved.run_dir == tmp_path / "drive" / "runs" / "seed" and moved.run_dir.parent.is_dir()
    assert DRIVE_RUNS.startswith("/content/drive/MyDrive/")


def test_choose_model(tmp_path):
    cfg = get_config("seed", out_dir=str(tmp_path / "runs"))
    assert choose_model("pretrained", cfg) == PRETRAINED
    with pytest.raises(I2LError, match="notebook 04"):
        choose_model("run", cfg)  # no run yet: says what to do, trains nothing
    assert not (tmp_path / "runs").exists()
    folder = cfg.run_dir / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "best.ckpt").write_bytes(b"x")
    assert choose_model("run", cfg) == folder / "best.ckpt"
    with pytest.raises(I2LError, match="no checkpoint"):
        choose_model("demo", cfg)
    demo = tmp_path / "runs" / "demo" / "checkpoints"
    demo.mkdir(parents=True)
    (demo / "last.ckpt").write_bytes(b"x")
    assert choose_model("demo", cfg) == demo / "last.ckpt"
    with pytest.raises(I2LError, match="pretrained, run, demo"):
        choose_model("mine", cfg)


def test_setup_prints_and_applies_the_smoke_switch(monkeypatch, capsys):
    monkeypatch.setenv("I2L_SMOKE", "1")
    cfg = setup("seed")
    out = capsys.readouterr().out
    assert cfg.name == "smoke" and "smoke mode: True" in out and "torch" in out
    monkeypatch.setenv("I2L_SMOKE", "0")
    assert setup("seed", quiet=True, seed=7).seed == 7
    assert capsys.readouterr().out == ""


def test_setup_tex_says_when_it_falls_back(monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    setup(quiet=True, tex=True)
    assert "mathtext" in capsys.readouterr().out
