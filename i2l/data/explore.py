"""Tables of a dataset for notebooks 01 and 02 (pandas DataFrames and counters; the figures are in
:mod:`i2l.plots.data`).

- :func:`samples_table`: one row per sample (split, name, tokens, image size, formula).
- :func:`split_summary`: per split, sample counts, token lengths and image sizes.
- :func:`token_counts`: how often each token occurs.
- :func:`coverage_table`, :func:`length_coverage`: vocabulary and length choices (notebook 02).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from i2l.config import SPLITS
from i2l.data.im2latex import find_layout, load_split_report, read_formulas, sample_image
from i2l.errors import I2LError
from i2l.tokenizer import Vocab, coverage


def samples_table(root: str | Path, limit: int | None = None, image_sizes: bool = True):
    """A pandas DataFrame, one row per sample of every split: split, name, index, n_tokens, width, height, formula."""
    import pandas as pd

    layout = find_layout(root)
    formulas = read_formulas(layout.formulas)
    rows = []
    for split in SPLITS:
        if not layout.split_file(split).is_file():
            continue
        samples, _ = load_split_report(layout.root, split, layout.kind, formulas=formulas)
        for s in samples[:limit]:
            width = height = np.nan
            if image_sizes:
                if s.layout == "raw":
                    width, height = sample_image(s).size
                else:
                    with Image.open(s.image_path) as img:
                        width, height = img.size
            tokens = s.tokens
            rows.append({"split": split, "name": s.name, "index": s.index, "n_tokens": len(tokens),
                         "width": width, "height": height, "formula": " ".join(tokens),
                         "image_path": str(s.image_path), "layout": s.layout})
    if not rows:
        raise I2LError(f"{root}: no samples in any split")
    return pd.DataFrame(rows)


def split_summary(table):
    """Per split: samples, token length mean / median / 95th percentile / max, share over 150, image size."""
    g = table.groupby("split", sort=False)
    out = g.agg(samples=("name", "size"), tokens_mean=("n_tokens", "mean"), tokens_median=("n_tokens", "median"),
                tokens_p95=("n_tokens", lambda x: float(np.percentile(x, 95))), tokens_max=("n_tokens", "max"),
                over_150=("n_tokens", lambda x: float((x > 150).mean())), width_mean=("width", "mean"),
                height_mean=("height", "mean"))
    return out.round(2)


def token_counts(formulas: Iterable[str]) -> Counter:
    """How often each token occurs in ``formulas`` (normalized, whitespace-separated)."""
    counts: Counter = Counter()
    for f in formulas:
        counts.update(f.split())
    return counts


def coverage_table(train: Sequence[str], evaluate: Sequence[str], min_freqs: Sequence[int] = (1, 2, 3, 5, 10),
                   fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0)):
    """Vocabulary size and unknown rates on ``evaluate`` for each training fraction and ``min_freq``."""
    import pandas as pd

    rows = []
    for fraction in fractions:
        subset = list(train[: max(1, int(len(train) * fraction))])
        for min_freq in min_freqs:
            vocab = Vocab.build(subset, min_freq=min_freq)
            rep = coverage(vocab, evaluate)
            rows.append({"train_formulas": len(subset), "min_freq": min_freq, "vocab_size": len(vocab),
                         "unknown_token_rate": rep["unknown_rate"],
                         "formulas_with_unknown": rep["formula_unknown_rate"]})
    return pd.DataFrame(rows)


def length_coverage(formulas: Sequence[str], max_lens: Sequence[int] = (50, 100, 150, 200, 300)):
    """Share of ``formulas`` kept by each ``max_len``, in tokens and in characters (what a char model sees)."""
    import pandas as pd

    tokens = np.array([len(f.split()) for f in formulas])
    chars = np.array([len(f.replace(" ", "")) for f in formulas])
    return pd.DataFrame({"max_len": list(max_lens),
                         "kept_tokens": [float((tokens <= m).mean()) for m in max_lens],
                         "kept_characters": [float((chars <= m).mean()) for m in max_lens]})


__all__ = ["samples_table", "split_summary", "token_counts", "coverage_table", "length_coverage"]
