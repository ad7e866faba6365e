"""The ruler: how well a model reads formulas as users hand them over, one row per way of handing them over.

Every row is read by :class:`i2l.infer.Predictor` from image files (PNG or JPEG bytes), preprocessing
included, and scored against the normalized references with :func:`i2l.metrics.compute_metrics`
(corpus BLEU-4, token edit accuracy, exact match). The rows (:func:`ruler_rows`):

- ``processed, as-is``: the dataset's processed images as the training loader reads them (the reference);
- ``processed``: the same files through the Predictor;
- ``raw page``: the dataset's full 200 dpi pages (1654x2339) through the Predictor;
- ``0.5x`` ... ``3x``: the formula cropped from its raw page (a screenshot at the scale of the pages, 12 pt
  at 200 dpi) and resized;
- ``JPEG q75``, ``dark mode`` (inverted), ``transparent`` (black ink on a transparent background): that
  screenshot, altered;
- ``10 pt``: the reference rendered by :func:`i2l.data.render.render_formulas` at 10 pt instead of 12 pt.

:func:`sample_items` reads a dataset folder with both layouts (the official sample); :func:`folder_items`
reads any folder of images with a labels file, so users can measure their own images.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from i2l.data.im2latex import find_layout, load_split
from i2l.errors import I2LError
from i2l.evaluate import metrics_of, score_rows
from i2l.images import PAGE_PAD, load_image, to_gray
from i2l.infer import Predictor
from i2l.tokenizer import tokenize

SCALES = (0.5, 0.75, 1.5, 2.0, 3.0)
JPEG_QUALITY = 75


@dataclass
class Item:
    """One formula to read: its reference tokens and the image files that show it."""

    name: str
    tokens: list[str]
    image: Path  # a screenshot-like image: the processed image, or the user's file
    page: Path | None = None  # the dataset's full raw page, when there is one


# ----------------------------------------------------------------------------- inputs
def sample_items(root: str | Path, split: str = "validate") -> list[Item]:
    """The formulas of ``split`` of a dataset folder holding ``processed/`` (and, when present, ``raw/``)."""
    root = Path(root)
    processed = load_split(find_layout(root, "processed").root, split, "processed")
    raw: dict[str, Path] = {}
    try:
        raw = {s.image_path.stem: s.image_path for s in load_split(find_layout(root, "raw").root, split, "raw")}
    except I2LError:
        pass
    return [Item(s.image_path.stem, s.tokens, s.image_path, raw.get(s.image_path.stem)) for s in processed]


def folder_items(images: str | Path, labels: str | Path) -> list[Item]:
    """Items from a folder of images and a labels file of lines ``<file name><TAB><normalized formula>``."""
    images, labels = Path(images), Path(labels)
    if not labels.is_file():
        raise I2LError(f"{labels}: labels file not found (lines: image file name, a tab, the formula)")
    items = []
    for lineno, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, formula = line.partition("\t")
        if not sep or not formula.strip():
            raise I2LError(f"{labels} line {lineno}: expected '<file name><TAB><formula>', got {line[:60]!r}")
        items.append(Item(Path(name).stem, tokenize(formula), images / name.strip()))
    if not items:
        raise I2LError(f"{labels} has no labelled images")
    return items


# ----------------------------------------------------------------------------- variants of one image
def page_crop(page: str | Path | Image.Image, margin: int = PAGE_PAD) -> Image.Image:
    """A raw page cropped to its ink with ``margin`` white pixels: a screenshot at the scale of the page."""
    gray = np.asarray(to_gray(load_image(page)))  # the official conversion of the palette pages
    ys, xs = np.nonzero(gray < 255)
    if len(ys) == 0:
        raise I2LError(f"{page}: the page has no ink")
    crop = gray[max(0, ys.min() - margin):ys.max() + 1 + margin, max(0, xs.min() - margin):xs.max() + 1 + margin]
    return Image.fromarray(crop, mode="L")


def rescaled(img: Image.Image, factor: float) -> Image.Image:
    """``img`` resized by ``factor`` (Lanczos), as a browser or viewer zooms a screenshot."""
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return img.convert("L").resize(size, Image.LANCZOS)


def jpeg(img: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """``img`` saved as JPEG (the bytes of the file)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def dark_mode(img: Image.Image) -> Image.Image:
    """Light ink on a dark background (a dark theme's screenshot)."""
    return ImageOps.invert(img.convert("L"))


