"""Real-world images to model inputs: any image mode, any background, any scale.

Screenshots come in every shape: RGBA with a transparent background, palettes, 16-bit greyscale, white ink
on a dark theme, a formula typeset four times larger than the training images. :func:`preprocess` turns
each of them into an image that looks like the training images:

1. load and check (:func:`i2l.images.load_image`): paths, bytes, PIL images, numpy arrays; empty, truncated,
   not an image or too many pixels raise :class:`~i2l.errors.I2LError` before anything large is decoded;
2. greyscale on white (:func:`to_grayscale`): transparency over white (or black, for light ink on a
   transparent background), dark backgrounds inverted, levels stretched so ink is black, background 255;
3. find the scale (:func:`page_scale`): an image laid out like the dataset's (a processed image, or a page of
   the raw layout's canvas) is at a known scale and is not resampled at all; for any other image the scale
   comes from the stroke width when the strokes are wide enough to measure (formulas from 0.3x the size of
   the training pages up: :func:`stroke_width`, within about 5% from 0.7x up, 10% at 0.5x), else from the
   typical glyph height (median
   height of the connected ink components, :func:`glyph_height`, within about 30%), both calibrated on the
   real 200 dpi Im2Latex-100K pages (:data:`PAGE_STROKE_WIDTH`, :data:`PAGE_GLYPH_HEIGHT`). Both assume the
   training images' stroke weight: a thinner rendering reads as a smaller one;
4. the official pipeline (:func:`i2l.images.process_page`): pad 8 px, pad to a bucket, downsample x2.

Loading, the page processing and batching (:func:`i2l.images.to_batch`) live in :mod:`i2l.images`, shared
with the training images; this module keeps the real-world normalisation (steps 2 and 3).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from i2l.errors import I2LError
from i2l.images import (
    BUCKETS,
    DOWNSAMPLE,
    MAX_PIXELS,
    PAGE_PAD,
    ImageSource,
    load_image,
    process_page,
    to_gray,
)

#: Median glyph height (px, :func:`measure_glyph_height`) of the real 200 dpi Im2Latex-100K pages converted like
#: the official processed images (palette colour, alpha ignored: bolder than an alpha composite), measured by
#: ``python -m i2l.preprocess /path/to/raw/images``; it spreads by about 30% with the formula's symbols.
PAGE_GLYPH_HEIGHT = 22.0
#: Stroke width (px, :func:`stroke_width`) of the same pages: 1.94 per unit of scale from 0.7x to 3x, spread 5%.
PAGE_STROKE_WIDTH = 1.94
#: Below 0.7x strokes are about a pixel wide and the measure flattens: (median stroke width, scale) of the
#: same pages resized by 0.3x to 1x (Lanczos), interpolated; under :data:`MIN_STROKE_WIDTH` (about 0.3x, where
#: it spreads as much as the glyph height) the glyph height decides.
STROKE_CALIBRATION = ((0.883, 0.3), (0.951, 0.4), (1.071, 0.5), (1.238, 0.6), (1.389, 0.7), (1.942, 1.0))
MIN_STROKE_WIDTH = 0.9
#: Stroke width is trusted unless the glyph height disagrees by more than this factor (2.3 of its standard
#: deviations): dithered, speckled or hollow ink misleads the stroke width.
MAX_DISAGREEMENT = 2.0
#: Sizes of the processed layout (the training buckets after the x2 downsampling) and where its ink begins.
PROCESSED_SIZES = frozenset((w // DOWNSAMPLE, h // DOWNSAMPLE) for w, h in BUCKETS)
PROCESSED_INK_OFFSET = range(PAGE_PAD // DOWNSAMPLE - 1, PAGE_PAD // DOWNSAMPLE + 2)
#: The raw layout's canvas: an A4 page at 200 dpi, the formula typeset at the training scale.
PAGE_CANVAS = (1654, 2339)
#: Loading refuses more than :data:`i2l.images.MAX_PIXELS`; formulas whose longer side exceeds this are then
#: downscaled to it before the work.
WORK_MAX_SIDE = 4000
#: Side limit of a normalised page (before the x2 downsampling): 1600 is the largest training bucket.
PAGE_MAX_SIDE = 3200
MIN_CONTRAST = 40  # grey levels between background and the darkest ink below which there is no ink
PAPER_LEVEL = 235  # lighter than this is background: paper texture, JPEG noise


@dataclass
class Prepared:
    """A processed image with what preprocessing measured: glyph height (px, input scale) and scale used.

    ``scale`` is the factor from the input to the 200 dpi page scale (the processed image is half of that);
    ``layout`` says how it was found: "processed" (already a processed image: kept as it is, scale 2),
    "page" (the raw layout's page canvas: scale 1), "stroke" or "glyph" (measured), or "given" (no rescaling,
    as asked, or the dataset's as-is path).
    """

    image: Image.Image  # 'L', processed like the training images
    glyph_height: float | None
    scale: float
    source_size: tuple[int, int]  # (width, height) of the input
    layout: str


# ----------------------------------------------------------------------------- greyscale
def _luminance(img: Image.Image) -> np.ndarray:
    """(H, W) float64 in [0, 255] for any mode without alpha (16-bit and float modes rescaled)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = a.max(initial=0)
        if img.mode == "F" and top <= 1.0:
            return a * 255.0
        return a / 65535.0 * 255.0 if top > 255 else a
    return np.asarray(img.convert("L"), dtype=np.float64)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info


def to_grayscale(img: Image.Image) -> np.ndarray:
    """(H, W) uint8: dark ink on a 255 background, levels stretched; raises I2LError when there is no ink.

    The levels are kept as they are (a processed image comes back unchanged); :func:`clean_levels` then drops
    paper texture and JPEG noise.
    """
    if _has_alpha(img):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Palette images with Transparency ..."
            rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
        lum = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float64)
        on_white = lum * alpha + 255.0 * (1 - alpha)
        on_black = lum * alpha
        # light ink on a transparent background vanishes over white: keep the composite with more contrast
        gray = on_white if np.ptp(on_white) >= np.ptp(on_black) else on_black
    else:
        gray = _luminance(img)
    if gray.size == 0 or np.ptp(gray) < MIN_CONTRAST:
        raise I2LError("no ink found: the image is blank (all one colour or fully transparent); give an image "
                       "of a formula")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) < 128:  # dark background (dark theme, chalkboard): invert
        gray = 255.0 - gray
        border = 255.0 - border
    background = float(np.median(border))
    ink = float(gray.min())
    if background - ink < MIN_CONTRAST:
        raise I2LError("no ink found: nothing darker than the background; give an image of a formula")
    out = np.clip((gray - ink) / (background - ink) * 255.0, 0, 255)
    return out.round().astype(np.uint8)


