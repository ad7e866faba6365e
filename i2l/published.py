"""Published Im2Latex-100K results, and a table of a run's metrics beside them.

The figures are fractions in [0, 1]; each row names its metric family (see :mod:`i2l.metrics`).
"""

from __future__ import annotations

# Fractions in [0, 1]. Deng et al. 2017 (ICML, "Image-to-Markup Generation with Coarse-to-Fine Attention"),
# Table 2, IM2TEX on the Im2Latex-100K test set: corpus BLEU-4 and render-back image matches.
# The original project reported its own per-sample family (see i2l.metrics.seed_metrics).
PUBLISHED = {
    "Deng et al. 2017 (Im2Latex-100K test)": {"bleu": 0.8773, "image_edit_accuracy": 0.8760,
                                               "image_exact_match": 0.7746, "image_match_nospace": 0.7988},
    "original project (its own metrics)": {"seed_bleu": 0.81, "seed_exact_match": 0.25},
}

COMPARISON_ROWS = (
    ("BLEU-4, corpus (standard)", "bleu"),
    ("token edit accuracy (standard)", "edit_accuracy"),
    ("token exact match (standard)", "exact_match"),
    ("exact match ignoring spacing (standard)", "exact_match_nospace"),
    ("image exact match (render-back)", "image_exact_match"),
    ("image match ignoring whitespace (render-back)", "image_match_nospace"),
    ("image edit accuracy (render-back)", "image_edit_accuracy"),
    ("BLEU, mean sentence (seed)", "seed_bleu"),
    ("exact match (seed)", "seed_exact_match"),
    ("CER (seed)", "seed_cer"),
    ("edit distance, mean (seed)", "seed_edit_distance"),
)


def comparison_table(metrics: dict, name: str = "i2l (this run)"):
    """A pandas DataFrame: this run's metrics of both families beside the published numbers (NaN = not reported)."""
    import pandas as pd

    ours = {**metrics, **metrics.get("render", {})}
    columns = {name: ours, **PUBLISHED}
    data = {col: [vals.get(key, float("nan")) for _, key in COMPARISON_ROWS] for col, vals in columns.items()}
    return pd.DataFrame(data, index=[label for label, _ in COMPARISON_ROWS]).astype(float).round(4)


__all__ = ["PUBLISHED", "COMPARISON_ROWS", "comparison_table"]
