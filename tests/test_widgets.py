"""The notebook app, driven headlessly: set the upload or the strokes, click Predict, read the outputs.

These tests run under the installed ipywidgets (8) and, through ``tests/test_widgets_v7.py``, under ipywidgets 7
(Colab's), which sets ``I2L_EXPECT_IPYWIDGETS=7``: so the upload goes through ``InferenceApp.set_upload`` or the
browser's own messages (``set_state``), never through ``upload.value``, which is read-only in 7."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import ipywidgets
import numpy as np
import pytest
from conftest import formula_image, make_checkpoint, png_bytes
from envs import EXPECT_IPYWIDGETS_ENV  # set by tests/test_widgets_v7.py: the major version it must import

from i2l.errors import I2LError
from i2l.infer import Predictor
from i2l.widgets import DrawPad, InferenceApp, strokes_to_image, uploaded_files

IPYWIDGETS_MAJOR = int(ipywidgets.__version__.split(".")[0])


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    return Predictor.from_checkpoint(make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"), device="cpu")


def v8_value(data: bytes, name: str = "f.png") -> tuple[dict, ...]:
    """A FileUpload value as ipywidgets 8 sets it."""
    return ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
             "last_modified": datetime.now(timezone.utc)},)


@pytest.mark.skipif(EXPECT_IPYWIDGETS_ENV not in os.environ,
                    reason=f"only in the environment of tests/test_widgets_v7.py, which sets {EXPECT_IPYWIDGETS_ENV}")
def test_the_expected_ipywidgets_version() -> None:
    """Under tests/test_widgets_v7.py: the ipywidgets 7 of that environment is the one imported, not .venv's 8."""
    expected = os.environ[EXPECT_IPYWIDGETS_ENV]
    assert ipywidgets.__version__.startswith(f"{expected}."), (ipywidgets.__version__, ipywidgets.__file__)


def browser_upload_state(data: bytes, name: str) -> dict:
    """The state the browser's FileUpload sends when the user picks a file (before the kernel's set_state): in
    ipywidgets 8 the ``value`` itself; in 7 ``metadata``, ``data`` and a raised ``_counter``, from which the widget
    computes ``value``. The file's bytes arrive as a memoryview (a message buffer)."""
    modified = int(datetime.now(timezone.utc).timestamp() * 1000)
    if IPYWIDGETS_MAJOR >= 8:
        return {"value": [{"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
                           "last_modified": modified}]}
    return {"_counter": 1, "metadata": [{"name": name, "type": "image/png", "size": len(data),
                                         "lastModified": modified}], "data": [memoryview(data)]}


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
    app.set_upload(png_bytes(img))
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
    app.set_upload(b"")
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
    app.set_upload(png_bytes(formula_image()))
    app.predict_button.click()
    assert app.latex.value
    app.set_upload(data, "bad.png")
    app.predict_button.click()
    assert message in app.status.value and "Error" in app.status.value
    assert app.latex.value == "" and app.candidates.value == "" and app.preview.value == b""
    app.set_upload(png_bytes(formula_image()))
    app.predict_button.click()
    assert app.latex.value and "Error" not in app.status.value


@pytest.mark.parametrize(("image", "message"), [
    (lambda: png_bytes(formula_image().point(lambda _: 255)), "no ink"),
    (lambda: png_bytes(formula_image().convert("RGBA").point(lambda _: 0)), "no ink"),
    (lambda: png_bytes(formula_image().resize((10000, 10000)).convert("1")), "too large"),
])
def test_blank_and_huge_uploads(predictor: Predictor, image, message) -> None:
    app = InferenceApp(predictor, attention=False)
    app.set_upload(image())
    app.predict_button.click()
    assert message in app.status.value


def test_nothing_uploaded_then_set_upload(predictor: Predictor) -> None:
    app = InferenceApp(predictor, attention=False)
    app.predict_button.click()
    assert "no image uploaded" in app.status.value
    data = png_bytes(formula_image())
    app.pad.strokes = [[[10, 10], [20, 20]]]
    assert app.source.value == "drawing"
    app.set_upload(data, "mine.png")
    assert app.source.value == "upload"  # the upload's value changed, as after a real upload
    assert uploaded_files(app.upload.value) == [("mine.png", data)]
    if IPYWIDGETS_MAJOR >= 8:
        assert isinstance(app.upload.value, tuple) and app.upload.value[0]["size"] == len(data)
    else:  # ipywidgets 7: the value the widget computed from what the browser sends
        assert app.upload.value == {"mine.png": {"metadata": app.upload.metadata[0], "content": data}}
        assert app.upload.metadata[0]["name"] == "mine.png" and app.upload.data == [data]
    app.predict_button.click()
    assert app.latex.value == predictor.predict_one(formula_image()).latex
    other = png_bytes(formula_image("y-2"))
    app.set_upload(other, "other.png")  # a second upload replaces the first
    assert uploaded_files(app.upload.value) == [("other.png", other)]
    app.predict_button.click()
    assert app.latex.value == predictor.predict_one(formula_image("y-2")).latex


def test_upload_as_the_browser_sends_it(predictor: Predictor) -> None:
    """The upload through the widget's own message handling (``set_state``), in the format of the installed
    ipywidgets: what the app reads is the file the user picked."""
    app = InferenceApp(predictor, attention=False)
    app.source.value = "drawing"
    img = formula_image("a-b")
    data = png_bytes(img)
    app.upload.set_state(browser_upload_state(data, "picked.png"))
    assert uploaded_files(app.upload.value) == [("picked.png", data)]
    assert app.source.value == "upload"
    app.predict_button.click()
    assert app.latex.value == predictor.predict_one(img).latex and "Error" not in app.status.value


def test_drawpad_as_the_browser_sends_it(predictor: Predictor) -> None:
    """The anywidget pad under the installed ipywidgets: its state carries the canvas code, its MIME bundle points
    the front end at its model, and strokes set by the browser switch the app to the drawing."""
    pad = DrawPad()
    state = pad.get_state()
    assert "function render" in state["_esm"] and state["strokes"] == [] and state["width"] == 480
    bundle = pad._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == pad.model_id
    app = InferenceApp(predictor, attention=False)
    strokes = [[[40, 40], [120, 120]], [[40, 120], [120, 40]]]
    app.pad.set_state({"strokes": strokes})
    assert app.source.value == "drawing" and app.pad.strokes == strokes
    app.predict_button.click()
    expected = predictor.predict_one(strokes_to_image(strokes))
    assert app.latex.value == expected.latex and "Error" not in app.status.value


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
