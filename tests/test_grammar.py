"""Tests of i2l.data.grammar: the formula generator (seeded, well formed, levels) and its statistics."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from i2l.config import get_config
from i2l.data.grammar import (
    BASIC_TABLES,
    FormulaGenerator,
    compare_statistics,
    generate_formulas,
    grammar_tokens,
)
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


# Shares of some tokens among all the tokens of the real Im2Latex-100K validation formulas (val.formulas.norm.txt,
# 8,475 formulas), per mille, measured once: the tokens that the model misread most often and that the full level
# once wrote far too rarely (spacing, \cal, \prime, \hat, brackets). The full level keeps each within 0.8 to 1.5
# times its real share.
TARGET_SHARES = {
    "\\,": 8.03, "~": 4.86, "\\;": 4.35, "\\!": 0.89, "\\quad": 1.41, "\\qquad": 0.85, "\\cal": 3.06, "\\bf": 1.52,
    "\\prime": 3.99, "\\hat": 1.75, "\\bar": 2.50, "\\tilde": 1.89, "(": 26.78, ")": 26.73, "[": 2.51, "]": 2.54,
    "|": 3.12, ",": 18.40, ";": 0.91, "\\delta": 2.94, "\\Delta": 1.10, "\\Omega": 0.96,
}


def _reference_formulas(n: int, seed: int) -> list[str]:
    """Formulas made as the reference preset's synthetic data is (i2l.data.synth.ensure_dataset)."""
    cfg = get_config("reference")
    return FormulaGenerator(seed=seed, max_len=cfg.max_len, level="full", mean_len=cfg.synth_mean_len,
                            std_len=cfg.synth_std_len).generate(n)


def test_full_level_writes_the_tokens_real_formulas_use_as_often():
    formulas = _reference_formulas(4000, seed=0) + _reference_formulas(4000, seed=1)
    counts = Counter(t for f in formulas for t in f.split())
    total = sum(counts.values())
    ratios = {t: counts[t] / total * 1000 / share for t, share in TARGET_SHARES.items()}
    assert all(0.8 <= r <= 1.5 for r in ratios.values()), {t: round(r, 2) for t, r in ratios.items()}
    # written as real formulas write them: fonts as switches, primes as superscripts, spacing repeated
    joined = " ".join(formulas)
    for construct in ("{ \\cal ", "^ { \\prime }", "^ { \\prime \\prime }", "~ ~", ", \\quad", "\\, .", " ; ",
                      "| \\psi", "\\rangle"):
        assert construct in joined, construct
    # most formulas have no prime, accent or font switch; those that do often have several (as in real ones)
    with_prime = [f for f in formulas if "\\prime" in f]
    assert len(with_prime) < 0.2 * len(formulas)
    assert sum(f.count("\\prime") for f in with_prime) > 1.5 * len(with_prime)


def test_full_level_lengths_stay_where_the_recipe_expects_them():
    """Reference preset's arguments: mean 61.4, std 31.4, median 56 tokens before the token shares were tuned."""
    lengths = sorted(len(f.split()) for f in _reference_formulas(5000, seed=1000))
    mean = sum(lengths) / len(lengths)
    std = (sum((n - mean) ** 2 for n in lengths) / len(lengths)) ** 0.5
    assert 58 <= mean <= 65 and 28 <= std <= 35 and 52 <= lengths[len(lengths) // 2] <= 60
    assert max(lengths) <= 150


def test_full_level_writes_only_vocabulary_tokens():
    vocab = set(grammar_tokens())
    written = {t for f in _reference_formulas(3000, seed=2) + generate_formulas(2000, seed=3) for t in f.split()}
    assert written <= vocab, written - vocab


def test_vocabulary_is_unchanged():
    """The shipped model's vocabulary: the tuning of the grammar must not add or drop a token."""
    tokens = grammar_tokens()
    assert len(tokens) == 318
    assert hashlib.sha256("\n".join(tokens).encode()).hexdigest() == \
        "98baef27a7ddf9a04d31a7e7e7c7fbe585f95ddce712e4c17bed6df2a6629ff2"


def test_basic_level_formulas_are_unchanged():
    """The basic level's formulas for a seed, as they were before the full level's token shares were tuned."""
    assert generate_formulas(4, seed=0, level="basic") == [
        "l \\partial ^ { \\nu } p _ { 3 } I ^ { i = 1 } z ^ { 0 . 2 8 }",
        "7 z = m l n ^ { d 0 + \\frac { - \\partial _ { W } } { k _ { 6 } } } \\mu ^ { 6 4 1 }",
        "2 g \\delta e = p _ { d }",
        "\\frac { ( \\pi _ { Y } ) \\delta _ { i = 1 . 3 8 5 } ^ { 5 } } { P - d } 2",
    ]
    formulas = generate_formulas(500, seed=1, max_len=40, level="basic")
    assert hashlib.sha256("\n".join(formulas).encode()).hexdigest() == \
        "f7d2e26eefa291bb6d74bcbcdf8a19a53bca3dee4e68f2854f9cca5540f9f27d"
