"""Tests of i2l.published: a run's metrics beside the published numbers."""

from __future__ import annotations

import math

from i2l.published import PUBLISHED, comparison_table


def test_comparison_table():
    m = {"bleu": 0.5, "edit_accuracy": 0.6, "exact_match": 0.1, "exact_match_nospace": 0.2, "seed_bleu": 0.7,
         "seed_exact_match": 0.1, "seed_cer": 0.3, "seed_edit_distance": 4.0,
         "render": {"image_exact_match": 0.15, "image_match_nospace": 0.25, "image_edit_accuracy": 0.4}}
    df = comparison_table(m)
    assert list(df.columns) == ["i2l (this run)", *PUBLISHED]
    assert df.loc["BLEU-4, corpus (standard)", "i2l (this run)"] == 0.5
    assert df.loc["BLEU-4, corpus (standard)", "Deng et al. 2017 (Im2Latex-100K test)"] == 0.8773
    assert df.loc["image exact match (render-back)", "i2l (this run)"] == 0.15
    assert df.loc["BLEU, mean sentence (seed)", "original project (its own metrics)"] == 0.81
    assert math.isnan(df.loc["token edit accuracy (standard)", "original project (its own metrics)"])
    no_render = comparison_table({"bleu": 0.5})
    assert math.isnan(no_render.loc["image exact match (render-back)", "i2l (this run)"])
