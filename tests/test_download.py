"""Tests of i2l.data.download against a local HTTP server: both variants, Range resume after a cut connection,
checksum failure, atomic results, safe tar extraction and clear errors."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image, ImageDraw

from i2l.cli import main as cli_main
from i2l.data.download import URL_ENV, base_url, download, extract_tar
from i2l.data.im2latex import load_split, sample_image
from i2l.errors import I2LError


# ============================================================================ helpers
def page(box=(300, 200, 420, 240), size=(800, 600), mode="L") -> Image.Image:
    """A white page with a black rectangle of ink at ``box``."""
    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).rectangle(box, fill=0)
    return img.convert(mode)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ============================================================================ a local server
class _Server:
    """A threaded HTTP server on 127.0.0.1 serving ``files`` with Range support and failure injection."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []  # (name, Range header)
        self.cut: dict[str, int] = {}  # name -> how many more responses to cut halfway
        self.ignore_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut.get(name, 0) > 0:  # send half, then drop the connection
                    server.cut[name] -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def processed_files(n: int = 6) -> dict[str, bytes]:
    """The official processed layout in miniature (fake formulas, one containing \\r)."""
    formulas = [f"x _ {{ {i} }} + y" for i in range(n)]
    formulas[1] = "a \r b"
    images = {f"formula_images_processed/f{i}.png": png_bytes(page((1, 1, 20 + i, 10), size=(40 + i, 20)))
              for i in range(n)}
    images["formula_images_processed/pad.bin"] = np.random.default_rng(0).bytes(200_000)  # a big archive
    return {
        "im2latex_formulas.norm.lst": ("\n".join(formulas) + "\n").encode(),
        "im2latex_train_filter.lst": b"".join(f"f{i}.png {i}\n".encode() for i in range(n - 2)),
        "im2latex_validate_filter.lst": f"f{n - 2}.png {n - 2}\n".encode(),
        "im2latex_test_filter.lst": f"f{n - 1}.png {n - 1}\n".encode(),
        "formula_images_processed.tar.gz": _tar_gz(images),
    }


def raw_files() -> dict[str, bytes]:
    """The official raw layout in miniature: full pages, lines ``idx name render_type``."""
    return {
        "im2latex_formulas.lst": b"\\frac{a}{b}\nx^2\r+1\n\\alpha\n",
        "im2latex_train.lst": b"0 p0 basic\n1 p1 basic\n",
        "im2latex_validate.lst": b"2 p2 basic\n",
        "im2latex_test.lst": b"",
        "formula_images.tar.gz": _tar_gz({f"formula_images/p{i}.png": png_bytes(page(mode="P"))
                                          for i in range(3)}),
    }


# ============================================================================ downloads
def test_download_processed_and_load(tmp_path):
    files = processed_files()
    with _Server(files) as server:
        dest = download("processed", tmp_path / "im2latex", base=server.url, progress=False)
        assert sorted(name for name, _ in server.requests) == sorted(files)
        train = load_split(dest, "train")
        assert [s.index for s in train] == [0, 1, 2, 3] and train[1].formula == "a \r b"
        assert sample_image(train[2]).size == (42, 20)
        assert len(load_split(dest, "test")) == 1
        for name, data in files.items():
            assert (dest / name).read_bytes() == data
        assert not list(dest.glob("*.part")) and not list(dest.glob(".extract-*"))
        server.requests.clear()
        download("processed", dest, base=server.url, progress=False)  # everything there: no request
        assert server.requests == []


def test_download_resumes_after_cut_connection(tmp_path):
    files = processed_files()
    archive = "formula_images_processed.tar.gz"
    with _Server(files) as server:
        server.cut[archive] = 1
        dest = download("processed", tmp_path, base=server.url, progress=False, retries=2)
        ranges = [rng for name, rng in server.requests if name == archive]
        assert ranges[0] is None and ranges[1] == f"bytes={len(files[archive]) // 2}-"
        assert (dest / archive).read_bytes() == files[archive]
        assert (dest / "formula_images_processed" / "f0.png").is_file()


