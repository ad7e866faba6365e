"""The web API: answers, the page, every kind of bad upload, and 200 concurrent requests on a live server."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import formula_image, make_checkpoint, png_bytes
from fastapi.testclient import TestClient
from PIL import Image

from i2l.infer import Predictor
from i2l.serve import create_app, running


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    return Predictor.from_checkpoint(make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"), device="cpu")


@pytest.fixture(scope="module")
def client(predictor: Predictor) -> TestClient:
    return TestClient(create_app(predictor, max_upload_mb=1))


def post(client, data: bytes, name: str = "f.png", **form):
    return client.post("/predict", files={"file": (name, data, "image/png")}, data=form)


def test_health_and_page(client: TestClient, predictor: Predictor) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["preset"] == "smoke" and health["vocab_size"] > 4
    assert health["model"] == predictor.model_name and health["model"].endswith("tiny.ckpt")
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'type="file"' in page.text and "katex" in page.text and 'id="latex"' in page.text


def test_predict_matches_the_predictor(client: TestClient, predictor: Predictor) -> None:
    img = formula_image("a+b")
    answer = post(client, png_bytes(img), beam="3")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    direct = predictor.predict_one(img, beam=3)
    assert body["latex"] == direct.latex and body["tokens"] == direct.tokens
    assert [c["latex"] for c in body["candidates"]] == [c.latex for c in direct.candidates]
    assert body["error"] is None and body["filename"] == "f.png"


def huge_png() -> bytes:
    return png_bytes(Image.new("1", (10000, 10000), 1))


def truncated_png() -> bytes:
    data = png_bytes(formula_image().convert("RGB"))
    return data[: len(data) // 2]


def blank_png(mode: str) -> bytes:
    return png_bytes(Image.new(mode, (60, 30), 255 if mode == "L" else (0, 0, 0, 0)))


@pytest.mark.parametrize(("name", "make", "status", "message"), [
    ("empty", lambda: b"", 400, "empty"),
    ("text", lambda: b"just some notes\n", 422, "not an image"),
    ("truncated", truncated_png, 422, "truncated"),
    ("huge", huge_png, 422, "too large"),
    ("white", lambda: blank_png("L"), 422, "no ink"),
    ("transparent", lambda: blank_png("RGBA"), 422, "no ink"),
    ("over_limit", lambda: b"\x89PNG" + bytes(2 * 1024 * 1024), 413, "limit"),
    ("just_over_limit", lambda: b"\x89PNG" + bytes(1024 * 1024), 413, "limit"),  # past the header check
])
def test_bad_uploads_get_4xx_json_and_the_server_keeps_serving(client, name, make, status, message) -> None:
    answer = post(client, make(), name=f"{name}.png")
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert post(client, png_bytes(formula_image())).status_code == 200


def test_bad_requests(client: TestClient) -> None:
    assert client.post("/predict").status_code == 422
    assert "file" in client.post("/predict").json()["error"]
    assert post(client, png_bytes(formula_image()), beam="50").status_code == 422
    assert post(client, png_bytes(formula_image()), beam="x").status_code == 422


def test_unexpected_errors_are_json_500s(predictor: Predictor, monkeypatch) -> None:
    client = TestClient(create_app(predictor), raise_server_exceptions=False)
    good = png_bytes(formula_image())
    original = predictor.predict
    monkeypatch.setattr(predictor, "predict", lambda *a, **k: 1 / 0)
    answer = post(client, good)
    assert answer.status_code == 500 and "ZeroDivisionError" in answer.json()["error"]
    monkeypatch.setattr(predictor, "predict", original)
    assert post(client, good).status_code == 200


def test_200_concurrent_requests_on_a_live_server(predictor: Predictor) -> None:
    images = [formula_image(t, size=s) for t, s in [("x+1", 28), ("a=b", 36), ("y^2", 22), ("k-7", 30)]]
    uploads = [png_bytes(im) for im in images]
    # an answer is its LaTeX, its score and the scale preprocessing found: the untrained test model may read
    # several images alike, but the images are drawn at different sizes, so no two answers are the same
    expected = [(r.latex, round(r.score, 4), round(r.scale, 4))
                for r in (predictor.predict_one(im) for im in images)]
    assert len(set(expected)) == len(images), "the test images should get different answers"

    def one(k: int, http: httpx.Client, url: str) -> tuple[int, int, tuple]:
        i = k % len(uploads)
        r = http.post(f"{url}/predict", files={"file": (f"{i}.png", io.BytesIO(uploads[i]), "image/png")})
        body = r.json()
        return i, r.status_code, (body.get("latex"), round(body.get("score") or 0.0, 4), body.get("scale"))

    with running(create_app(predictor)) as url, httpx.Client(timeout=60) as http:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda k: one(k, http, url), range(200)))
        assert http.get(f"{url}/health").json()["status"] == "ok"
    assert all(status == 200 for _, status, _ in answers)
    assert all(answer == expected[i] for i, _, answer in answers)
