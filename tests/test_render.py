"""Tests of i2l.data.render: both backends, failure handling, and fidelity against the real processed images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from i2l.data import render
from i2l.data.im2latex import read_formulas
from i2l.data.render import (
    braces_balanced,
    precheck,
    render_formula,
    render_formulas,
    resolve_backend,
    to_mathtext,
)
from i2l.errors import I2LError
from i2l.images import BUCKETS

needs_latex = pytest.mark.skipif(not render.latex_available(), reason="pdflatex and gs are not installed")
PROCESSED_SIZES = {(w // 2, h // 2) for w, h in BUCKETS}
GOOD = ["x ^ { 2 } + y ^ { 2 } = 1", "\\frac { a } { b }", "\\sum _ { i = 1 } ^ { n } i",
        "\\left( \\begin{array} { c c } { a } & { b } \\\\ { c } & { d } \\\\ \\end{array} \\right)"]


def ink_box(image: Image.Image, threshold: int = 255) -> np.ndarray:
    ys, xs = np.nonzero(np.asarray(image.convert("L")) < threshold)
    return np.array([ys.min(), ys.max(), xs.min(), xs.max()])


def test_precheck_catches_bad_input_before_latex():
    assert braces_balanced("\\frac { a } { \\{ b }")  # \{ does not count
    assert not braces_balanced("\\frac { a } { b")
    assert not braces_balanced("} a {")
    assert precheck("   ") == "empty formula"
    assert precheck("x } {") == "unbalanced braces"
    assert "forbidden" in precheck("a \\end{document} b")
    assert "forbidden" in precheck("\\input { /etc/passwd }")
    assert precheck("x _ { i }") is None


def test_to_mathtext_rewrites_the_normalized_style():
    assert to_mathtext("x _ { i } ^ { 2 }") == "x_{i}^{2}"
    # old-style switches are scoped explicitly (mathtext lets them leak out of their group)
    assert to_mathtext("{ \\cal L } x") == "{\\mathcal{L}} x"
    assert to_mathtext("\\bf x + y") == "\\mathbf{x + y}"
    assert to_mathtext("\\operatorname* { l i m } _ { x }") == "\\operatorname{l i m}_{x}"
    assert to_mathtext("\\begin{array} { c } x \\end{array}") is None
    assert to_mathtext("\\hspace { 1 c m }") is None


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(I2LError, match="unknown render backend"):
        render_formulas(["x"], backend="dvipng")


def test_auto_falls_back_to_mathtext_with_install_hint(monkeypatch):
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="TeX Live"):
        assert resolve_backend("auto") == "mathtext"
    with pytest.raises(I2LError, match="pdflatex"):
        resolve_backend("latex")


def test_mathtext_backend_renders_and_reports_what_it_cannot_draw():
    result = render_formulas(["x _ { i } ^ { 2 }", "x_{i}^{2}", GOOD[3], "\\frac { a } {", "\\,"],
                             backend="mathtext")
    assert result.backend == "mathtext"
    assert result.failed == [2, 3, 4]
    assert "cannot draw" in result.errors[2] and result.errors[3] == "unbalanced braces"
    spaced, compact = result.images[0], result.images[1]
    assert spaced.mode == "L" and spaced.size in PROCESSED_SIZES
    # the spaced normalized form must render as real scripts, exactly like the compact LaTeX
    assert np.array_equal(np.asarray(spaced), np.asarray(compact))
    # a subscript and a superscript make the ink taller than a plain "x i 2" row would be
    assert ink_box(spaced)[1] - ink_box(spaced)[0] > 15


@needs_latex
def test_latex_images_are_processed_like_the_dataset():
    result = render_formulas(GOOD, backend="latex", workers=2, batch_size=2)
    assert result.failed == [] and result.backend == "latex"
    for image in result.images:
        assert image.mode == "L" and image.size in PROCESSED_SIZES
        top, _, left, _ = ink_box(image, threshold=128)
        assert (top, left) == (4, 4)  # ink at the top left after 8 px of padding and the x2 downsampling
    heights = [np.ptp(ink_box(image)[:2]) for image in result.images]
    assert heights[3] > heights[1] > heights[0]  # a 2x2 matrix is taller than a fraction, than a line


@needs_latex
def test_a_failing_formula_does_not_lose_its_batch():
    bad = ["\\frac { a }", "\\undefinedmacro x", "a & b", "", "\\left( x", "\\end{document}", "x } {"]
    formulas = [GOOD[0], bad[0], GOOD[1], bad[1], bad[2], GOOD[2], bad[3], bad[4], bad[5], bad[6], GOOD[3]]
    result = render_formulas(formulas, backend="latex", workers=1, batch_size=len(formulas))
    good_at = [0, 2, 5, 10]
    assert result.failed == [k for k in range(len(formulas)) if k not in good_at]
    assert "latex error" in result.errors[3] and "Undefined control sequence" in result.errors[3]
    assert result.errors[6] == "empty formula"
    # each surviving image is exactly the image of that formula rendered on its own
    alone = render_formulas(GOOD, backend="latex", workers=1, batch_size=1)
    for k, image in zip(good_at, alone.images):
        assert np.array_equal(np.asarray(result.images[k]), np.asarray(image))
    assert "4/11 formulas rendered" in result.summary()


@needs_latex
def test_render_formula_raises_with_the_reason():
    assert render_formula("\\alpha").size in PROCESSED_SIZES
    with pytest.raises(I2LError, match="Undefined control sequence"):
        render_formula("\\nosuchcommand", backend="latex")


@needs_latex
def test_fidelity_with_the_real_processed_images(shared_data):
    """Rendering the raw sample formulas reproduces the real processed images: size and ink box (2 px)."""
    sample = shared_data / "im2latex" / "sample"
    formulas = read_formulas(sample / "raw" / "formulas.lst")
    pairs = [line.split() for line in (sample / "processed" / "train_filter.lst").read_text().splitlines()]
    pairs = pairs[::4][:150]
    result = render_formulas([formulas[int(idx)] for _, idx in pairs], backend="latex")
    match = 0
    for (name, _), image in zip(pairs, result.images):
        real = Image.open(sample / "processed" / "images_processed" / name)
        if image is not None and image.size == real.size:
            match += int(np.abs(ink_box(image) - ink_box(real)).max() <= 2)
    assert match / len(pairs) >= 0.9, f"only {match}/{len(pairs)} match the real processed images"


@needs_latex
def test_formulas_taller_than_the_short_page_are_rendered_on_a_full_page():
    def column(n: int) -> str:
        return "\\left( \\begin{array} { c } " + " \\\\ ".join(f"{{ x _ {{ {i} }} }}" for i in range(n)) + \
            " \\end{array} \\right)"

    result = render_formulas(["x", column(14), column(3), column(80)], backend="latex", batch_size=4)
    assert result.failed == [3] and "2 pages" in result.errors[3]
    tall, short = ink_box(result.images[1]), ink_box(result.images[2])
    assert tall[1] - tall[0] > 4 * (short[1] - short[0])  # the whole column, not cut at the page bottom
