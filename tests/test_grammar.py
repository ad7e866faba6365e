"""Tests of i2l.data.grammar: the formula generator (seeded, well formed, levels) and its statistics."""

from __future__ import annotations

import pytest

from i2l.data.grammar import BASIC_TABLES, compare_statistics, generate_formulas
from i2l.data.render import braces_balanced, latex_available
from i2l.errors import I2LError

needs_latex = pytest.mark.skipif(not latex_available(), reason="pdflatex and gs are not installed")


def test_generator_is_seeded_and_well_formed():
    a, b = generate_formulas(200, seed=3), generate_formulas(200, seed=3)
    assert a == b and a != generate_formulas(200, seed=4)
    for formula in a:
        assert formula == " ".join(formula.split())  # single spaces between tokens, nothing around
        tokens = formula.split()
        lefts = [t for t in tokens if t.startswith("\\left") and not t[5:6].isalpha()]
        rights = [t for t in tokens if t.startswith("\\right") and not t[6:7].isalpha()]  # not \rightarrow
        assert braces_balanced(formula) and len(lefts) == len(rights)
        assert formula.count("\\begin{") == formula.count("\\end{")
    joined = " ".join(a)
    for construct in ("\\frac {", " _ { ", " ^ { ", "\\left(", "\\sqrt {", "\\begin{array}", "\\mathrm {",
                      "\\sum", "\\int", "\\alpha"):
        assert construct in joined, construct


def test_generator_respects_max_len():
    formulas = generate_formulas(300, seed=0, max_len=60)
    lengths = [len(f.split()) for f in formulas]
    assert max(lengths) <= 60 and sum(lengths) / len(lengths) > 20


BASIC_ARGUMENT_OPENERS = {"_", "^", "\\frac", "\\sqrt"}


def test_basic_level_makes_short_formulas_in_which_every_token_is_visible():
    basic = generate_formulas(2000, seed=1, max_len=40, level="basic")
    assert basic == generate_formulas(2000, seed=1, max_len=40, level="basic")
    full = generate_formulas(2000, seed=1, max_len=40)
    allowed = {*"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "+", "-", "=", "<", ">", ",",
               ".", "(", ")", "[", "]", "{", "}", "_", "^", *BASIC_TABLES["greek"], *BASIC_TABLES["special"],
               "\\frac", "\\sqrt", "\\prime"}
    for formula in basic:
        tokens = formula.split()
        assert len(tokens) <= 40 and braces_balanced(formula)
        assert set(tokens) <= allowed, set(tokens) - allowed
        for k, t in enumerate(tokens):  # every group is an argument: no bare { } that renders as nothing
            if t == "{":
                prev = tokens[k - 1] if k else None
                frac_denominator = prev == "}" and _opens_frac_numerator(tokens, k - 1)
                assert prev in BASIC_ARGUMENT_OPENERS or frac_denominator or prev == "]", formula
    mean = lambda fs: sum(len(f.split()) for f in fs) / len(fs)  # noqa: E731
    assert 15 < mean(basic) < mean(full) - 5
    assert len({t for f in basic for t in f.split()}) < 110 < len({t for f in full for t in f.split()})
    for construct in ("\\frac {", " _ { ", " ^ { ", "\\sqrt {", "( ", "\\alpha"):
        assert construct in " ".join(basic), construct
    with pytest.raises(I2LError, match="unknown synthetic level"):
        generate_formulas(1, level="hard")


def _opens_frac_numerator(tokens: list[str], close: int) -> bool:
    """True if the "}" at ``close`` ends the first argument of a \\frac."""
    depth = 0
    for k in range(close, -1, -1):
        depth += tokens[k] == "}"
        depth -= tokens[k] == "{"
        if depth == 0:
            return k > 0 and tokens[k - 1] == "\\frac"
    return False


def test_compare_statistics_counts_token_occurrences():
    stats = compare_statistics(["a + b", "x"], ["a + c", "a", ""])
    assert stats["token_coverage"] == pytest.approx(3 / 4)  # a, +, a covered; c is not
    assert stats["type_coverage"] == pytest.approx(2 / 3)
    assert stats["missing_tokens"] == ["c"]
    assert stats["length_mean"] == {"generated": 2.0, "real": 2.0}
    assert set(stats["structures"]["fraction"]) == {"generated", "real"}
    with pytest.raises(I2LError):
        compare_statistics([], ["a"])


def test_generator_statistics_resemble_the_real_formulas(shared_data):
    """Targets: >= 95% of real token occurrences covered; length mean and spread within 20%."""
    real = (shared_data / "im2latex" / "formulas" / "val.formulas.norm.txt").read_text().split("\n")
    stats = compare_statistics(generate_formulas(3000, seed=0), real)
    assert stats["token_coverage"] >= 0.95, stats["missing_tokens"]
    assert 0.8 <= stats["length_mean_ratio"] <= 1.2
    assert 0.8 <= stats["length_std_ratio"] <= 1.2
    for name in ("fraction", "subscript", "superscript", "relation", "greek"):
        s = stats["structures"][name]
        assert abs(s["generated"] - s["real"]) < 0.2, (name, s)


@needs_latex
def test_generated_formulas_compile():
    from i2l.data.render import render_formulas

    result = render_formulas(generate_formulas(60, seed=7), backend="latex")
    assert len(result.failed) <= 1, result.errors
