"""Tests of i2l.data.im2latex: preprocessing, both layouts on the real sample, bad input, and the downloader
against a local HTTP server (Range resume after a cut connection, checksum failure, atomic results, safe tar)."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from i2l.cli import main as cli_main
from i2l.data import im2latex
from i2l.data.im2latex import (
    BUCKETS,
    URL_ENV,
    bucket_size,
    download,
    extract_tar,
    find_layout,
    load_image,
    load_split,
    load_split_report,
    process_page,
    read_formulas,
    stats,
)
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


def write_processed(root: Path, formulas: list[str], splits: dict[str, list[int]], prefix: str = "",
                    images_dir: str = "images_processed") -> Path:
    """A small dataset in the processed layout (either naming)."""
    (root / images_dir).mkdir(parents=True, exist_ok=True)
    (root / f"{prefix}formulas.norm.lst").write_bytes("\n".join(formulas).encode() + b"\n")
    for split, indices in splits.items():
        lines = [f"img{i}.png {i}" for i in indices]
        (root / f"{prefix}{split}_filter.lst").write_text("\n".join(lines) + "\n")
        for i in indices:
            page((2, 2, 10 + 3 * i, 12), size=(60 + 4 * i, 20)).save(root / images_dir / f"img{i}.png")
    return root


# ============================================================================ preprocessing
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


# ============================================================================ the real sample, both layouts
def test_load_processed_sample(shared_data):
    root = shared_data / "im2latex" / "sample" / "processed"
    train, val = load_split(root, "train"), load_split(root, "val")
    assert len(train) == 897 and len(val) == 85
    assert all(s.layout == "processed" and s.image_path.is_file() for s in train)
    assert {s.index for s in val} <= set(range(1100, 1200)) and max(s.index for s in train) < 1000
    formulas = read_formulas(root / "formulas.norm.lst")
    assert len(formulas) == 1200
    assert all(s.formula == formulas[s.index] for s in train)
    img = load_image(train[0])
    assert img.mode == "L" and img.size in {(w // 2, h // 2) for w, h in BUCKETS}
    with pytest.raises(I2LError, match="test"):
        load_split(root, "test")  # the sample withholds the test part


def test_load_raw_sample_matches_processed(shared_data):
    sample = shared_data / "im2latex" / "sample"
    raw, report = load_split_report(sample, "train", layout="raw")
    formulas = read_formulas(sample / "raw" / "formulas.lst")
    lines = (sample / "raw" / "train.lst").read_text().splitlines()
    expected = sum(bool(formulas[int(line.split()[0])].strip()) for line in lines)
    assert report.lines == len(lines) == 1000 and len(raw) == expected == report.loaded
    assert report.empty_formulas == len(lines) - expected
    by_name = {s.name: s for s in raw}
    processed = load_split(sample, "train")  # auto: the processed subfolder
    assert all(s.layout == "processed" for s in processed)
    for s in processed:
        assert by_name[s.name].index == s.index  # the filtered list is a subset with the same indices
    s = processed[0]
    ours = np.asarray(load_image(by_name[s.name]), dtype=int)
    assert np.abs(ours - np.asarray(load_image(s), dtype=int)).max() <= 1
    assert by_name[s.name].tokens  # raw LaTeX goes through the raw tokenizer


def test_stats_and_cli_on_sample(shared_data, capsys):
    out = stats(shared_data / "im2latex" / "sample" / "processed")
    assert out["layout"] == "processed" and out["splits"]["train"]["samples"] == 897
    assert sum(out["splits"]["validate"]["image_sizes"].values()) == 85
    assert out["splits"]["train"]["tokens"]["max"] <= 150
    assert cli_main(["data", "stats", str(shared_data / "im2latex" / "sample" / "raw")]) == 0
    assert '"layout": "raw"' in capsys.readouterr().out


# ============================================================================ parsing details and bad input
def test_formulas_split_on_newline_only(tmp_path):
    formulas = ["a + b", "x \r y", "", "c", "\\alpha"]
    write_processed(tmp_path, formulas, {"train": [0, 1, 3, 4]})
    assert read_formulas(tmp_path / "formulas.norm.lst") == formulas
    samples, report = load_split_report(tmp_path, "train")
    assert [s.formula for s in samples] == ["a + b", "x \r y", "c", "\\alpha"]  # indices not shifted by \r
    assert [s.index for s in samples] == [0, 1, 3, 4] and report.skipped == 0


def test_official_naming(tmp_path):
    write_processed(tmp_path, ["a", "b", "c"], {"train": [0, 1], "test": [2]}, prefix="im2latex_",
                    images_dir="formula_images_processed")
    lay = find_layout(tmp_path)
    assert lay.prefix == "im2latex_" and lay.images.name == "formula_images_processed"
    assert [s.name for s in load_split(tmp_path, "train")] == ["img0.png", "img1.png"]
    assert len(load_split(tmp_path, "test")) == 1


def test_test_split_is_not_filtered(tmp_path):
    long = " ".join(["x"] * 300)
    write_processed(tmp_path, ["a", long], {"train": [0], "test": [0, 1]})
    assert [len(s.tokens) for s in load_split(tmp_path, "test")] == [1, 300]


def test_bad_input_is_reported_and_the_rest_loads(tmp_path, caplog):
    write_processed(tmp_path, ["a", "b", "", "d", "e"], {"train": [0, 1, 3, 4]})
    (tmp_path / "images_processed" / "img1.png").unlink()  # missing image
    (tmp_path / "images_processed" / "img3.png").write_bytes(b"")  # zero-size PNG
    lst = tmp_path / "train_filter.lst"
    lst.write_text(lst.read_text() + "img2.png 2\nnot-a-line\nimg9.png 99\n")
    with caplog.at_level(logging.WARNING):
        samples, report = load_split_report(tmp_path, "train")
    assert [s.index for s in samples] == [0, 4]
    assert (report.lines, report.loaded, report.missing_images, report.empty_images) == (7, 2, 1, 1)
    assert (report.empty_formulas, report.bad_lines, report.bad_indices) == (1, 1, 1)
    text = caplog.text
    assert "train_filter.lst line 2" in text and "img1.png not found" in text
    assert "line 3" in text and "empty (0 bytes)" in text
    assert "line 6: cannot parse" in text and "index 99" in text
    assert "2 of 7" in report.summary()


def test_unreadable_png_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(I2LError, match="broken.png"):
        load_image(bad)


def test_missing_folder_and_list_are_clear(tmp_path):
    with pytest.raises(I2LError, match="not found"):
        load_split(tmp_path / "nope", "train")
    with pytest.raises(I2LError, match="no formulas.norm.lst"):
        find_layout(tmp_path)
    write_processed(tmp_path, ["a"], {"train": [0]})
    with pytest.raises(I2LError, match="validate_filter.lst"):
        load_split(tmp_path, "validate")
    with pytest.raises(I2LError, match="unknown split"):
        load_split(tmp_path, "dev")


# ============================================================================ downloader
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


def test_download_processed_and_load(tmp_path):
    files = processed_files()
    with _Server(files) as server:
        dest = download("processed", tmp_path / "im2latex", base=server.url, progress=False)
        assert sorted(name for name, _ in server.requests) == sorted(files)
        train = load_split(dest, "train")
        assert [s.index for s in train] == [0, 1, 2, 3] and train[1].formula == "a \r b"
        assert load_image(train[2]).size == (42, 20)
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
        assert im2latex.base_url("raw") == server.url
        dest = download("raw", tmp_path, checksums=md5s, progress=False)
    samples = load_split(dest, "train")
    assert [s.layout for s in samples] == ["raw", "raw"] and samples[1].formula == "x^2\r+1"
    assert load_image(samples[0]).size == (120, 50)  # the raw page went through process_page


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


def test_official_split_lists_parse(shared_data, tmp_path):
    splits = shared_data / "im2latex" / "splits"
    for split in ("train", "validate", "test"):
        (tmp_path / f"im2latex_{split}.lst").symlink_to(splits / f"im2latex_{split}.lst")
    (tmp_path / "im2latex_formulas.lst").write_text("x\n" * 103_559)  # placeholders, not the real formulas
    (tmp_path / "formula_images").mkdir()
    expected = {"train": 83_884, "validate": 9_320, "test": 10_355}
    for split, n in expected.items():
        samples, report = load_split_report(tmp_path, split)
        assert report.lines == n and report.missing_images == n  # every line parsed, no image downloaded
        assert report.bad_lines == report.bad_indices == 0 and samples == []


def test_unreachable_server_is_clear(tmp_path):
    with _Server({}) as server:
        url = server.url
    with pytest.raises(I2LError, match="cannot download.*check the network"):  # the server is gone
        download("processed", tmp_path, base=url, progress=False, retries=0, timeout=2)
