"""Tests of i2l.data.synth: synthetic datasets on disk (formula files, rendering, splits, ensure_dataset)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from i2l.cli import main
from i2l.config import get_config
from i2l.data import synth
from i2l.data.im2latex import load_split
from i2l.data.render import latex_available
from i2l.data.synth import ensure_dataset, is_dataset, make_dataset, read_formula_file
from i2l.errors import I2LError

BACKEND = "latex" if latex_available() else "mathtext"


def test_make_dataset_writes_the_processed_layout(tmp_path):
    out = make_dataset(tmp_path / "synth", n=20, seed=1, backend=BACKEND, max_len=40)
    assert is_dataset(out)
    formulas = (out / "formulas.norm.lst").read_text().split("\n")[:-1]
    splits = {split: load_split(out, split) for split in ("train", "validate", "test")}
    assert [len(v) for v in splits.values()] == [16, 2, 2]
    names = [s.name for v in splits.values() for s in v]
    assert len(set(names)) == len(formulas) == 20
    sample = splits["train"][0]
    assert sample.formula == formulas[sample.index]
    assert Image.open(sample.image_path).mode == "L"
    report = json.loads((out / "synth_report.json").read_text())
    assert report["rendered"] == 20 and report["backend"] == BACKEND
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]  # no temporary folder left

    with pytest.raises(I2LError, match="already exists"):
        make_dataset(out, n=5, backend=BACKEND)
    make_dataset(out, n=5, seed=2, backend=BACKEND, overwrite=True)
    assert len((out / "formulas.norm.lst").read_text().splitlines()) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]


def test_a_failed_build_leaves_no_half_written_dataset(tmp_path, monkeypatch):
    def broken(*args, **kwargs):  # fails after the images were written to the temporary folder
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth, "_split_names", broken)
    with pytest.raises(RuntimeError):
        make_dataset(tmp_path / "synth", n=5, backend=BACKEND)
    assert list(tmp_path.iterdir()) == []


def test_formula_file_with_blank_lines_bad_bytes_and_bad_formulas(tmp_path):
    path = tmp_path / "mine.lst"
    path.write_bytes(b"x ^ { 2 }\n\n\\frac { a } { b }\r\n\xff\xfe broken\n  \n\\sqrt { y\na + b\n")
    formulas, skipped = read_formula_file(path)
    assert formulas == ["x ^ { 2 }", "\\frac { a } { b }", "\\sqrt { y", "a + b"]
    assert skipped == {"blank": [2, 5], "not utf-8": [4]}
    out = make_dataset(tmp_path / "out", formulas_file=path, backend=BACKEND)
    report = json.loads((out / "synth_report.json").read_text())
    assert report["skipped_lines"] == {"blank": 2, "not utf-8": 1}
    assert report["failed"] == {"unbalanced braces": 1} and report["rendered"] == 3
    assert "\\sqrt { y" not in (out / "formulas.norm.lst").read_text()
    (tmp_path / "empty.lst").write_text("\n \n")
    with pytest.raises(I2LError, match="no formulas"):
        make_dataset(tmp_path / "out2", formulas_file=tmp_path / "empty.lst", backend=BACKEND)
    with pytest.raises(I2LError, match="not found"):
        read_formula_file(tmp_path / "missing.lst")


def test_ensure_dataset_generates_only_synthetic_paths(tmp_path, monkeypatch):
    calls = []
    real_make = synth.make_dataset
    monkeypatch.setattr(synth, "make_dataset", lambda *a, **k: calls.append(k) or real_make(*a, **k))
    cfg = get_config("smoke", data_dir=str(tmp_path / "synth-tiny"), synth_size=10)
    path = ensure_dataset(cfg)
    assert path == tmp_path / "synth-tiny" and is_dataset(path)
    assert calls[0]["n"] == 10 and calls[0]["max_len"] == cfg.max_len and calls[0]["level"] == "full"
    assert all(len(f.split()) <= cfg.max_len for f in (path / "formulas.norm.lst").read_text().splitlines())
    assert ensure_dataset(cfg) == path and len(calls) == 1  # present: not made again
    with pytest.raises(I2LError, match="i2l data download"):
        ensure_dataset(cfg.replace(data_dir=str(tmp_path / "im2latex")))


def test_cli_data_synth(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--n", "6", "--out", str(out), "--backend", BACKEND]) == 0
    assert is_dataset(out) and "written to" in capsys.readouterr().out
    assert main(["data", "synth", "--n", "6", "--out", str(out), "--backend", BACKEND]) == 2
    assert "--overwrite" in capsys.readouterr().err
    basic = tmp_path / "basic"
    assert main(["data", "synth", "--n", "6", "--out", str(basic), "--backend", BACKEND, "--level", "basic",
                 "--max-len", "12"]) == 0
    assert json.loads((basic / "synth_report.json").read_text())["level"] == "basic"
    assert all(len(f.split()) <= 12 for f in (basic / "formulas.norm.lst").read_text().splitlines())


def test_make_dataset_with_the_mathtext_backend_replaces_what_it_cannot_draw(tmp_path):
    out = make_dataset(tmp_path / "synth", n=12, seed=5, backend="mathtext", max_len=50)
    report = json.loads((out / "synth_report.json").read_text())
    assert report["backend"] == "mathtext" and report["rendered"] == 12
    assert len((out / "formulas.norm.lst").read_text().splitlines()) == 12