def transparent(img: Image.Image) -> Image.Image:
    """Black ink on a transparent background (how the dataset's raw pages and many web images are made)."""
    gray = np.asarray(img.convert("L"))
    rgba = np.zeros((*gray.shape, 4), dtype=np.uint8)
    rgba[..., 3] = 255 - gray
    return Image.fromarray(rgba, mode="RGBA")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


#: The screenshot variants, by row name: each turns the 1x screenshot into the file a user would upload.
VARIANTS: dict[str, Callable[[Image.Image], bytes]] = {
    **{f"{f:g}x": (lambda img, f=f: _png(rescaled(img, f))) for f in SCALES},
    f"JPEG q{JPEG_QUALITY}": jpeg,
    "dark mode": lambda img: _png(dark_mode(img)),
    "transparent": lambda img: _png(transparent(img)),
}


# ----------------------------------------------------------------------------- the table
def score(predictor: Predictor, images: Sequence, refs: Sequence[list[str]], as_is: bool = False,
          beam: int = 1) -> dict:
    """Corpus BLEU, edit accuracy and exact match of ``predictor`` on ``images`` (files, bytes or PIL images)."""
    rows = score_rows(predictor, images, refs, beam_size=beam, as_is=as_is, progress=False)
    m = metrics_of(rows, predictor.cfg.max_len)
    return {"n": m["n"], "bleu": m["bleu"], "edit_accuracy": m["edit_accuracy"],
            "exact_match": m["exact_match"], "unreadable": m["counts"]["unreadable_images"]}


def ruler_rows(predictor: Predictor, items: Sequence[Item], beam: int = 1, render_10pt: bool = True,
               progress: Callable[[str], None] | None = None) -> list[dict]:
    """The ruler's rows for ``items`` (see the module docstring); rows whose inputs are missing are left out."""
    refs = [it.tokens for it in items]
    rows: list[dict] = []

    def add(name: str, images: Sequence, which: Sequence[int] | None = None, as_is: bool = False) -> None:
        if progress:
            progress(name)
        chosen = list(range(len(items))) if which is None else list(which)
        rows.append({"row": name, **score(predictor, images, [refs[k] for k in chosen], as_is=as_is, beam=beam)})

    with_pages = [k for k, it in enumerate(items) if it.page is not None]
    if with_pages:  # the dataset's own images: as-is beside the user's path
        add("processed, as-is", [load_image(it.image) for it in items], as_is=True)
        add("processed", [it.image for it in items])
        add("raw page", [items[k].page for k in with_pages], with_pages)
        shots = {k: page_crop(items[k].page) for k in with_pages}
    else:
        add("as given", [it.image for it in items])
        shots = {k: load_image(it.image).convert("L") for k, it in enumerate(items)}
    keys = sorted(shots)
    if with_pages:
        add("1x", [_png(shots[k]) for k in keys], keys)
    for name, make in VARIANTS.items():
        add(name, [make(shots[k]) for k in keys], keys)
    if render_10pt:
        from i2l.data.render import latex_available, render_formulas

        if latex_available():
            result = render_formulas([" ".join(r) for r in refs], backend="latex", font_size=10, progress=False)
            ok = [k for k, img in enumerate(result.images) if img is not None]
            add("10 pt", [_png(result.images[k]) for k in ok], ok)
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """The rows as a Markdown table: BLEU, edit accuracy, exact match, n."""
    lines = ["| input | BLEU | edit accuracy | exact match | n |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['bleu']:.3f} | {r['edit_accuracy']:.3f} | {r['exact_match']:.3f} | {r['n']} |")
    return "\n".join(lines)


__all__ = ["Item", "SCALES", "VARIANTS", "sample_items", "folder_items", "page_crop", "rescaled", "jpeg",
           "dark_mode", "transparent", "score", "ruler_rows", "format_table"]
