"""Tests of i2l.data.im2latex: both layouts on the real sample, their images (raw pages processed on loading),
parsing details and bad input. The page processing is tested in test_images.py, the downloader in
test_download.py."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import page

from i2l.cli import main as cli_main
from i2l.data.im2latex import (
    find_layout,
    load_split,
    load_split_report,
    read_formulas,
    sample_image,
    stats,
)
from i2l.errors import I2LError
from i2l.images import BUCKETS


# ============================================================================ helpers
def write_processed(root: Path, formulas: list[str], splits: dict[str, list[int]], prefix: str = "",
                    images_dir: str = "images_processed") -> Path:
    """A small dataset in the processed layout (either naming)."""
    (root / images_dir).mkdir(parents=True, exist_ok=True)
    (root / f"{prefix}formulas.norm.lst").write_bytes("\n".join(formulas).encode() + b"\n")
    for split, indices in splits.items():
        lines = [f"img{i}.png {i}" for i in indices]
        (root / f"{prefix}{split}_filter.lst").write_text("\n".join(lines) + "\n")
        for i in indices:
            page((2, 2, 10 + 3 * i, 12), size=(60 + 4 * i, 20)).save(root / images_dir / f"img{i}.png")
    return root


# ============================================================================ the real sample, both layouts
def test_load_processed_sample(shared_data):
    root = shared_data / "im2latex" / "sample" / "processed"
    train, val = load_split(root, "train"), load_split(root, "val")
    assert len(train) == 897 and len(val) == 85
    assert all(s.layout == "processed" and s.image_path.is_file() for s in train)
    assert {s.index for s in val} <= set(range(1100, 1200)) and max(s.index for s in train) < 1000
    formulas = read_formulas(root / "formulas.norm.lst")
    assert len(formulas) == 1200
    assert all(s.formula == formulas[s.index] for s in train)
    img = sample_image(train[0])
    assert img.mode == "L" and img.size in {(w // 2, h // 2) for w, h in BUCKETS}
    with pytest.raises(I2LError, match="test"):
        load_split(root, "test")  # the sample withholds the test part


def test_load_raw_sample_matches_processed(shared_data):
    sample = shared_data / "im2latex" / "sample"
    raw, report = load_split_report(sample, "train", layout="raw")
    formulas = read_formulas(sample / "raw" / "formulas.lst")
    lines = (sample / "raw" / "train.lst").read_text().splitlines()
    expected = sum(bool(formulas[int(line.split()[0])].strip()) for line in lines)
    assert report.lines == len(lines) == 1000 and len(raw) == expected == report.loaded
    assert report.empty_formulas == len(lines) - expected
    by_name = {s.name: s for s in raw}
    processed = load_split(sample, "train")  # auto: the processed subfolder
    assert all(s.layout == "processed" for s in processed)
    for s in processed:
        assert by_name[s.name].index == s.index  # the filtered list is a subset with the same indices
    s = processed[0]
    ours = np.asarray(sample_image(by_name[s.name]), dtype=int)
    assert np.abs(ours - np.asarray(sample_image(s), dtype=int)).max() <= 1
    assert by_name[s.name].tokens  # raw LaTeX goes through the raw tokenizer


def test_stats_and_cli_on_sample(shared_data, capsys):
    out = stats(shared_data / "im2latex" / "sample" / "processed")
    assert out["layout"] == "processed" and out["splits"]["train"]["samples"] == 897
    assert sum(out["splits"]["validate"]["image_sizes"].values()) == 85
    assert out["splits"]["train"]["tokens"]["max"] <= 150
    assert cli_main(["data", "stats", str(shared_data / "im2latex" / "sample" / "raw")]) == 0
    assert '"layout": "raw"' in capsys.readouterr().out


# ============================================================================ parsing details and bad input
def test_formulas_split_on_newline_only(tmp_path):
    formulas = ["a + b", "x \r y", "", "c", "\\alpha"]
    write_processed(tmp_path, formulas, {"train": [0, 1, 3, 4]})
    assert read_formulas(tmp_path / "formulas.norm.lst") == formulas
    samples, report = load_split_report(tmp_path, "train")
    assert [s.formula for s in samples] == ["a + b", "x \r y", "c", "\\alpha"]  # indices not shifted by \r
    assert [s.index for s in samples] == [0, 1, 3, 4] and report.skipped == 0


def test_official_naming(tmp_path):
    write_processed(tmp_path, ["a", "b", "c"], {"train": [0, 1], "test": [2]}, prefix="im2latex_",
                    images_dir="formula_images_processed")
    lay = find_layout(tmp_path)
    assert lay.prefix == "im2latex_" and lay.images.name == "formula_images_processed"
    assert [s.name for s in load_split(tmp_path, "train")] == ["img0.png", "img1.png"]
    assert len(load_split(tmp_path, "test")) == 1


def test_test_split_is_not_filtered(tmp_path):
    long = " ".join(["x"] * 300)
    write_processed(tmp_path, ["a", long], {"train": [0], "test": [0, 1]})
    assert [len(s.tokens) for s in load_split(tmp_path, "test")] == [1, 300]


def test_bad_input_is_reported_and_the_rest_loads(tmp_path, caplog):
    write_processed(tmp_path, ["a", "b", "", "d", "e"], {"train": [0, 1, 3, 4]})
    (tmp_path / "images_processed" / "img1.png").unlink()  # missing image
    (tmp_path / "images_processed" / "img3.png").write_bytes(b"")  # zero-size PNG
    lst = tmp_path / "train_filter.lst"
    lst.write_text(lst.read_text() + "img2.png 2\nnot-a-line\nimg9.png 99\n")
    with caplog.at_level(logging.WARNING):
        samples, report = load_split_report(tmp_path, "train")
    assert [s.index for s in samples] == [0, 4]
    assert (report.lines, report.loaded, report.missing_images, report.empty_images) == (7, 2, 1, 1)
    assert (report.empty_formulas, report.bad_lines, report.bad_indices) == (1, 1, 1)
    text = caplog.text
    assert "train_filter.lst line 2" in text and "img1.png not found" in text
    assert "line 3" in text and "empty (0 bytes)" in text
    assert "line 6: cannot parse" in text and "index 99" in text
    assert "2 of 7" in report.summary()


def test_unreadable_png_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(I2LError, match="broken.png"):
        sample_image(bad)


def test_missing_folder_and_list_are_clear(tmp_path):
    with pytest.raises(I2LError, match="not found"):
        load_split(tmp_path / "nope", "train")
    with pytest.raises(I2LError, match="no formulas.norm.lst"):
        find_layout(tmp_path)
    write_processed(tmp_path, ["a"], {"train": [0]})
    with pytest.raises(I2LError, match="validate_filter.lst"):
        load_split(tmp_path, "validate")
    with pytest.raises(I2LError, match="unknown split"):
        load_split(tmp_path, "dev")


def test_official_split_lists_parse(shared_data, tmp_path):
    splits = shared_data / "im2latex" / "splits"
    for split in ("train", "validate", "test"):
        (tmp_path / f"im2latex_{split}.lst").symlink_to(splits / f"im2latex_{split}.lst")
    (tmp_path / "im2latex_formulas.lst").write_text("x\n" * 103_559)  # placeholders, not the real formulas
    (tmp_path / "formula_images").mkdir()
    expected = {"train": 83_884, "validate": 9_320, "test": 10_355}
    for split, n in expected.items():
        samples, report = load_split_report(tmp_path, split)
        assert report.lines == n and report.missing_images == n  # every line parsed, no image downloaded
        assert report.bad_lines == report.bad_indices == 0 and samples == []
