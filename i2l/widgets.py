"""The notebook app: upload or draw a formula, press Predict, read the LaTeX, the candidates and the attention.

>>> app = InferenceApp(predictor)
>>> app  # in a notebook: the upload button, the drawing pad, the beam slider, Predict and the outputs

Every callback is one call into :class:`i2l.infer.Predictor` (the same as the CLI and the web API). The
widgets are plain attributes, so tests and smoke-mode notebooks drive the app from Python:
``app.set_upload(png_bytes)`` (ipywidgets 8 or 7) or ``app.pad.strokes = [...]``, then
``app.predict_button.click()``, then read ``app.latex.value``. The drawing pad is a tiny anywidget canvas;
:func:`strokes_to_image` turns its strokes into an image.
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as W
import traitlets
from PIL import Image, ImageDraw

from i2l.config import MAX_BEAM, PRETRAINED
from i2l.errors import I2LError
from i2l.infer import PredictionResult, Predictor

_PAD_ESM = """
function render({ model, el }) {
  const canvas = document.createElement("canvas");
  canvas.width = model.get("width");
  canvas.height = model.get("height");
  canvas.className = "i2l-drawpad";
  canvas.style.cssText = "border:1px solid #888;background:white;touch-action:none;cursor:crosshair";
  const ctx = canvas.getContext("2d");
  let strokes = model.get("strokes").map((s) => s.slice());
  let current = null;
  function redraw() {
    ctx.fillStyle = "white";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "black";
    ctx.lineWidth = model.get("line_width");
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const s of strokes) {
      ctx.beginPath();
      s.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      if (s.length === 1) ctx.lineTo(s[0][0] + 0.1, s[0][1]);
      ctx.stroke();
    }
  }
  function pos(e) {
    const r = canvas.getBoundingClientRect();
    return [Math.round(((e.clientX - r.left) * canvas.width) / r.width),
            Math.round(((e.clientY - r.top) * canvas.height) / r.height)];
  }
  canvas.addEventListener("pointerdown", (e) => {
    current = [pos(e)];
    strokes.push(current);
    canvas.setPointerCapture(e.pointerId);
    redraw();
  });
  canvas.addEventListener("pointermove", (e) => { if (current) { current.push(pos(e)); redraw(); } });
  const end = () => {
    if (!current) return;
    current = null;
    model.set("strokes", strokes.map((s) => s.slice()));
    model.save_changes();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  model.on("change:strokes", () => { strokes = model.get("strokes").map((s) => s.slice()); redraw(); });
  redraw();
  el.appendChild(canvas);
}
export default { render };
"""


class DrawPad(anywidget.AnyWidget):
    """A canvas to write on with the mouse or a pen; ``strokes`` is a list of strokes, each [[x, y], ...]."""

    _esm = _PAD_ESM
    strokes = traitlets.List([]).tag(sync=True)
    width = traitlets.Int(480).tag(sync=True)
    height = traitlets.Int(160).tag(sync=True)
    line_width = traitlets.Int(4).tag(sync=True)

    def clear(self) -> None:
        """Erase the drawing."""
        self.strokes = []


def strokes_to_image(strokes: Sequence[Sequence[Sequence[float]]], width: int = 480, height: int = 160,
                     line_width: int = 4) -> Image.Image:
    """Draw ``strokes`` (each a list of (x, y) points in canvas pixels) black on a white 'L' image."""
    points = [[(float(p[0]), float(p[1])) for p in stroke] for stroke in strokes if len(stroke)]
    if not points:
        raise I2LError("nothing drawn yet: write a formula on the pad first")
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    r = line_width / 2
    for stroke in points:
        if len(stroke) > 1:
            draw.line(stroke, fill=0, width=line_width, joint="curve")
        for x, y in stroke:  # round caps and single dots
            draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
    return img


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """(name, bytes) of the files in a FileUpload value: ipywidgets 8 (a tuple of dicts with ``content``)
    or ipywidgets 7, as on Colab (a dict ``{name: {"metadata": ..., "content": bytes}}``)."""
    if not value:
        return []
    if isinstance(value, dict):  # ipywidgets 7
        items: Iterable[tuple[str, Any]] = ((name, f) for name, f in value.items())
    else:  # ipywidgets 8
        items = ((f.get("name", f"upload-{k}"), f) for k, f in enumerate(value))
    return [(str(name), bytes(f["content"])) for name, f in items]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def candidates_html(result: PredictionResult) -> str:
    """The beam's candidates as an HTML table: score, then the LaTeX."""
    rows = "".join(f"<tr><td>{c.score:.3f}</td><td><code>{html.escape(c.latex)}</code></td></tr>"
                   for c in result.candidates)
    return f"<table><tr><th>score</th><th>LaTeX</th></tr>{rows}</table>"