def test_interrupted_download_resumes_on_the_next_run(tmp_path):
    files = processed_files()
    name = "im2latex_formulas.norm.lst"
    with _Server(files) as server:
        server.cut[name] = 1
        with pytest.raises(I2LError, match="incomplete.*run the same command again"):
            download("processed", tmp_path, base=server.url, progress=False, retries=0)
        assert not (tmp_path / name).exists()  # nothing half-written under the final name
        half = len(files[name]) // 2
        assert (tmp_path / f"{name}.part").stat().st_size == half
        download("processed", tmp_path, base=server.url, progress=False, retries=0)
        assert (name, f"bytes={half}-") in server.requests
        assert (tmp_path / name).read_bytes() == files[name]
        assert not (tmp_path / f"{name}.part").exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path):
    files = processed_files()
    name = "im2latex_formulas.norm.lst"
    with _Server(files) as server:
        server.ignore_range = True
        (tmp_path / f"{name}.part").write_bytes(b"stale bytes")
        download("processed", tmp_path, base=server.url, progress=False)
        assert (tmp_path / name).read_bytes() == files[name]


def test_checksum_failure_leaves_no_file(tmp_path):
    with _Server(raw_files()) as server:  # fake files: the official md5s cannot match
        with pytest.raises(I2LError, match="im2latex_formulas.lst: md5 checksum mismatch"):
            download("raw", tmp_path, base=server.url, progress=False)
    assert not (tmp_path / "im2latex_formulas.lst").exists()
    assert not list(tmp_path.glob("*.part"))


def test_truncated_for_good_fails_clearly(tmp_path):
    files = processed_files()
    with _Server(files) as server:
        server.cut["im2latex_formulas.norm.lst"] = 99
        with pytest.raises(I2LError, match="im2latex_formulas.norm.lst.*incomplete after 3 attempts"):
            download("processed", tmp_path, base=server.url, progress=False, retries=2)
    assert not (tmp_path / "im2latex_formulas.norm.lst").exists()


def test_download_raw_with_checksums_and_env_url(tmp_path, monkeypatch):
    files = raw_files()
    md5s = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    with _Server(files) as server:
        monkeypatch.setenv(URL_ENV["raw"], server.url)
        assert base_url("raw") == server.url
        dest = download("raw", tmp_path, checksums=md5s, progress=False)
    samples = load_split(dest, "train")
    assert [s.layout for s in samples] == ["raw", "raw"] and samples[1].formula == "x^2\r+1"
    assert sample_image(samples[0]).size == (120, 50)  # the raw page went through process_page


def test_cli_download(tmp_path, monkeypatch, capsys):
    with _Server(processed_files()) as server:
        monkeypatch.setenv(URL_ENV["processed"], server.url)
        assert cli_main(["data", "download", "--variant", "processed", "--dest", str(tmp_path / "d")]) == 0
    assert "dataset ready" in capsys.readouterr().out
    assert len(load_split(tmp_path / "d", "train")) == 4


def test_http_error_is_clear(tmp_path):
    with _Server({}) as server:
        with pytest.raises(I2LError, match="HTTP 404"):
            download("processed", tmp_path, base=server.url, progress=False)
    with pytest.raises(I2LError, match="unknown dataset variant"):
        download("tiny", tmp_path, base=server.url)


# ============================================================================ archives and failures
@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "link"])
def test_extract_refuses_unsafe_archives(tmp_path, member):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        else:
            info.size = 4
        tar.addfile(info, io.BytesIO(b"evil") if member != "link" else None)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "out"
    with pytest.raises(I2LError, match="a.tar.gz"):
        extract_tar(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and list(dest.iterdir()) == []


def test_extract_rejects_corrupt_archive(tmp_path):
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(I2LError, match="not a valid tar archive"):
        extract_tar(archive, tmp_path / "out")


def test_unreachable_server_is_clear(tmp_path):
    with _Server({}) as server:
        url = server.url
    with pytest.raises(I2LError, match="cannot download.*check the network"):  # the server is gone
        download("processed", tmp_path, base=url, progress=False, retries=0, timeout=2)
