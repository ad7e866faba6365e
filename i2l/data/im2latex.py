"""Im2Latex-100K: download, parse both layouts (processed and raw) and preprocess raw pages like the dataset.

The preprocessing of :func:`process_page` reproduces the official im2markup pipeline pixel for pixel on the
real pages: crop to the ink, pad 8 px, pad to the smallest bucket that fits (:data:`BUCKETS`), downsample x2.
The synthetic renderer uses the same function, so synthetic images look like the real ones.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from i2l.errors import I2LError

#: (width, height) buckets of the official preprocessing, before the x2 downsampling; the processed images
#: are these halved (120x50, 160x40, 200x40, ..., 500x100, 800x800).
BUCKETS: list[tuple[int, int]] = [
    (240, 100), (320, 80), (400, 80), (400, 100), (480, 80), (480, 100), (560, 80), (560, 100),
    (640, 80), (640, 100), (720, 80), (720, 100), (720, 120), (720, 200), (800, 100), (800, 320),
    (1000, 200), (1000, 400), (1200, 200), (1600, 200), (1600, 1600),
]
PAD = 8  # pixels of white around the ink, before downsampling
DOWNSAMPLE = 2


def to_gray(img: Image.Image) -> Image.Image:
    """Grayscale ('L') version of ``img``, white background.

    Palette pages (the official raw PNGs) convert like the official pipeline did (palette colour, alpha
    ignored: index 0 is white); images with an alpha channel are composited over white.
    """
    if img.mode == "L":
        return img
    if img.mode == "P":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Palette images with Transparency ..."
            return img.convert("L")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("L")
    return img.convert("L")


def bucket_size(width: int, height: int) -> tuple[int, int]:
    """The smallest bucket (in :data:`BUCKETS` order) holding ``width x height``; the size itself if none does."""
    for bw, bh in BUCKETS:
        if width <= bw and height <= bh:
            return bw, bh
    return width, height


def process_page(img: Image.Image, pad: int = PAD, downsample: int = DOWNSAMPLE) -> Image.Image:
    """Crop a rendered page to its ink, pad ``pad`` px, pad to a bucket, downsample; returns an 'L' image.

    Identical to the official processed images for the official raw pages. Raises :class:`I2LError` for a
    page without ink (nothing to crop).
    """
    gray = to_gray(img)
    pixels = np.asarray(gray)  # (H, W) uint8
    ys, xs = np.nonzero(pixels != 255)
    if len(ys) == 0:
        raise I2LError("the page is blank (no ink to crop): check that the formula rendered")
    ink = gray.crop((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    width, height = bucket_size(ink.width + 2 * pad, ink.height + 2 * pad)
    canvas = Image.new("L", (width, height), 255)
    canvas.paste(ink, (pad, pad))  # the ink sits at the top left, like the official images
    if downsample > 1:
        canvas = canvas.resize((width // downsample, height // downsample), Image.LANCZOS)
    return canvas
