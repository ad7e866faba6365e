"""Tests of i2l.renderback: binarised ink, image matches, column edits, and render-back of formulas."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from i2l.renderback import binarize, column_edit, images_match, render_back


def _ink(h, w, boxes):
    a = np.ones((h, w), dtype=np.float32)
    for r0, r1, c0, c1 in boxes:
        a[r0:r1, c0:c1] = 0.0
    return a


def test_binarize_crops_to_ink():
    mask = binarize(_ink(20, 30, [(5, 8, 10, 12)]))
    assert mask.shape == (3, 2) and mask.all()
    assert binarize(np.ones((5, 5))).shape == (0, 0)
    assert binarize(Image.new("L", (10, 10), 255)).shape == (0, 0)


def test_images_match():
    a = _ink(20, 40, [(2, 6, 3, 5), (2, 6, 8, 10)])
    shifted = _ink(30, 50, [(12, 16, 13, 15), (12, 16, 18, 20)])  # same ink elsewhere on a larger canvas
    wider = _ink(20, 40, [(2, 6, 3, 5), (2, 6, 9, 11)])  # one more blank column between the glyphs
    other = _ink(20, 40, [(2, 7, 3, 5), (2, 6, 8, 10)])
    assert images_match(a, shifted) == (True, True)
    assert images_match(a, wider) == (False, True)
    assert images_match(a, other) == (False, False)
    assert images_match(np.ones((4, 4)), np.ones((6, 6))) == (True, True)  # both blank


def test_column_edit():
    a = _ink(20, 40, [(2, 6, 3, 5), (2, 6, 8, 10)])  # ink columns: XX....XX (8 columns after cropping)
    wider = _ink(20, 40, [(2, 6, 3, 5), (2, 6, 9, 11)])  # one blank column more: one insertion
    assert column_edit(a, a) == (0, 7)
    assert column_edit(a, wider) == (1, 8)
    assert column_edit(a, None) == (7, 7)


# ----------------------------------------------------------------------------- tables


def test_render_back():
    rb = render_back(["x + 1", "a ^ { 2 }", "b"], ["x + 1", "a ^ { 3 }", None], backend="auto")
    assert rb["ref_render_rate"] == 1.0
    assert rb["render_rate"] == pytest.approx(2 / 3)
    assert rb["matches"] == [(True, True), (False, False), (False, False)]
    assert rb["image_exact_match"] == pytest.approx(1 / 3)
    assert 0.0 < rb["image_edit_accuracy"] < 1.0


def test_render_back_real_formulas_match_themselves(shared_data):
    path = shared_data / "im2latex" / "formulas" / "val.formulas.norm.txt"
    refs = [ln for ln in path.read_text(encoding="utf-8").split("\n") if ln.strip()][:12]
    truncated = [" ".join(r.split()[:-1]) for r in refs]  # the last token dropped: usually a different image
    rb = render_back(refs, refs)
    assert rb["n_rendered_refs"] >= 10
    assert rb["image_exact_match"] == 1.0 and rb["image_edit_accuracy"] == 1.0
    assert rb["render_rate"] == rb["ref_render_rate"]
    worse = render_back(refs, truncated)
    assert worse["image_exact_match"] < 1.0 and worse["image_edit_accuracy"] < 1.0
