"""Tests of i2l.images: the official page processing, loading and checking every kind of source, white-padded
batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import page
from PIL import Image, ImageDraw

from i2l.errors import I2LError
from i2l.images import (
    BUCKETS,
    PAD_MULTIPLE,
    PAGE_PAD,
    bucket_size,
    load_image,
    pad_images,
    padded_side,
    process_page,
    to_batch,
)


# ============================================================================ the official page processing
def test_buckets_halved_are_the_processed_sizes():
    halved = {(w // 2, h // 2) for w, h in BUCKETS}
    assert {(200, 40), (320, 40), (280, 50), (400, 50), (500, 100), (120, 50)} <= halved
    assert bucket_size(100, 30) == (240, 100)
    assert bucket_size(300, 60) == (320, 80)
    assert bucket_size(5000, 30) == (5000, 30)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_process_page_crops_pads_buckets_and_downsamples(mode):
    out = process_page(page(mode=mode))  # ink 121 x 41 -> 137 x 57 padded -> bucket 240 x 100 -> 120 x 50
    assert out.mode == "L" and out.size == (120, 50)
    pixels = np.asarray(out)
    assert pixels[:3].min() >= 250 and pixels[:, :3].min() >= 250  # 8 px (4 after downsampling) of white
    assert pixels[6:22, 6:62].max() < 30  # the ink, at the top left
    assert pixels[30:, :].min() >= 250 and pixels[:, 70:].min() >= 250  # white bucket padding (Lanczos ringing)


def test_process_page_transparent_page():
    rgba = Image.new("RGBA", (400, 300), (0, 0, 0, 0))  # transparent black, like the raw pages
    ImageDraw.Draw(rgba).rectangle((100, 100, 150, 120), fill=(0, 0, 0, 255))
    out = np.asarray(process_page(rgba))
    assert out.shape == (50, 120) and out[0, 0] == 255 and out[10, 10] < 30


def test_process_page_blank_raises():
    with pytest.raises(I2LError, match="blank"):
        process_page(Image.new("L", (100, 100), 255))


def test_process_page_reproduces_the_official_images(shared_data):
    sample = shared_data / "im2latex" / "sample"
    names = sorted(p.stem for p in (sample / "processed" / "images_processed").glob("*.png"))[:12]
    for name in names:
        ours = np.asarray(process_page(Image.open(sample / "raw" / "images" / f"{name}.png")))
        theirs = np.asarray(Image.open(sample / "processed" / "images_processed" / f"{name}.png").convert("L"))
        assert ours.shape == theirs.shape
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_process_page_pad_is_the_page_margin():
    out = process_page(page(), downsample=1)  # ink 121 x 41 at the top left, PAGE_PAD px of white around it
    pixels = np.asarray(out)
    assert out.size == (240, 100)
    assert pixels[:PAGE_PAD].min() == 255 and pixels[:, :PAGE_PAD].min() == 255
    assert pixels[PAGE_PAD, PAGE_PAD] == 0 and pixels[PAGE_PAD + 40, PAGE_PAD + 120] == 0


# ============================================================================ loading
def test_empty_file(tmp_path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(I2LError, match="empty"):
        load_image(path)


def test_unsupported_source() -> None:
    with pytest.raises(I2LError, match="cannot read an image"):
        load_image(12)  # type: ignore[arg-type]


# ============================================================================ batches
def test_pad_images_pads_white_to_multiples_of_the_stride():
    assert PAD_MULTIPLE == 16 and [padded_side(n) for n in (1, 16, 17, 40)] == [16, 16, 32, 48]
    batch, sizes = pad_images([torch.zeros(1, 20, 30), torch.zeros(1, 40, 50)])
    assert batch.shape == (2, 1, 48, 64) and sizes.tolist() == [[20, 30], [40, 50]]
    assert batch[0, 0, :20, :30].eq(0).all() and batch[0, 0, 20:].eq(1).all() and batch[0, 0, :, 30:].eq(1).all()


def test_to_batch_pads_white_to_the_stride() -> None:
    images = [Image.new("L", (40, 20), 0), Image.new("L", (70, 33), 0)]
    batch, sizes = to_batch(images)
    assert batch.shape == (2, 1, 48, 80)
    assert sizes.tolist() == [[20, 40], [33, 70]]
    assert batch[0, 0, :20, :40].max() == 0 and batch[0, 0, 20:].min() == 1 and batch[0, 0, :, 40:].min() == 1
