"""Images of formulas: training and inference images go through this one file.

The bottom layer of the package (it imports nothing from i2l but :mod:`i2l.errors`):

- the official Im2Latex-100K page processing (:func:`process_page`), which reproduces the im2markup pipeline
  pixel for pixel on the real pages: crop to the ink, pad :data:`PAGE_PAD` px, pad to the smallest bucket
  that fits (:data:`BUCKETS`), downsample x :data:`DOWNSAMPLE`. The dataset's raw pages, the synthetic
  renderer and real-world screenshots (:mod:`i2l.preprocess`) all end here, so every image looks alike;
- loading and checking any image source (:func:`load_image`): paths, bytes, PIL images, numpy arrays and
  tensors; empty, truncated, not an image or too many pixels raise :class:`~i2l.errors.I2LError` before
  anything large is decoded;
- batching (:func:`pad_images`, :func:`to_batch`): white padding to a multiple of :data:`PAD_MULTIPLE`
  (the encoder's total stride), the same for training batches and inference.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from i2l.errors import I2LError

# ============================================================================ the official page processing
#: (width, height) buckets of the official preprocessing, before the x2 downsampling; the processed images
#: are these halved (120x50, 160x40, 200x40, ..., 500x100, 800x800).
BUCKETS: list[tuple[int, int]] = [
    (240, 100), (320, 80), (400, 80), (400, 100), (480, 80), (480, 100), (560, 80), (560, 100),
    (640, 80), (640, 100), (720, 80), (720, 100), (720, 120), (720, 200), (800, 100), (800, 320),
    (1000, 200), (1000, 400), (1200, 200), (1600, 200), (1600, 1600),
]
PAGE_PAD = 8  # pixels of white around the ink, before downsampling
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


def process_page(img: Image.Image, pad: int = PAGE_PAD, downsample: int = DOWNSAMPLE) -> Image.Image:
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


# ============================================================================ batches
PAD_MULTIPLE = 16  # batches are padded to a multiple of this (the CNN's total stride)


def padded_side(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`PAD_MULTIPLE`."""
    return math.ceil(n / PAD_MULTIPLE) * PAD_MULTIPLE


def pad_images(images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """White-pad (1, h, w) images into one batch (B, 1, H, W), H and W multiples of 16; sizes (B, 2) = (h, w)."""
    heights = [im.shape[-2] for im in images]
    widths = [im.shape[-1] for im in images]
    batch = torch.ones(len(images), 1, padded_side(max(heights)), padded_side(max(widths)))  # white
    for k, im in enumerate(images):
        batch[k, :, : heights[k], : widths[k]] = im
    return batch, torch.tensor(list(zip(heights, widths)), dtype=torch.long)


# ============================================================================ loading
#: Refuse images with more pixels than this before decoding them (a 10000x10000 PNG of 100 KB decodes
#: to 100-400 MB); :mod:`i2l.preprocess` downscales larger formulas after loading.
MAX_PIXELS = 40_000_000

ImageSource = str | Path | bytes | bytearray | memoryview | Image.Image | np.ndarray | torch.Tensor


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise I2LError(f"the image is empty ({width}x{height} pixels): give an image of a formula")
    if width * height > max_pixels:
        raise I2LError(
            f"the image is too large: {width}x{height} = {width * height / 1e6:.0f} megapixels, the limit is "
            f"{max_pixels / 1e6:.0f}; crop it to the formula or downscale it"
        )


def _open_bytes(data: bytes, name: str, max_pixels: int) -> Image.Image:
    if len(data) == 0:
        raise I2LError(f"{name} is empty (0 bytes): give a PNG or JPEG image of a formula")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_pixels(img.width, img.height, max_pixels)  # header only: nothing decoded yet
            img.load()
    except UnidentifiedImageError:
        head = data[:40]
        hint = " (it looks like text)" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else ""
        raise I2LError(f"{name} is not an image i2l can read{hint}: give a PNG, JPEG, GIF, BMP, TIFF or WebP "
                       "image of a formula") from None
    except Image.DecompressionBombError as exc:
        raise I2LError(f"{name}: {exc}; crop it to the formula or downscale it") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, I2LError):
            raise
        raise I2LError(f"{name} is truncated or corrupt ({exc}): save the image again") from None
    return img


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A PIL image from a path, bytes, a PIL image, a numpy array (H, W[, C]) or a tensor ([1,] H, W)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise I2LError(f"{path}: no such file")
        return _open_bytes(path.read_bytes(), str(path), max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(source), "the uploaded file", max_pixels)
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, max_pixels)
        return source
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().float().numpy()
        if source.ndim == 3 and source.shape[0] in (1, 3, 4):  # (C, H, W) -> (H, W, C)
            source = np.moveaxis(source, 0, -1)
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    raise I2LError(f"cannot read an image from a {type(source).__name__}: give a path, bytes, a PIL image "
                   "or a numpy array")


def _from_array(a: np.ndarray, max_pixels: int) -> Image.Image:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise I2LError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}")
    _check_pixels(a.shape[1], a.shape[0], max_pixels)
    if a.dtype == np.uint16 or (a.dtype.kind in "iu" and a.max(initial=0) > 255):
        a = a.astype(np.float64) / 65535.0 * 255.0
    elif a.dtype.kind == "f" or a.dtype == bool:
        a = a.astype(np.float64)
        if a.max(initial=0) <= 1.0:  # floats in [0, 1], like the dataset tensors
            a = a * 255.0
    a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    return Image.fromarray(a, mode={2: "L", 3: "RGB", 4: "RGBA"}[a.ndim if a.ndim == 2 else a.shape[-1]])


def to_batch(images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad processed images to one batch: images (B, 1, H, W) float, 1.0 = white; sizes (B, 2) = (H, W)."""
    tensors = [torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[None] for im in images]
    return pad_images(tensors)  # (1, h, w) each -> (B, 1, H, W), (B, 2)


__all__ = [
    "BUCKETS", "PAGE_PAD", "DOWNSAMPLE", "to_gray", "bucket_size", "process_page", "PAD_MULTIPLE", "padded_side",
    "pad_images", "MAX_PIXELS", "ImageSource", "load_image", "to_batch",
]
