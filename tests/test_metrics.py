"""Tests of i2l.metrics against independent computations (a DP Levenshtein, a hand-written BLEU-4)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import sacrebleu

from i2l.metrics import (
    WHITESPACE_TOKENS,
    all_metrics,
    as_tokens,
    compute_metrics,
    corpus_bleu,
    edit_distance,
    metrics_by_length,
    sample_scores,
    seed_metrics,
    sentence_bleu,
    strip_whitespace,
    token_confusions,
)


# ----------------------------------------------------------------------------- independent references
def dp_levenshtein(a: list[str], b: list[str]) -> int:
    """Textbook dynamic programme."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def ref_corpus_bleu(refs: list[list[str]], preds: list[list[str]]) -> float:
    """multi-bleu.perl / nltk corpus_bleu: clipped n-gram precisions, geometric mean, brevity penalty."""
    matches, totals = [0] * 4, [0] * 4
    for r, p in zip(refs, preds):
        for n in range(1, 5):
            rc = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            pc = Counter(tuple(p[i:i + n]) for i in range(len(p) - n + 1))
            matches[n - 1] += sum(min(c, rc[g]) for g, c in pc.items())
            totals[n - 1] += max(len(p) - n + 1, 0)
    if min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    hyp_len, ref_len = sum(map(len, preds)), sum(map(len, refs))
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_p)


CASES = {
    "identical": (["\\frac { a } { b }", "x ^ { 2 }"], ["\\frac { a } { b }", "x ^ { 2 }"]),
    "empty": (["a + b = c", "x"], ["", None]),
    "all_wrong": (["a b c d", "e f"], ["w x y z", "q r"]),
    "one_off": (["a + b = c d", "x ^ { 2 }"], ["a + b = c e", "x ^ { 2 }"]),
    "different_lengths": (["a b c d e f g h", "x"], ["a b c", "x y z w v u"]),
}


# ----------------------------------------------------------------------------- edit distance
@pytest.mark.parametrize("name", sorted(CASES))
def test_edit_accuracy_matches_dp(name):
    refs, preds = CASES[name]
    r = [as_tokens(x) for x in refs]
    p = [as_tokens(x) for x in preds]
    expected = 1 - sum(dp_levenshtein(a, b) for a, b in zip(r, p)) / sum(max(len(a), len(b)) for a, b in zip(r, p))
    assert compute_metrics(refs, preds)["edit_accuracy"] == pytest.approx(expected, abs=1e-6)
    for a, b in zip(r, p):
        assert edit_distance(a, b) == dp_levenshtein(a, b)


@pytest.mark.parametrize("name", sorted(CASES))
def test_seed_family_matches_dp(name):
    refs, preds = CASES[name]
    r = [as_tokens(x) for x in refs]
    p = [as_tokens(x) for x in preds]
    lev = [dp_levenshtein(a, b) for a, b in zip(r, p)]
    m = seed_metrics(refs, preds)
    assert m["seed_edit_distance"] == pytest.approx(sum(lev) / len(r), abs=1e-6)
    assert m["seed_cer"] == pytest.approx(sum(d / max(len(a), len(b)) for d, a, b in zip(lev, r, p)) / len(r),
                                          abs=1e-6)
    assert m["seed_exact_match"] == pytest.approx(sum(a == b for a, b in zip(r, p)) / len(r), abs=1e-6)


def test_edit_distance_is_over_tokens_not_characters():
    # "\alpha" vs "\beta" is one substitution of one token, not several character edits
    assert edit_distance("\\alpha + 1", "\\beta + 1") == 1
    assert edit_distance(["ab", "c"], ["a", "bc"]) == 2


def test_hand_computed_values():
    refs, preds = CASES["one_off"]
    m = compute_metrics(refs, preds)
    assert m["edit_accuracy"] == pytest.approx(1 - 1 / 11, abs=1e-6)  # 6 + 5 tokens, one substitution
    assert m["exact_match"] == 0.5 and m["n"] == 2
    # identical: everything perfect
    m = compute_metrics(*CASES["identical"])
    assert m == {"bleu": pytest.approx(1.0), "edit_accuracy": 1.0, "exact_match": 1.0,
                 "exact_match_nospace": 1.0, "n": 2}
    # empty / failed predictions: nothing right
    m = compute_metrics(*CASES["empty"])
    assert m["bleu"] == 0.0 and m["edit_accuracy"] == 0.0 and m["exact_match"] == 0.0
    # all wrong
    m = compute_metrics(*CASES["all_wrong"])
    assert m["bleu"] == 0.0 and m["edit_accuracy"] == 0.0


# ----------------------------------------------------------------------------- BLEU
@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_bleu_matches_independent(name):
    refs, preds = CASES[name]
    expected = ref_corpus_bleu([as_tokens(x) for x in refs], [as_tokens(x) for x in preds])
    assert corpus_bleu(refs, preds) == pytest.approx(expected, abs=1e-6)


def test_corpus_bleu_brevity_penalty_by_hand():
    # 6 of 7 reference tokens predicted, every n-gram precision 1: BLEU = exp(1 - 7/6)
    assert corpus_bleu(["a b c d e", "x y"], ["a b c d e", "x"]) == pytest.approx(math.exp(-1 / 6), abs=1e-6)


def test_unknown_tokens_stay_in_references():
    # a model whose vocabulary lacks "\foo" predicts <unk>: it must not score on that token
    m = compute_metrics(["a + \\foo"], ["a + <unk>"])
    assert m["exact_match"] == 0.0 and m["edit_accuracy"] == pytest.approx(2 / 3)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        compute_metrics(["a", "b"], ["a"])


