"""Tests of i2l.ruler: the variants of a screenshot, labelled folders, and the table read through the Predictor."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import formula_image, make_checkpoint
from PIL import Image

from i2l.errors import I2LError
from i2l.infer import Predictor
from i2l.ruler import (
    VARIANTS,
    dark_mode,
    folder_items,
    format_table,
    jpeg,
    page_crop,
    rescaled,
    ruler_rows,
    sample_items,
    transparent,
)


def test_variants_change_what_they_say():
    img = formula_image("x+1")
    assert rescaled(img, 0.5).size == (round(img.width / 2), round(img.height / 2))
    assert rescaled(img, 3).size == (img.width * 3, img.height * 3)
    back = Image.open(io.BytesIO(jpeg(img)))
    assert back.format == "JPEG" and back.size == img.size
    assert np.array_equal(np.asarray(dark_mode(img)), 255 - np.asarray(img.convert("L")))
    rgba = np.asarray(transparent(img))
    assert rgba.shape[-1] == 4 and rgba[..., 3].min() == 0 and rgba[..., 3].max() > 200  # ink opaque, paper clear
    assert rgba[..., :3].max() == 0  # black ink
    assert {"0.5x", "3x", "JPEG q75", "dark mode", "transparent"} <= set(VARIANTS)


def test_page_crop_keeps_a_margin(tmp_path):
    page = Image.new("L", (400, 300), 255)
    page.paste(0, (100, 50, 160, 70))
    crop = page_crop(page, margin=8)
    assert crop.size == (60 + 16, 20 + 16)
    with pytest.raises(I2LError, match="no ink"):
        page_crop(Image.new("L", (40, 30), 255))


def test_folder_items(tmp_path):
    formula_image("x+1").save(tmp_path / "a.png")
    (tmp_path / "labels.tsv").write_text("a.png\tx + 1\n\n")
    [item] = folder_items(tmp_path, tmp_path / "labels.tsv")
    assert item.tokens == ["x", "+", "1"] and item.image == tmp_path / "a.png" and item.page is None
    (tmp_path / "bad.tsv").write_text("a.png x + 1\n")
    with pytest.raises(I2LError, match="line 1"):
        folder_items(tmp_path, tmp_path / "bad.tsv")
    with pytest.raises(I2LError, match="not found"):
        folder_items(tmp_path, tmp_path / "missing.tsv")


def test_ruler_rows_on_a_folder(tmp_path):
    predictor = Predictor.from_checkpoint(make_checkpoint(tmp_path / "m.ckpt"), device="cpu")
    for name, text in (("a.png", "x+1"), ("b.png", "a=b")):
        formula_image(text).save(tmp_path / name)
    (tmp_path / "labels.tsv").write_text("a.png\tx + 1\nb.png\ta = b\n")
    rows = ruler_rows(predictor, folder_items(tmp_path, tmp_path / "labels.tsv"), render_10pt=False)
    assert [r["row"] for r in rows] == ["as given", *VARIANTS]
    assert all(r["n"] == 2 and 0 <= r["bleu"] <= 1 and r["unreadable"] == 0 for r in rows)
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| dark mode |" in table


def test_sample_items_pair_processed_images_with_raw_pages(shared_data):
    items = sample_items(shared_data / "im2latex" / "sample", "validate")
    assert len(items) == 85
    assert all(it.page is not None and it.page.stem == it.image.stem for it in items)
    assert all(it.tokens for it in items)
