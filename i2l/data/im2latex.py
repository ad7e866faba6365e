"""Im2Latex-100K: parse both layouts (processed and raw) of a dataset folder into samples and their images.

The raw layout's full pages are processed on loading (:func:`sample_image`) with
:func:`i2l.images.process_page`, which reproduces the official im2markup pipeline pixel for pixel; the
synthetic renderer uses the same function, so synthetic images look like the real ones. Downloading the
dataset is :mod:`i2l.data.download`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from i2l.config import SPLITS
from i2l.errors import I2LError
from i2l.images import process_page, to_gray
from i2l.tokenizer import tokenize, tokenize_raw

log = logging.getLogger(__name__)

# ============================================================================ layouts and splits
_SPLIT_ALIASES = {"val": "validate", "valid": "validate", "validation": "validate"}


@dataclass(frozen=True)
class Sample:
    """One image and its formula: ``formula`` is the line ``index`` of the formula list, as in the file."""

    name: str
    image_path: Path
    formula: str
    index: int
    layout: str = "processed"  # "raw": image_path is a full page (see sample_image), formula is raw LaTeX

    @property
    def tokens(self) -> list[str]:
        """Tokens of the formula (whitespace split for normalized formulas, the raw regex for raw LaTeX)."""
        return tokenize_raw(self.formula) if self.layout == "raw" else tokenize(self.formula)


@dataclass
class LoadReport:
    """What :func:`load_split` skipped and why (each problem also logged with its file and line)."""

    split: str
    list_file: Path | None = None
    lines: int = 0
    loaded: int = 0
    empty_formulas: int = 0
    missing_images: int = 0
    empty_images: int = 0
    bad_lines: int = 0
    bad_indices: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Lines of the list that produced no sample."""
        return self.lines - self.loaded

    def add(self, kind: str, message: str) -> None:
        """Count a problem of ``kind`` (a field name) and log ``message`` (the first 20 of each load)."""
        setattr(self, kind, getattr(self, kind) + 1)
        self.messages.append(message)
        if len(self.messages) <= _MAX_LOGGED:
            log.warning(message)

    def merge(self, other: LoadReport) -> None:
        """Add the counts and messages of ``other`` (the same split of another shard)."""
        for kind in ("lines", "loaded", "empty_formulas", "missing_images", "empty_images", "bad_lines",
                     "bad_indices"):
            setattr(self, kind, getattr(self, kind) + getattr(other, kind))
        self.messages += other.messages

    def summary(self) -> str:
        """One line: loaded and skipped counts by reason."""
        reasons = {k: getattr(self, k) for k in ("empty_formulas", "missing_images", "empty_images",
                                                  "bad_lines", "bad_indices") if getattr(self, k)}
        why = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in reasons.items()) or "nothing skipped"
        return f"{self.split}: {self.loaded} of {self.lines} samples loaded ({why})"


_MAX_LOGGED = 20


@dataclass(frozen=True)
class Layout:
    """Where the files of one dataset folder are: kind 'processed' or 'raw', either naming."""

    kind: str
    root: Path
    formulas: Path
    images: Path
    prefix: str  # "im2latex_" for the official downloads, "" for the sample and the synthetic sets

    def split_file(self, split: str) -> Path:
        """The list file of ``split`` ('train', 'validate' or 'test')."""
        suffix = "_filter.lst" if self.kind == "processed" else ".lst"
        return self.root / f"{self.prefix}{split}{suffix}"


_NAMES = {
    "processed": ("formulas.norm.lst", ("images_processed", "formula_images_processed")),
    "raw": ("formulas.lst", ("images", "formula_images")),
}


def find_layout(root: str | Path, layout: str = "auto") -> Layout:
    """The layout of the dataset folder ``root`` ('auto': processed if present, else raw).

    Accepts both namings (``formulas.norm.lst`` or ``im2latex_formulas.norm.lst``; ``images_processed/`` or
    ``formula_images_processed/``) and a folder holding ``processed/`` or ``raw/`` subfolders.
    """
    root = Path(root).expanduser()
    if layout not in ("auto", "processed", "raw"):
        raise I2LError(f"unknown layout {layout!r}: choose 'auto', 'processed' or 'raw'")
    if not root.is_dir():
        raise I2LError(f"{root}: dataset folder not found; download it with `i2l data download --dest {root}` "
                       "or generate a synthetic one with `i2l data synth`")
    kinds = ("processed", "raw") if layout == "auto" else (layout,)
    for kind in kinds:
        for folder in (root, root / kind):
            formulas_name, image_dirs = _NAMES[kind]
            for prefix in ("", "im2latex_"):
                formulas = folder / f"{prefix}{formulas_name}"
                if formulas.is_file():
                    images = next((folder / d for d in image_dirs if (folder / d).is_dir()), folder / image_dirs[0])
                    return Layout(kind, folder, formulas, images, prefix)
    wanted = " or ".join(f"{_NAMES[k][0]} (or im2latex_{_NAMES[k][0]})" for k in kinds)
    raise I2LError(f"{root}: no {wanted} found; is this an Im2Latex dataset folder?")


def _decode_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("%s line %d: not valid UTF-8, read as Latin-1", path, lineno)
        return raw.decode("latin-1")


def read_formulas(path: str | Path) -> list[str]:
    """Lines of a formula list, split on ``\\n`` only (formulas may contain ``\\r``); line k = formula k."""
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":  # the newline that ends the last line
        lines.pop()
    return [_decode_line(line, path, k + 1) for k, line in enumerate(lines)]


