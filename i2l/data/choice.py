"""Which dataset a notebook explores: the full Im2Latex-100K, the official sample or the synthetic set.

- :func:`choose_data`: the full dataset in ``data/im2latex`` if downloaded, else the real sample in
  ``../shared`` (:func:`i2l.config.shared_data`), else the synthetic set (generated if needed); a :class:`DataChoice`
  says which.

Not to be confused with :func:`i2l.train.find_data`, the dataset folder a config trains on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from i2l.config import Config, project_root, shared_data
from i2l.data.im2latex import find_layout
from i2l.errors import I2LError


@dataclass(frozen=True)
class DataChoice:
    """The dataset a notebook explores: its folder, ``kind`` ('full', 'sample' or 'synthetic') and a sentence."""

    root: Path
    kind: str
    description: str
    smoke: bool = False  # chosen for a smoke run: its figures are not worth keeping

    @property
    def eval_split(self) -> str:
        """The split to evaluate on: 'test', or 'validate' where the test split is absent (the authors' sample
        withholds it)."""
        test = find_layout(self.root).split_file("test")  # its lines, not its images: evaluation reads those
        return "test" if test.is_file() and test.read_text().strip() else "validate"

    def figure_path(self, name: str) -> Path | None:
        """``figures/<name>`` for the README; None for the real sample (its formulas stay out of the repository)
        and for smoke runs (their figures would replace the real ones)."""
        return None if self.kind == "sample" or self.smoke else project_root() / "figures" / name


def choose_data(cfg: Config, full: str | Path = "data/im2latex", sample: str | Path | None = None) -> DataChoice:
    """Which dataset a notebook explores: full, sample or synthetic.

    The full Im2Latex-100K if downloaded to ``full``, else the real sample (``sample``, by default
    ``sample/processed`` of :func:`i2l.config.shared_data`), else the synthetic set (generated when missing).
    """
    full_path = cfg.resolve(full)
    try:
        find_layout(full_path)
        return DataChoice(full_path, "full", f"the full Im2Latex-100K dataset in {full_path}", cfg.smoke)
    except I2LError:
        pass
    sample_path = Path(sample) if sample is not None else shared_data() / "sample" / "processed"
    if (sample_path / "formulas.norm.lst").is_file():
        return DataChoice(sample_path, "sample", f"the official Im2Latex-100K sample (train + validate) in "
                                                 f"{sample_path}; download the full set with `i2l data download`", cfg.smoke)
    try:
        from i2l.data.synth import ensure_dataset
    except ImportError as exc:
        raise I2LError("no dataset found: download Im2Latex-100K with `i2l data download --dest data/im2latex` "
                       "(the synthetic generator is not available in this version)") from exc
    synth_cfg = cfg if Path(cfg.data_dir).name.startswith("synth") else cfg.replace(data_dir="data/synth")
    root = ensure_dataset(synth_cfg)
    return DataChoice(Path(root), "synthetic", f"the synthetic dataset in {root} (rendered formulas, not real "
                                               "arXiv data); download the real one with `i2l data download`",
                      cfg.smoke)


__all__ = ["DataChoice", "choose_data"]
