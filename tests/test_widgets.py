"""The notebook app, driven headlessly: set the upload value or the strokes, click Predict, read the outputs."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from conftest import formula_image, make_checkpoint, png_bytes

from i2l.errors import I2LError
from i2l.infer import Predictor
from i2l.widgets import InferenceApp, strokes_to_image, uploaded_files


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    return Predictor.from_checkpoint(make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"), device="cpu")


def v8_value(data: bytes, name: str = "f.png") -> tuple[dict, ...]:
    """A FileUpload value as ipywidgets 8 sets it."""
    return ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
             "last_modified": datetime.now(timezone.utc)},)


def test_uploaded_files_both_formats() -> None:
    assert uploaded_files(v8_value(b"abc", "a.png")) == [("a.png", b"abc")]
    v7 = {"b.png": {"metadata": {"name": "b.png", "type": "image/png", "size": 3}, "content": b"xyz"}}
    assert uploaded_files(v7) == [("b.png", b"xyz")]
    assert uploaded_files(()) == [] and uploaded_files({}) == []


def test_strokes_to_image() -> None:
    img = strokes_to_image([[[10, 20], [50, 20]], [[70, 30]]], width=100, height=40, line_width=4)
    a = np.asarray(img)
    assert img.size == (100, 40) and img.mode == "L"
    assert a[20, 10:51].max() == 0  # the line
    assert a[30, 70] == 0  # the dot
    assert a[5, 5] == 255 and a[35, 90] == 255
    ys, xs = np.nonzero(a < 128)
    assert ys.min() >= 17 and ys.max() <= 33 and xs.min() >= 7 and xs.max() <= 73
    with pytest.raises(I2LError, match="nothing drawn"):
        strokes_to_image([])
    with pytest.raises(I2LError, match="nothing drawn"):
        strokes_to_image([[]])


def test_upload_and_predict(predictor: Predictor) -> None:
    app = InferenceApp(predictor)
    img = formula_image("a+b")
    app.upload.value = v8_value(png_bytes(img))
    app.beam.value = 3
    app.predict_button.click()
    direct = predictor.predict_one(img, beam=3)
    assert app.latex.value == direct.latex and app.latex.value
    assert direct.latex.split()[0] in app.math.value and app.math.value.startswith("$$")
    assert f"{direct.candidates[0].score:.3f}" in app.candidates.value
    assert app.candidates.value.count("<tr>") == len(direct.candidates) + 1
    assert app.preview.value[:4] == b"\x89PNG"
    assert "image/png" in app.attention.outputs[0]["data"]
    assert "Error" not in app.status.value
    app.upload.value = v8_value(b"")
    app.predict_button.click()
    assert app.attention.outputs == () and "empty" in app.status.value


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"not an image at all", "not an image"),
    (None, "truncated"),  # half a PNG, made in the test
])
def test_bad_uploads_show_an_error_and_the_app_keeps_working(predictor: Predictor, data, message) -> None:
    if data is None:
        full = png_bytes(formula_image().convert("RGB"))
        data = full[: len(full) // 2]
    app = InferenceApp(predictor, attention=False)
    app.upload.value = v8_value(png_bytes(formula_image()))
    app.predict_button.click()
    assert app.latex.value
    app.upload.value = v8_value(data, "bad.png")
    app.predict_button.click()
    assert message in app.status.value and "Error" in app.status.value
    assert app.latex.value == "" and app.candidates.value == "" and app.preview.value == b""
    app.upload.value = v8_value(png_bytes(formula_image()))
    app.predict_button.click()
    assert app.latex.value and "Error" not in app.status.value


@pytest.mark.parametrize(("image", "message"), [
    (lambda: png_bytes(formula_image().point(lambda _: 255)), "no ink"),
    (lambda: png_bytes(formula_image().convert("RGBA").point(lambda _: 0)), "no ink"),
    (lambda: png_bytes(formula_image().resize((10000, 10000)).convert("1")), "too large"),
])
def test_blank_and_huge_uploads(predictor: Predictor, image, message) -> None:
    app = InferenceApp(predictor, attention=False)
    app.upload.value = v8_value(image())
    app.predict_button.click()
    assert message in app.status.value


def test_nothing_uploaded_then_set_upload(predictor: Predictor) -> None:
    app = InferenceApp(predictor, attention=False)
    app.predict_button.click()
    assert "no image uploaded" in app.status.value
    app.set_upload(png_bytes(formula_image()), "mine.png")
    assert uploaded_files(app.upload.value)[0][0] == "mine.png"
    app.predict_button.click()
    assert app.latex.value == predictor.predict_one(formula_image()).latex


def test_drawing_and_predict(predictor: Predictor) -> None:
    app = InferenceApp(predictor, attention=False)
    strokes = [[[40, 40], [80, 120]], [[80, 40], [40, 120]], [[120, 80], [170, 80]], [[145, 55], [145, 105]]]
    app.pad.strokes = strokes
    assert app.source.value == "drawing"
    app.predict_button.click()
    expected = predictor.predict_one(strokes_to_image(strokes, app.pad.width, app.pad.height, app.pad.line_width))
    assert app.latex.value == expected.latex
    app.clear_button.click()
    assert app.pad.strokes == []
    app.predict_button.click()
    assert "nothing drawn" in app.status.value


def test_unexpected_errors_are_shown_not_raised(predictor: Predictor, monkeypatch) -> None:
    app = InferenceApp(predictor, attention=False)
    app.set_upload(png_bytes(formula_image()))
    monkeypatch.setattr(predictor, "predict", lambda *a, **k: 1 / 0)
    app.predict_button.click()
    assert "Unexpected error (ZeroDivisionError)" in app.status.value and app.latex.value == ""
