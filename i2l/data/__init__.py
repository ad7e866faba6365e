"""Data: Im2Latex-100K download and parsing, the synthetic generator and renderer, Dataset and DataModule."""
