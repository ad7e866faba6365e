"""Preprocessing of real-world images: modes, backgrounds, scales, and every kind of bad file."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from i2l.errors import I2LError
from i2l.preprocess import (
    PAGE_CANVAS,
    PAGE_STROKE_WIDTH,
    component_boxes,
    glyph_height,
    prepare,
    preprocess,
    stroke_width,
    to_grayscale,
)

FORMULA = r"x ^ { 2 } + \frac { a } { b } = \sqrt { y _ { 1 } }"  # made up for the tests


@pytest.fixture(scope="module")
def page() -> Image.Image:
    """The formula at about 200 dpi ('L', white background): the renderer's processed image upscaled x2."""
    from i2l.data.render import render_formula

    img = render_formula(FORMULA)
    return img.resize((img.width * 2, img.height * 2), Image.LANCZOS)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def ink_box(img: Image.Image) -> tuple[int, int]:
    ys, xs = np.nonzero(np.asarray(img.convert("L")) < 128)
    return int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


@pytest.mark.parametrize("scale", [0.6, 0.75, 1.5, 2.0])  # 0.5x: a processed image, kept as it is
def test_scales_are_normalised_to_the_same_glyph_height(page: Image.Image, scale: float) -> None:
    reference = preprocess(page)
    resized = page.resize((round(page.width * scale), round(page.height * scale)), Image.LANCZOS)
    prepared = prepare(resized)
    assert prepared.scale * scale == pytest.approx(prepare(page).scale, rel=0.15)
    ref_w, ref_h = ink_box(reference)
    w, h = ink_box(prepared.image)
    assert abs(w - ref_w) <= 0.15 * ref_w and abs(h - ref_h) <= 0.15 * ref_h
    ref_g = glyph_height(np.asarray(reference) < 128)
    assert glyph_height(np.asarray(prepared.image) < 128) == pytest.approx(ref_g, rel=0.15)
    assert prepared.image.size == reference.size  # same training bucket
    diff = np.abs(np.asarray(prepared.image, float) - np.asarray(reference, float)).mean()
    assert diff < 20, diff  # nearly the same picture