def test_empty_corpus():
    assert compute_metrics([], [])["n"] == 0
    assert seed_metrics([], [])["seed_bleu"] == 0.0


# ----------------------------------------------------------------------------- whitespace
def test_exact_match_ignoring_whitespace():
    ref = "a \\, b \\quad c \\ d ~ e \\; f \\! g \\: h \\qquad i"
    pred = "a b c d e f g h i"
    assert strip_whitespace(ref) == pred.split()
    m = compute_metrics([ref, "x"], [pred, "x \\,"])
    assert m["exact_match"] == 0.0
    assert m["exact_match_nospace"] == 1.0
    assert "\\\\" not in WHITESPACE_TOKENS  # a line break is not spacing
    assert compute_metrics(["a \\\\ b"], ["a b"])["exact_match_nospace"] == 0.0


# ----------------------------------------------------------------------------- seed family
def test_seed_metrics_by_hand():
    refs = ["a b c d", "x y", "p q r s t"]
    preds = ["a b c d", None, "p q r s"]
    m = seed_metrics(refs, preds)
    assert m["seed_exact_match"] == pytest.approx(1 / 3)
    assert m["seed_edit_distance"] == pytest.approx((0 + 2 + 1) / 3)
    assert m["seed_cer"] == pytest.approx((0 + 1 + 1 / 5) / 3)
    expected_bleu = (1.0 + 0.0 + sacrebleu.sentence_bleu("p q r s", ["p q r s t"], tokenize="none").score / 100) / 3
    assert m["seed_bleu"] == pytest.approx(expected_bleu, abs=1e-6)
    assert set(all_metrics(refs, preds)) == {"bleu", "edit_accuracy", "exact_match", "exact_match_nospace", "n",
                                             "seed_bleu", "seed_cer", "seed_edit_distance", "seed_exact_match"}


def test_seed_differs_from_standard():
    # one long, perfect formula and one short, wrong one: per-sample means weigh them equally
    refs = [" ".join("abcdefghijklmnopqrst"), "x y"]
    preds = [" ".join("abcdefghijklmnopqrst"), "u v"]
    std, seed = compute_metrics(refs, preds), seed_metrics(refs, preds)
    assert std["edit_accuracy"] == pytest.approx(1 - 2 / 22)
    assert 1 - seed["seed_cer"] == pytest.approx(0.5)


def test_sample_scores():
    s = sample_scores("a b c", "a x c d")
    assert s["ref_len"] == 3 and s["pred_len"] == 4
    assert s["edit_distance"] == 2 and s["cer"] == pytest.approx(0.5)
    assert s["exact_match"] == 0.0 and 0.0 < s["bleu"] < 1.0
    assert sample_scores("", None)["exact_match"] == 1.0
    assert sentence_bleu("a b c d e", "a b c d e") == pytest.approx(1.0)


# ----------------------------------------------------------------------------- error analysis
def test_token_confusions():
    c = token_confusions(["a b c", "x y"], ["a x c d", "x y"])
    assert c == {("b", "x"): 1, ("", "d"): 1}
    c = token_confusions(["\\alpha + 1"], ["\\beta + 1"])
    assert c == {("\\alpha", "\\beta"): 1}


def test_metrics_by_length():
    refs = ["a"] * 3 + ["a b c d e"] * 2
    preds = ["a", "b", "a", "a b c d e", ""]
    rows = metrics_by_length(refs, preds, bins=(0, 3, 10))
    assert [(r["lo"], r["n"]) for r in rows] == [(0, 3), (3, 2)]
    assert rows[0]["exact_match"] == pytest.approx(2 / 3) and rows[1]["exact_match"] == 0.5


# ----------------------------------------------------------------------------- real formulas
def _perturb(tokens: list[str], rng: random.Random, vocab: list[str]) -> list[str]:
    kind = rng.randrange(6)
    t = list(tokens)
    if kind == 0 or not t:
        return t  # identical
    if kind == 1:
        return []  # failed prediction
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(t)) if t else 0
        op = rng.randrange(3)
        if op == 0 and t:
            t[i] = rng.choice(vocab)
        elif op == 1 and t:
            del t[i]
        else:
            t.insert(i, rng.choice(vocab))
    return t if kind != 5 else t[: max(1, len(t) // 2)]  # truncated


def test_on_real_formulas(shared_data):
    path = shared_data / "im2latex" / "formulas" / "val.formulas.norm.txt"
    if not path.exists():
        pytest.skip(f"{path} not found")
    lines = [ln for ln in path.read_text(encoding="utf-8").split("\n") if ln.strip()][:400]
    rng = random.Random(0)
    refs = [ln.split() for ln in lines]
    vocab = sorted({t for r in refs for t in r})
    preds = [_perturb(r, rng, vocab) for r in refs]
    ours = compute_metrics(refs, preds)
    direct = sacrebleu.corpus_bleu([" ".join(p) for p in preds], [[" ".join(r) for r in refs]],
                                   tokenize="none").score / 100
    assert ours["bleu"] == pytest.approx(direct, abs=1e-6)
    assert ours["bleu"] == pytest.approx(ref_corpus_bleu(refs, preds), abs=1e-6)
    assert 0.3 < ours["bleu"] < 0.99
    lev = sum(dp_levenshtein(r, p) for r, p in zip(refs, preds))
    assert ours["edit_accuracy"] == pytest.approx(1 - lev / sum(max(len(r), len(p)) for r, p in zip(refs, preds)),
                                                  abs=1e-6)
    assert ours["exact_match"] == pytest.approx(sum(r == p for r, p in zip(refs, preds)) / len(refs))
