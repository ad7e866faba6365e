"""The web API and page: ``i2l serve`` (the shipped model) or ``i2l serve --checkpoint CKPT`` (FastAPI + uvicorn).

- ``POST /predict``: multipart ``file`` (an image) and optional form field ``beam``; answers
  ``{latex, tokens, token_scores, score, candidates: [{latex, score}], error, scale, filename, model}``, where
  ``model`` says which model answered (the shipped model's name, or the checkpoint's path).
- ``GET /health``: ``{status, model, preset, device, vocab_size}``.
- ``GET /``: a page that uploads (or takes a pasted or dropped) image and shows the LaTeX rendered with KaTeX
  beside the raw text (the raw text alone when the CDN cannot be reached).

Bad requests get a 4xx JSON ``{"error": ...}``: an empty upload (400), a file over the size limit (413),
something that is not a usable image (422), a bad beam width (422); an unexpected failure answers a JSON
500 and the server keeps serving. The model runs under the Predictor's
lock, so concurrent requests never mix; preprocessing runs in parallel in the worker threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from i2l.config import MAX_BEAM
from i2l.errors import I2LError
from i2l.infer import PRETRAINED, Predictor


def page_html() -> str:
    """The HTML of the upload page (``i2l/static/index.html``)."""
    return files("i2l").joinpath("static/index.html").read_text(encoding="utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(predictor: Predictor, max_upload_mb: float = 5.0) -> FastAPI:
    """The FastAPI app serving ``predictor``; uploads larger than ``max_upload_mb`` are refused (413)."""
    import i2l

    app = FastAPI(title="i2l", version=i2l.__version__, description="Images of formulas to LaTeX.")
    limit = int(max_upload_mb * 1024 * 1024)
    too_large = f"the upload is larger than the limit of {max_upload_mb:g} MB: send a smaller image"
    html = page_html()

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        length = request.headers.get("content-length")
        if request.method == "POST" and length and length.isdigit() and int(length) > limit + 64 * 1024:
            return _error(413, too_large)  # before the body is read
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
        return _error(422, f"bad request ({problems}): POST a multipart form with an image in the field 'file'")

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"unexpected error ({type(exc).__name__}: {exc}); the server keeps serving")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return html

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": predictor.model_name, "preset": predictor.cfg.name,
                "device": str(predictor.device),
                "vocab_size": len(predictor.vocab)}

    @app.post("/predict")
    def predict(file: UploadFile = File(...), beam: int = Form(1)) -> JSONResponse:  # noqa: B008
        data = file.file.read(limit + 1)
        if len(data) > limit:
            return _error(413, too_large)
        if not data:
            return _error(400, f"the upload {file.filename!r} is empty (0 bytes): send an image of a formula")
        if not 1 <= beam <= MAX_BEAM:
            return _error(422, f"beam must be from 1 to {MAX_BEAM}, got {beam}")
        try:
            result = predictor.predict([data], beam=beam)[0]
        except I2LError as exc:
            return _error(422, str(exc).replace("the uploaded file", repr(file.filename or "the upload")))
        return JSONResponse({**result.to_dict(), "filename": file.filename, "model": predictor.model_name})

    return app


def run(checkpoint: str | Path = PRETRAINED, host: str = "127.0.0.1", port: int = 8000,
        max_upload_mb: float = 5.0, device: str = "auto") -> None:
    """Load ``checkpoint`` (default: the shipped model) and serve it with uvicorn (one process; the model
    behind a lock)."""
    import uvicorn

    predictor = Predictor.load(checkpoint, device=device)
    print(f"i2l: serving {predictor.model_name} ({predictor.cfg.name}, {predictor.device}) on http://{host}:{port}/")
    uvicorn.run(create_app(predictor, max_upload_mb=max_upload_mb), host=host, port=port, log_level="warning")


@contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields the base URL (``port=0``: a free port)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout)


__all__ = ["create_app", "run", "running", "page_html"]
