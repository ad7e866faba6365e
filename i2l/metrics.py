"""Metrics for formula recognition: the standard Im2Latex-100K protocol and the original project's family.

Two families, clearly named, so that numbers can be set beside the right published table:

- **Standard protocol** (Deng et al. 2017, "Image-to-Markup Generation with Coarse-to-Fine Attention"),
  :func:`compute_metrics`: corpus-level BLEU-4 over tokens (sacrebleu with ``tokenize="none"`` and no
  smoothing, which equals nltk's ``corpus_bleu`` and ``multi-bleu.perl``), token edit-distance accuracy
  ``1 - sum(lev) / sum(max(len(ref), len(pred)))``, token exact match, and exact match ignoring spacing
  commands (``\\,`` ``\\;`` ``\\:`` ``\\!`` ``\\quad`` ``\\qquad`` ``~`` and the control space ``\\ ``).
  A failed or empty prediction counts as an empty token list; unknown tokens stay in the references, so a
  model cannot score on what its vocabulary lacks.
- **Seed family** (the original project's own metrics), :func:`seed_metrics`: per-sample sentence BLEU
  averaged over samples, CER = token Levenshtein / longer length averaged over samples, the mean raw
  token edit distance, and exact match. Keys are prefixed ``seed_``.

All inputs are lists of token lists or of space-separated strings (``None`` means a failed prediction).
BLEU values are fractions in [0, 1] (sacrebleu's 0-100 divided by 100).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import sacrebleu
from rapidfuzz.distance import Levenshtein

Tokens = Sequence[str]
TokensLike = Sequence[str] | str | None

# LaTeX spacing commands, as tokens of a normalized formula ("\\" alone is the control space "\ ").
WHITESPACE_TOKENS = frozenset({"\\,", "\\;", "\\:", "\\!", "\\quad", "\\qquad", "~", "\\", "\\ "})

STANDARD_KEYS = ("bleu", "edit_accuracy", "exact_match", "exact_match_nospace", "n")
SEED_KEYS = ("seed_bleu", "seed_cer", "seed_edit_distance", "seed_exact_match")


# ----------------------------------------------------------------------------- helpers
def as_tokens(x: TokensLike) -> list[str]:
    """A token list from a token list, a space-separated string, or ``None`` (a failed prediction: empty)."""
    if x is None:
        return []
    if isinstance(x, str):
        return x.split()
    return [str(t) for t in x]


def strip_whitespace(tokens: TokensLike) -> list[str]:
    """The tokens without LaTeX spacing commands (see ``WHITESPACE_TOKENS``)."""
    return [t for t in as_tokens(tokens) if t not in WHITESPACE_TOKENS]


def edit_distance(ref: TokensLike, pred: TokensLike) -> int:
    """Levenshtein distance between two token sequences (insertions, deletions, substitutions cost 1)."""
    return int(Levenshtein.distance(as_tokens(ref), as_tokens(pred)))


def _pairs(references: Iterable[TokensLike], predictions: Iterable[TokensLike]) -> tuple[list, list]:
    refs = [as_tokens(r) for r in references]
    preds = [as_tokens(p) for p in predictions]
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} references but {len(preds)} predictions: pass one prediction per "
                         "reference (None or '' for a failed one)")
    return refs, preds


def corpus_bleu(references: Iterable[TokensLike], predictions: Iterable[TokensLike]) -> float:
    """Corpus BLEU-4 over tokens in [0, 1]: sacrebleu, ``tokenize="none"``, no smoothing, one reference."""
    refs, preds = _pairs(references, predictions)
    if not refs:
        return 0.0
    score = sacrebleu.corpus_bleu(
        [" ".join(p) for p in preds], [[" ".join(r) for r in refs]],
        tokenize="none", smooth_method="none", force=True,
    )
    return score.score / 100.0


def sentence_bleu(ref: TokensLike, pred: TokensLike) -> float:
    """Sentence BLEU-4 over tokens in [0, 1]: sacrebleu, ``tokenize="none"``, exponential smoothing.

    Smoothing (sacrebleu's sentence default) keeps short formulas from scoring 0 for lacking a 4-gram match.
    """
    r, p = as_tokens(ref), as_tokens(pred)
    if not r and not p:
        return 1.0
    score = sacrebleu.sentence_bleu(" ".join(p), [" ".join(r)], tokenize="none", smooth_method="exp")
    return score.score / 100.0


# ----------------------------------------------------------------------------- per sample
def sample_scores(ref: TokensLike, pred: TokensLike) -> dict:
    """Scores of one (reference, prediction) pair: lengths, edit distance, CER, sentence BLEU, exact matches."""
    r, p = as_tokens(ref), as_tokens(pred)
    dist = edit_distance(r, p)
    longest = max(len(r), len(p))
    return {
        "ref_len": len(r),
        "pred_len": len(p),
        "edit_distance": dist,
        "cer": dist / longest if longest else 0.0,
        "bleu": sentence_bleu(r, p),
        "exact_match": float(r == p),
        "exact_match_nospace": float(strip_whitespace(r) == strip_whitespace(p)),
    }


# ----------------------------------------------------------------------------- families
def compute_metrics(references: Iterable[TokensLike], predictions: Iterable[TokensLike]) -> dict:
    """The standard protocol: ``bleu`` (corpus BLEU-4), ``edit_accuracy``, ``exact_match``,
    ``exact_match_nospace`` and ``n``."""
    refs, preds = _pairs(references, predictions)
    n = len(refs)
    if n == 0:
        return {"bleu": 0.0, "edit_accuracy": 0.0, "exact_match": 0.0, "exact_match_nospace": 0.0, "n": 0}
    total_dist = sum(edit_distance(r, p) for r, p in zip(refs, preds))
    total_len = sum(max(len(r), len(p)) for r, p in zip(refs, preds))
    return {
        "bleu": corpus_bleu(refs, preds),
        "edit_accuracy": 1.0 - total_dist / total_len if total_len else 1.0,
        "exact_match": sum(r == p for r, p in zip(refs, preds)) / n,
        "exact_match_nospace": sum(strip_whitespace(r) == strip_whitespace(p) for r, p in zip(refs, preds)) / n,
        "n": n,
    }


def seed_metrics(references: Iterable[TokensLike], predictions: Iterable[TokensLike]) -> dict:
    """The original project's per-sample family, averaged over samples: ``seed_bleu`` (mean sentence BLEU),
    ``seed_cer`` (mean token Levenshtein / longer length), ``seed_edit_distance``, ``seed_exact_match``."""
    refs, preds = _pairs(references, predictions)
    n = len(refs)
    if n == 0:
        return {k: 0.0 for k in SEED_KEYS}
    scores = [sample_scores(r, p) for r, p in zip(refs, preds)]
    return {
        "seed_bleu": sum(s["bleu"] for s in scores) / n,
        "seed_cer": sum(s["cer"] for s in scores) / n,
        "seed_edit_distance": sum(s["edit_distance"] for s in scores) / n,
        "seed_exact_match": sum(s["exact_match"] for s in scores) / n,
    }


def all_metrics(references: Iterable[TokensLike], predictions: Iterable[TokensLike]) -> dict:
    """Both families in one dictionary (standard keys and ``seed_*`` keys)."""
    refs, preds = _pairs(references, predictions)
    return {**compute_metrics(refs, preds), **seed_metrics(refs, preds)}


# ----------------------------------------------------------------------------- error analysis
def token_confusions(references: Iterable[TokensLike], predictions: Iterable[TokensLike]) -> Counter:
    """Counts of ``(reference_token, predicted_token)`` from minimal Levenshtein alignments.

    Substitutions are ``(ref, pred)``; a deleted reference token is ``(ref, "")``, an inserted one ``("", pred)``.
    """
    refs, preds = _pairs(references, predictions)
    counts: Counter = Counter()
    for r, p in zip(refs, preds):
        for op in Levenshtein.editops(r, p):
            if op.tag == "replace":
                counts[(r[op.src_pos], p[op.dest_pos])] += 1
            elif op.tag == "delete":
                counts[(r[op.src_pos], "")] += 1
            else:  # insert
                counts[("", p[op.dest_pos])] += 1
    return counts


def metrics_by_length(
    references: Iterable[TokensLike], predictions: Iterable[TokensLike], bins: Sequence[int] = (0, 20, 40, 60, 80, 100, 150),
) -> list[dict]:
    """The standard metrics per reference-length bin ``[lo, hi)`` (the last bin also takes longer ones)."""
    refs, preds = _pairs(references, predictions)
    edges = list(bins)
    rows = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        idx = [k for k, r in enumerate(refs) if lo <= len(r) and (len(r) < hi or last)]
        if not idx:
            continue
        m = compute_metrics([refs[k] for k in idx], [preds[k] for k in idx])
        rows.append({"lo": lo, "hi": hi, **m})
    return rows