def clean_levels(gray: np.ndarray) -> np.ndarray:
    """``gray`` with levels above :data:`PAPER_LEVEL` made background (paper texture, JPEG noise)."""
    return np.where(gray > PAPER_LEVEL, 255, gray).astype(np.uint8)


# ----------------------------------------------------------------------------- glyph height
def component_boxes(mask: np.ndarray) -> np.ndarray:
    """(N, 4) int boxes ``top, left, bottom, right`` (exclusive) of the 8-connected components of ``mask``."""
    H, W = mask.shape
    padded = np.zeros((H, W + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    rows, starts = np.nonzero(d == 1)  # runs of ink in row-major order
    _, ends = np.nonzero(d == -1)  # exclusive ends, paired with the starts
    n = len(rows)
    if n == 0:
        return np.zeros((0, 4), dtype=np.int64)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_start = np.searchsorted(rows, np.arange(H + 1)).tolist()
    s, e = starts.tolist(), ends.tolist()
    for y in range(1, H):
        i, i_end, j, j_end = row_start[y - 1], row_start[y], row_start[y], row_start[y + 1]
        while i < i_end and j < j_end:
            if s[i] <= e[j] and s[j] <= e[i]:  # overlapping or diagonal neighbours
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[ri] = rj
            if e[i] < e[j]:
                i += 1
            else:
                j += 1
    _, labels = np.unique(np.array([find(i) for i in range(n)]), return_inverse=True)
    m = labels.max() + 1
    top = np.full(m, H)
    left = np.full(m, W)
    bottom = np.zeros(m, dtype=np.int64)
    right = np.zeros(m, dtype=np.int64)
    np.minimum.at(top, labels, rows)
    np.maximum.at(bottom, labels, rows + 1)
    np.minimum.at(left, labels, starts)
    np.maximum.at(right, labels, ends)
    return np.stack([top, left, bottom, right], axis=1)


def glyph_height(mask: np.ndarray) -> float | None:
    """Typical glyph height in px: the median height of the ink components, bars and dots left out.

    Bars (fraction lines, minus, equals: wider than 2.5x their height) have the stroke's height, dots and
    commas are under 30% of the tall glyphs: both are dropped. ``None`` when nothing is left (a lone bar).
    """
    boxes = component_boxes(mask)
    if len(boxes) == 0:
        return None
    h = (boxes[:, 2] - boxes[:, 0]).astype(np.float64)
    w = (boxes[:, 3] - boxes[:, 1]).astype(np.float64)
    h = h[(w <= 2.5 * h) & (h >= 2)]
    if len(h) == 0:
        return None
    h = h[h >= 0.3 * np.percentile(h, 90)]
    return float(np.median(h))


def measure_glyph_height(gray: np.ndarray, min_height: float = 24.0) -> float | None:
    """:func:`glyph_height` of a greyscale crop (ink < 128), measured on a bicubic upsampling when the glyphs
    are under ``min_height`` px: the threshold then falls between pixels, so small glyphs are measured to a
    fraction of a pixel (1 px is 12% of a training glyph)."""
    height = glyph_height(gray < 128)
    if height and height < min_height:
        k = min(4, int(np.ceil(min_height / height)))
        up = Image.fromarray(gray, mode="L").resize((gray.shape[1] * k, gray.shape[0] * k), Image.BICUBIC)
        finer = glyph_height(np.asarray(up) < 128)
        height = finer / k if finer else height
    return height


def stroke_width(gray: np.ndarray) -> float:
    """Mean stroke width in px of a greyscale crop: twice the ink (darkness summed, so anti-aliased edges count
    to a fraction of a pixel) over the length of the ink's outline (ink < 128). Unlike the glyph height it does
    not depend on which symbols a formula has, but it saturates for strokes under about 1.2 px."""
    ink = (255.0 - gray.astype(np.float64)) / 255.0
    mask = gray < 128
    outline = np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
    return float(2.0 * ink.sum() / max(outline, 1))


def known_layout(gray: np.ndarray, width: float) -> str | None:
    """"processed" or "page" when ``gray`` (the whole image) is laid out like the dataset's images, else None.

    A processed image has a bucket's size after downsampling and its ink begins 4 px from the top left; a
    raw page has the raw layout's canvas. The stroke width ``width`` of the ink must agree (processed images
    read at most 1.3 px, pages 1.8 to 2.1 px), so that a screenshot of another scale that happens to match is
    not taken for one.
    """
    h, w = gray.shape
    if (w, h) in PROCESSED_SIZES and width < 0.7 * PAGE_STROKE_WIDTH:
        ys, xs = np.nonzero(gray < 128)
        if ys.min() in PROCESSED_INK_OFFSET and xs.min() in PROCESSED_INK_OFFSET:
            return "processed"
    if (w, h) == PAGE_CANVAS and 0.75 * PAGE_STROKE_WIDTH <= width <= 1.4 * PAGE_STROKE_WIDTH:
        return "page"
    return None


def is_dithered(gray: np.ndarray) -> bool:
    """Grey levels drawn as scattered dots (a dithered 1-bit image): over 5% of the ink pixels (< 128) have no
    ink above, below, left or right. Crisp ink, anti-aliased or binary like the dataset's pages, has almost none."""
    mask = np.pad(gray < 128, 1)
    core = mask[1:-1, 1:-1]
    alone = core & ~mask[:-2, 1:-1] & ~mask[2:, 1:-1] & ~mask[1:-1, :-2] & ~mask[1:-1, 2:]
    return np.count_nonzero(alone) > 0.05 * max(np.count_nonzero(core), 1)


def page_scale(width: float | None, height: float | None, page_glyph_height: float = PAGE_GLYPH_HEIGHT
               ) -> tuple[float, str]:
    """(scale to the training page, "stroke" or "glyph") of a crop of unknown scale whose stroke width is
    ``width`` and glyph height ``height`` (see the module docstring).

    ``page_glyph_height`` other than :data:`PAGE_GLYPH_HEIGHT` asks for that much larger glyphs (multi-scale
    reading), whichever measure decides. ``width`` None: the stroke width is not to be trusted (dithered ink).
    """
    factor = page_glyph_height / PAGE_GLYPH_HEIGHT
    by_glyph = page_glyph_height / height if height else None
    if width is not None and width >= MIN_STROKE_WIDTH:
        widths, sizes = zip(*STROKE_CALIBRATION)
        size = width / PAGE_STROKE_WIDTH if width > widths[-1] else float(np.interp(width, widths, sizes))
        by_stroke = factor / size
        if by_glyph is None or 1 / MAX_DISAGREEMENT <= by_stroke / by_glyph <= MAX_DISAGREEMENT:
            return by_stroke, "stroke"
    return (by_glyph or 1.0), "glyph"


# ----------------------------------------------------------------------------- the pipeline
def prepare(source: ImageSource, page_glyph_height: float = PAGE_GLYPH_HEIGHT, rescale: bool = True,
            max_pixels: int = MAX_PIXELS) -> Prepared:
    """Load, greyscale, crop, bring to the training scale and process like the dataset (module docstring)."""
    img = load_image(source, max_pixels=max_pixels)
    source_size = img.size
    reduce = 1
    if max(img.size) > WORK_MAX_SIDE:  # bound the work; the glyph height is measured after this anyway
        reduce = int(np.ceil(max(img.size) / WORK_MAX_SIDE))
        img = img.reduce(reduce) if img.mode in ("L", "RGB", "RGBA", "LA", "I", "F") else \
            img.convert("RGBA").reduce(reduce)
    if img.size == PAGE_CANVAS:  # a page of the raw layout: converted like the official processed images
        img = to_gray(img)
    levels = to_grayscale(img)  # (H, W) uint8
    mask = levels < 128
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise I2LError("no ink found: the image has no dark strokes on a light background (or the reverse)")
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    crop = clean_levels(levels[box])
    height = measure_glyph_height(crop)
    width = stroke_width(crop)
    factor = page_glyph_height / PAGE_GLYPH_HEIGHT
    layout = known_layout(levels, width) if reduce == 1 and rescale else None
    glyph = None if height is None else height * reduce
    exact = abs(factor - 1.0) <= 1e-3
    if layout == "processed" and exact:  # already a processed image: as it is
        return Prepared(image=Image.fromarray(levels, mode="L"), glyph_height=glyph, scale=DOWNSAMPLE,
                        source_size=source_size, layout=layout)
    if layout == "page" and exact:  # the raw layout's page: processed exactly like the dataset did
        return Prepared(image=process_page(img), glyph_height=glyph, scale=1.0,
                        source_size=source_size, layout=layout)
    if not rescale:
        scale, layout = 1.0, "given"
    elif layout == "processed":
        scale, crop = DOWNSAMPLE * factor, levels[box]
    elif layout == "page":
        scale, crop = factor, levels[box]
    else:
        scale, layout = page_scale(None if is_dithered(crop) else width, height, page_glyph_height)
    h, w = crop.shape
    scale = min(scale, PAGE_MAX_SIDE / max(h, w))
    page = Image.fromarray(crop, mode="L")
    if abs(scale - 1.0) > 1e-3:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        page = page.resize(size, Image.LANCZOS if scale < 1 else Image.BICUBIC)
        page = Image.fromarray(np.where(np.asarray(page) > 250, 255, np.asarray(page)).astype(np.uint8), "L")
    if (np.asarray(page) == 255).all():
        raise I2LError("no ink found after rescaling: the strokes are too thin or faint; give a sharper image")
    return Prepared(image=process_page(page), glyph_height=glyph, scale=scale / reduce, source_size=source_size,
                    layout=layout)


def preprocess(source: ImageSource, page_glyph_height: float = PAGE_GLYPH_HEIGHT, rescale: bool = True,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The processed 'L' image for ``source`` (see :func:`prepare` and the module docstring)."""
    return prepare(source, page_glyph_height, rescale, max_pixels).image


def _calibrate(folder: str) -> dict[str, Any]:  # pragma: no cover - a one-off measurement
    """Glyph heights and stroke widths of the raw 200 dpi pages in ``folder`` (:data:`PAGE_GLYPH_HEIGHT`,
    :data:`PAGE_STROKE_WIDTH`)."""
    heights, widths = [], []
    for path in sorted(Path(folder).glob("*.png")):
        try:
            gray = clean_levels(to_grayscale(to_gray(load_image(path))))  # converted like the official images
        except I2LError:  # a few official pages are blank (failed renders)
            continue
        ys, xs = np.nonzero(gray < 128)
        crop = gray[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        value = measure_glyph_height(crop)
        if value:
            heights.append(value)
            widths.append(stroke_width(crop))
    out: dict[str, Any] = {"n": len(heights)}
    for name, a in (("glyph_height", np.array(heights)), ("stroke_width", np.array(widths))):
        out[name] = {"median": float(np.median(a)), "p10": float(np.percentile(a, 10)),
                     "p90": float(np.percentile(a, 90))}
    return out


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(_calibrate(sys.argv[1]))