class InferenceApp:
    """Upload or draw, Predict, and see the LaTeX as math and as text, the candidates and the attention."""

    def __init__(self, predictor: Predictor, beam: int = 1, attention: bool = True) -> None:
        self.predictor = predictor
        self.show_attention = attention
        self.result: PredictionResult | None = None
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="Upload image")
        self.pad = DrawPad()
        self.clear_button = W.Button(description="Clear drawing", icon="eraser")
        self.source = W.ToggleButtons(options=["upload", "drawing"], value="upload", description="Read")
        self.beam = W.IntSlider(value=beam, min=1, max=MAX_BEAM, description="Beam width")
        self.predict_button = W.Button(description="Predict", button_style="primary", icon="magic")
        self.status = W.HTML()
        self.preview = W.Image(format="png", layout=W.Layout(max_width="480px"))
        self.math = W.HTMLMath(layout=W.Layout(min_height="2em"))
        self.latex = W.Textarea(placeholder="the LaTeX appears here", layout=W.Layout(width="100%", height="5em"))
        self.candidates = W.HTML()
        self.attention = W.Output()

        self.upload.observe(lambda _: setattr(self.source, "value", "upload"), names="value")
        self.pad.observe(lambda _: setattr(self.source, "value", "drawing"), names="strokes")
        self.clear_button.on_click(lambda _: self.pad.clear())
        self.predict_button.on_click(lambda _: self.predict())
        self.widget = W.VBox([
            W.HBox([self.upload, self.source]),
            self.pad,
            W.HBox([self.clear_button, self.beam, self.predict_button]),
            self.status,
            W.HTML("<b>Prediction</b>"), self.math, self.latex,
            W.HTML("<b>Candidates</b>"), self.candidates,
            W.HTML("<b>What the model saw</b>"), self.preview,
            W.HTML("<b>Attention</b>"), self.attention,
        ])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def set_upload(self, data: bytes, name: str = "image.png") -> None:
        """Put ``data`` into the upload button as if the user had chosen a file (ipywidgets 8 or 7).

        In ipywidgets 8 ``FileUpload.value`` is the tuple of files, and it is set. In ipywidgets 7 (Colab)
        ``value`` is read-only: the browser sends the traits ``metadata`` (one dict per file) and ``data`` (their
        bytes) and raises ``_counter``, and the widget then computes ``value`` = ``{name: {"metadata": ...,
        "content": bytes}}``; this does the same."""
        from datetime import datetime, timezone

        now = datetime.now(timezone.utc)
        if int(W.__version__.split(".")[0]) >= 8:
            self.upload.value = ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
                                  "last_modified": now},)
        else:  # ipywidgets 7 (Colab)
            metadata = {"name": name, "type": "image/png", "size": len(data),
                        "lastModified": int(now.timestamp() * 1000)}
            with self.upload.hold_sync():
                self.upload.metadata = [metadata]
                self.upload.data = [bytes(data)]
                self.upload._counter += 1  # computes ``value``, as the browser's upload does

    def current_image(self) -> bytes | Image.Image:
        """The uploaded file's bytes or the drawing, whichever ``source`` says."""
        if self.source.value == "drawing":
            return strokes_to_image(self.pad.strokes, self.pad.width, self.pad.height, self.pad.line_width)
        files = uploaded_files(self.upload.value)
        if not files:
            raise I2LError("no image uploaded yet: press 'Upload image' (or draw and choose 'drawing')")
        return files[-1][1]

    def predict(self) -> PredictionResult | None:
        """The Predict button: read the current image with the Predictor and fill the outputs."""
        self.status.value = "reading..."
        try:
            result = self.predictor.predict([self.current_image()], beam=self.beam.value)[0]
        except Exception as exc:  # shown in the app, never lost in the kernel's log
            self.clear()
            what = "Error" if isinstance(exc, I2LError) else f"Unexpected error ({type(exc).__name__})"
            self.status.value = f"<span style='color:#b00020'>{what}: {html.escape(str(exc))}</span>"
            return None
        self.show(result)
        return result

    def clear(self) -> None:
        """Empty the output widgets."""
        self.result = None
        self.math.value = self.latex.value = self.candidates.value = self.status.value = ""
        self.preview.value = b""
        self.attention.outputs = ()  # (clear_output() needs a kernel)

    def show(self, result: PredictionResult) -> None:
        """Fill the output widgets with ``result``."""
        self.clear()
        self.result = result
        self.latex.value = result.latex
        self.math.value = f"$${html.escape(result.latex)}$$" if result.latex else "<i>(empty prediction)</i>"
        self.candidates.value = candidates_html(result)
        if result.image is not None:
            self.preview.value = _png(result.image)
        if self.show_attention and result.token_ids:
            try:
                self.attention.append_display_data(self.attention_image(result))
            except Exception as exc:  # the prediction stands without its picture
                self.attention.append_stdout(f"no attention map: {exc}\n")
        model = html.escape(self.predictor.model_name)
        self.status.value = f"{len(result.tokens)} tokens, score {result.score:.3f} (model {model})"

    def attention_image(self, result: PredictionResult) -> Any:
        """The attention maps of ``result`` as an IPython PNG image (via :func:`i2l.plots.evaluation.plot_attention`)."""
        import matplotlib.pyplot as plt
        from IPython.display import Image as IPImage

        from i2l.plots.evaluation import plot_attention

        fig = plot_attention(result.image, result.tokens, self.predictor.attention(result), max_tokens=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        return IPImage(data=buf.getvalue(), format="png")


def build_app(predictor: Predictor | str | Path = PRETRAINED, beam: int = 1) -> InferenceApp:
    """The notebook app for ``predictor``: a :class:`Predictor`, ``"pretrained"`` (the shipped model, the
    default) or the path of a checkpoint (:meth:`Predictor.load`)."""
    if not isinstance(predictor, Predictor):
        predictor = Predictor.load(predictor)
    return InferenceApp(predictor, beam=beam)


__all__ = ["InferenceApp", "DrawPad", "build_app", "strokes_to_image", "uploaded_files", "candidates_html"]