def _parse_line(line: str, kind: str) -> tuple[str, int] | None:
    """(image file name, formula index) of a list line, or None when malformed."""
    parts = line.split()
    try:
        if kind == "processed":  # "name.png idx"
            return parts[0], int(parts[1])
        return parts[1] + ".png", int(parts[0])  # "idx name render_type"
    except (IndexError, ValueError):
        return None


def load_split_report(root: str | Path, split: str, layout: str = "auto",
                      formulas: list[str] | None = None) -> tuple[list[Sample], LoadReport]:
    """Like :func:`load_split`, and also the :class:`LoadReport` of what was skipped."""
    split = _SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise I2LError(f"unknown split {split!r}: choose one of {SPLITS}")
    lay = find_layout(root, layout)
    list_file = lay.split_file(split)
    report = LoadReport(split=split, list_file=list_file)
    if not list_file.is_file():
        raise I2LError(f"{list_file}: split list not found (the {lay.kind} layout of {lay.root} has no "
                       f"{split} split); check the folder or download the dataset again")
    if formulas is None:
        formulas = read_formulas(lay.formulas)
    samples: list[Sample] = []
    for lineno, raw in enumerate(list_file.read_bytes().split(b"\n"), start=1):
        line = _decode_line(raw, list_file, lineno).strip()
        if not line:
            continue
        report.lines += 1
        where = f"{list_file} line {lineno}"
        parsed = _parse_line(line, lay.kind)
        if parsed is None:
            report.add("bad_lines", f"{where}: cannot parse {line[:60]!r}; skipped")
            continue
        name, index = parsed
        if not 0 <= index < len(formulas):
            report.add("bad_indices", f"{where}: formula index {index} outside {lay.formulas} "
                                      f"({len(formulas)} lines); skipped")
            continue
        formula = formulas[index].strip()
        if not formula:
            report.add("empty_formulas", f"{where}: formula {index} is empty in {lay.formulas} "
                                         "(an empty line: failed normalisation); skipped")
            continue
        image_path = lay.images / name
        try:
            size = image_path.stat().st_size
        except OSError:
            report.add("missing_images", f"{where}: image {image_path} not found; skipped")
            continue
        if size == 0:
            report.add("empty_images", f"{where}: image {image_path} is empty (0 bytes); skipped")
            continue
        samples.append(Sample(name, image_path, formula, index, lay.kind))
    report.loaded = len(samples)
    if len(report.messages) > _MAX_LOGGED:
        log.warning("... %d more problems; %s", len(report.messages) - _MAX_LOGGED, report.summary())
    return samples, report


def load_split(root: str | Path, split: str, layout: str = "auto") -> list[Sample]:
    """Samples of ``split`` ('train', 'validate' or 'test') of the dataset folder ``root``.

    Every line of the split list is kept except those that cannot be used (empty formula, missing or empty
    image, malformed line), each logged with its file and line. No length filter is applied here: the test
    split stays complete for evaluation; training applies ``cfg.max_len`` in the DataModule.
    """
    return load_split_report(root, split, layout)[0]


def sample_image(sample: Sample | str | Path, layout: str | None = None) -> Image.Image:
    """The 'L' image of a sample, raw pages processed with :func:`process_page`; bad files raise I2LError."""
    if isinstance(sample, Sample):
        path, layout = sample.image_path, layout or sample.layout
    else:
        path, layout = Path(sample), layout or "processed"
    try:
        with Image.open(path) as img:
            img.load()
            return process_page(img) if layout == "raw" else to_gray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, I2LError):
            raise I2LError(f"{path}: {exc}") from exc
        raise I2LError(f"{path}: unreadable image ({exc}); delete or replace the file") from exc


def stats(path: str | Path, layout: str = "auto", image_sizes: bool = True) -> dict:
    """Counts, formula lengths and image sizes of the dataset folder ``path`` (for ``i2l data stats``)."""
    lay = find_layout(path, layout)
    formulas = read_formulas(lay.formulas)
    out: dict = {
        "root": str(lay.root), "layout": lay.kind, "formulas_file": lay.formulas.name,
        "formulas": len(formulas), "empty_formulas": sum(not f.strip() for f in formulas), "splits": {},
    }
    for split in SPLITS:
        if not lay.split_file(split).is_file():
            continue
        samples, report = load_split_report(lay.root, split, lay.kind, formulas=formulas)
        lengths = np.array([len(s.tokens) for s in samples]) if samples else np.zeros(1)
        entry: dict = {
            "list_file": report.list_file.name, "lines": report.lines, "samples": report.loaded,
            "skipped": {k: getattr(report, k) for k in ("empty_formulas", "missing_images", "empty_images",
                                                        "bad_lines", "bad_indices")},
            "tokens": {"mean": round(float(lengths.mean()), 2), "median": float(np.median(lengths)),
                       "max": int(lengths.max()), "over_150": int((lengths > 150).sum())},
        }
        if image_sizes and lay.kind == "processed" and samples:
            sizes = Counter()
            for s in samples:
                with Image.open(s.image_path) as img:
                    sizes[f"{img.width}x{img.height}"] += 1
            entry["image_sizes"] = dict(sizes.most_common())
        out["splits"][split] = entry
    return out


__all__ = [
    "Sample", "LoadReport", "Layout", "find_layout", "read_formulas", "load_split", "load_split_report",
    "sample_image", "stats",
]