def ink_crop(img: Image.Image) -> np.ndarray:
    a = np.asarray(img.convert("L"))
    ys, xs = np.nonzero(a < 128)
    return a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def variants(page: Image.Image) -> dict[str, Image.Image]:
    """The same formula in other modes and colours."""
    gray = np.asarray(page)
    ink = 255 - gray  # ink strength
    rgba = np.zeros((*gray.shape, 4), np.uint8)
    rgba[..., 3] = ink  # black ink in the alpha channel, transparent background
    white_on_clear = rgba.copy()
    white_on_clear[..., :3] = 255
    la = np.stack([np.zeros_like(gray), ink], axis=-1)
    return {
        "rgb": page.convert("RGB"),
        "rgba_transparent": Image.fromarray(rgba, "RGBA"),
        "white_ink_on_transparent": Image.fromarray(white_on_clear, "RGBA"),
        "la": Image.fromarray(la, "LA"),
        "palette": page.convert("P"),
        "sixteen_bit": Image.fromarray(gray.astype(np.uint16) * 257),
        "dark_background": Image.fromarray(ink, "L"),
        "coloured": Image.fromarray(np.stack([gray, gray // 2 + 128, np.full_like(gray, 240)], -1), "RGB"),
        "one_bit": page.convert("1"),
    }


@pytest.mark.parametrize("name", list(variants(Image.new("L", (2, 2), 255))))
def test_modes_and_backgrounds_give_the_same_image(page: Image.Image, name: str) -> None:
    img = variants(page)[name]
    reference = preprocess(page)
    out = preprocess(png_bytes(img))  # through the file format too
    assert out.size == reference.size
    diff = np.abs(np.asarray(out, float) - np.asarray(reference, float)).mean()
    assert diff < 25, f"{name}: {diff}"


def test_array_and_tensor_inputs(page: Image.Image) -> None:
    reference = np.asarray(preprocess(page), float)
    gray = np.asarray(page)
    for source in (gray, gray.astype(np.float32) / 255, np.stack([gray] * 3, -1), torch.from_numpy(gray / 255.0)[None]):
        out = np.asarray(preprocess(source), float)
        assert out.shape == reference.shape and np.abs(out - reference).mean() < 5


def test_to_grayscale_inverts_dark_backgrounds() -> None:
    a = np.zeros((20, 30), np.uint8)
    a[5:15, 10:12] = 200  # a light bar on black
    g = to_grayscale(Image.fromarray(a))
    assert g[0, 0] == 255 and g[10, 10] == 0


def test_component_boxes_8_connected() -> None:
    mask = np.zeros((6, 8), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # diagonal: one component
    mask[4:6, 4:8] = True
    boxes = sorted(map(tuple, component_boxes(mask).tolist()))
    assert boxes == [(0, 0, 3, 3), (4, 4, 6, 8)]
    assert len(component_boxes(np.zeros((3, 3), bool))) == 0


# ----------------------------------------------------------------------------- bad input
def test_text_named_png(tmp_path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(I2LError, match="not an image"):
        preprocess(path)


def test_truncated_png(page: Image.Image, tmp_path) -> None:
    data = png_bytes(page.convert("RGB"))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(I2LError, match="truncated or corrupt"):
        preprocess(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(I2LError, match="no such file"):
        preprocess(tmp_path / "nope.png")


def test_huge_image_is_refused_before_decoding() -> None:
    data = png_bytes(Image.new("1", (10000, 10000), 1))  # 100 megapixels in a few kilobytes
    assert len(data) < 200_000
    with pytest.raises(I2LError, match="too large"):
        preprocess(data)


@pytest.mark.parametrize("img", [Image.new("L", (50, 30), 255), Image.new("RGBA", (50, 30), (0, 0, 0, 0)),
                                 Image.new("RGB", (50, 30), (20, 20, 20))])
def test_blank_images(img: Image.Image) -> None:
    with pytest.raises(I2LError, match="no ink found"):
        preprocess(png_bytes(img))


def test_jpeg_screenshot(page: Image.Image) -> None:
    buf = io.BytesIO()
    page.convert("RGB").save(buf, format="JPEG", quality=60)
    reference = np.asarray(preprocess(page), float)
    out = np.asarray(preprocess(buf.getvalue()), float)
    assert out.shape == reference.shape and np.abs(out - reference).mean() < 25


def test_large_canvas_is_reduced_before_the_work(page: Image.Image) -> None:
    big = page.resize((page.width * 8, page.height * 8), Image.LANCZOS)
    canvas = Image.new("L", (6000, 2000), 255)
    canvas.paste(big, (1000, 500))  # a formula in the middle of a large, mostly empty screenshot
    prepared = prepare(canvas)
    assert prepared.source_size == (6000, 2000)
    assert prepared.scale == pytest.approx(prepare(page).scale / 8, rel=0.1)
    ref_w, _ = ink_box(preprocess(page))
    assert abs(ink_box(prepared.image)[0] - ref_w) <= 0.1 * ref_w


def test_the_output_keeps_the_datasets_margin(page: Image.Image) -> None:
    a = np.asarray(preprocess(page))
    assert a[:2].min() >= 240 and a[:, :2].min() >= 240  # the 8 px margin, halved, like the dataset


def test_stroke_width_grows_with_the_scale(page: Image.Image) -> None:
    base = stroke_width(ink_crop(page))
    assert base == pytest.approx(PAGE_STROKE_WIDTH, rel=0.25)  # the renderer's pages look like the dataset's
    for factor in (1.5, 2.0, 3.0):
        big = page.resize((round(page.width * factor), round(page.height * factor)), Image.BICUBIC)
        assert stroke_width(ink_crop(big)) == pytest.approx(base * factor, rel=0.1), factor


def test_a_processed_image_is_kept_as_it_is() -> None:
    from i2l.data.render import render_formula

    rendered = render_formula(FORMULA)  # a processed image, as the training images are
    prepared = prepare(png_bytes(rendered))
    assert prepared.layout == "processed" and prepared.scale == 2
    assert np.array_equal(np.asarray(prepared.image), np.asarray(rendered.convert("L")))
    moved = Image.new("L", rendered.size, 255)
    moved.paste(rendered.crop((2, 2, rendered.width, rendered.height)), (0, 0))  # ink no longer 4 px in
    assert prepare(moved).layout != "processed"


def test_a_large_formula_on_a_bucket_sized_canvas_is_not_taken_for_a_processed_image(page: Image.Image) -> None:
    big = page.resize((page.width * 2, page.height * 2), Image.BICUBIC)  # strokes 4x the processed ones
    a = np.asarray(big.convert("L"))
    ys, xs = np.nonzero(a < 128)
    ink = Image.fromarray(a[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    canvas = Image.new("L", (800, 200), 255)  # the size of a processed bucket (1600 x 400 halved)
    canvas.paste(ink.crop((0, 0, min(ink.width, 790), min(ink.height, 190))), (4, 4))
    prepared = prepare(canvas)
    assert prepared.layout == "stroke" and prepared.scale < 0.7


def test_the_datasets_own_images_read_exactly_as_the_dataset_has_them(shared_data) -> None:
    from i2l.ruler import sample_items

    items = sample_items(shared_data / "im2latex" / "sample", "validate")[:12]
    for item in items:
        processed = np.asarray(Image.open(item.image).convert("L"))
        for source, layout in ((item.image, "processed"), (item.page, "page")):
            prepared = prepare(source)
            assert prepared.layout == layout, (item.name, layout)
            assert np.array_equal(np.asarray(prepared.image), processed), (item.name, layout)
        assert Image.open(item.page).size == PAGE_CANVAS
