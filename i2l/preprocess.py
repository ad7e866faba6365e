"""Real-world images to model inputs: any image mode, any background, any scale.

Screenshots come in every shape: RGBA with a transparent background, palettes, 16-bit greyscale, white ink
on a dark theme, a formula typeset four times larger than the training images. :func:`preprocess` turns
each of them into an image that looks like the training images:

1. load and check (:func:`i2l.images.load_image`): paths, bytes, PIL images, numpy arrays; empty, truncated,
   not an image or too many pixels raise :class:`~i2l.errors.I2LError` before anything large is decoded;
2. greyscale on white (:func:`to_grayscale`): transparency over white (or black, for light ink on a
   transparent background), dark backgrounds inverted, levels stretched so ink is black, background 255;
3. crop to the ink and rescale so that the typical glyph height (median height of the connected ink
   components, see :func:`glyph_height`) equals the one of the training pages (:data:`PAGE_GLYPH_HEIGHT`,
   measured on the real 200 dpi Im2Latex-100K pages);
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
from i2l.images import MAX_PIXELS, ImageSource, load_image, process_page

#: Median glyph height (px) on the real 200 dpi Im2Latex-100K pages, measured with :func:`measure_glyph_height`
#: (``python -m i2l.preprocess /path/to/raw/images`` prints it); the processed images are half that.
PAGE_GLYPH_HEIGHT = 15.0
#: Loading refuses more than :data:`i2l.images.MAX_PIXELS`; formulas whose longer side exceeds this are then
#: downscaled to it before the work.
WORK_MAX_SIDE = 4000
#: Side limit of a normalised page (before the x2 downsampling): 1600 is the largest training bucket.
PAGE_MAX_SIDE = 3200
MIN_CONTRAST = 40  # grey levels between background and the darkest ink below which there is no ink


@dataclass
class Prepared:
    """A processed image with what preprocessing measured: glyph height (px, input scale) and scale used."""

    image: Image.Image  # 'L', processed like the training images
    glyph_height: float | None
    scale: float
    source_size: tuple[int, int]  # (width, height) of the input


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
    """(H, W) uint8: dark ink on a 255 background, levels stretched; raises I2LError when there is no ink."""
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
    out[out > 235] = 255  # paper texture, JPEG noise
    return out.round().astype(np.uint8)


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


# ----------------------------------------------------------------------------- the pipeline
def prepare(source: ImageSource, page_glyph_height: float = PAGE_GLYPH_HEIGHT, rescale: bool = True,
            max_pixels: int = MAX_PIXELS) -> Prepared:
    """Load, greyscale, crop, rescale to the training glyph height and process like the dataset."""
    img = load_image(source, max_pixels=max_pixels)
    source_size = img.size
    reduce = 1
    if max(img.size) > WORK_MAX_SIDE:  # bound the work; the glyph height is measured after this anyway
        reduce = int(np.ceil(max(img.size) / WORK_MAX_SIDE))
        img = img.reduce(reduce) if img.mode in ("L", "RGB", "RGBA", "LA", "I", "F") else \
            img.convert("RGBA").reduce(reduce)
    gray = to_grayscale(img)  # (H, W) uint8
    mask = gray < 128
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise I2LError("no ink found: the image has no dark strokes on a light background (or the reverse)")
    crop = gray[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    height = measure_glyph_height(crop)
    scale = page_glyph_height / height if (rescale and height) else 1.0
    h, w = crop.shape
    scale = min(scale, PAGE_MAX_SIDE / max(h, w))
    page = Image.fromarray(crop, mode="L")
    if abs(scale - 1.0) > 1e-3:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        page = page.resize(size, Image.LANCZOS if scale < 1 else Image.BICUBIC)
        page = Image.fromarray(np.where(np.asarray(page) > 250, 255, np.asarray(page)).astype(np.uint8), "L")
    if (np.asarray(page) == 255).all():
        raise I2LError("no ink found after rescaling: the strokes are too thin or faint; give a sharper image")
    return Prepared(image=process_page(page), glyph_height=None if height is None else height * reduce,
                    scale=scale / reduce, source_size=source_size)


def preprocess(source: ImageSource, page_glyph_height: float = PAGE_GLYPH_HEIGHT, rescale: bool = True,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The processed 'L' image for ``source`` (see :func:`prepare` and the module docstring)."""
    return prepare(source, page_glyph_height, rescale, max_pixels).image


def _calibrate(folder: str) -> dict[str, Any]:  # pragma: no cover - a one-off measurement
    """Glyph heights of the raw 200 dpi pages in ``folder`` (median is :data:`PAGE_GLYPH_HEIGHT`)."""
    heights = []
    for path in sorted(Path(folder).glob("*.png")):
        try:
            gray = to_grayscale(load_image(path))
        except I2LError:  # a few official pages are blank (failed renders)
            continue
        ys, xs = np.nonzero(gray < 128)
        value = measure_glyph_height(gray[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        if value:
            heights.append(value)
    a = np.array(heights)
    return {"n": len(a), "median": float(np.median(a)), "p10": float(np.percentile(a, 10)),
            "p90": float(np.percentile(a, 90))}


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(_calibrate(sys.argv[1]))
