"""Im2Latex-100K: download, parse both layouts (processed and raw) and preprocess raw pages like the dataset.

The preprocessing of :func:`process_page` reproduces the official im2markup pipeline pixel for pixel on the
real pages: crop to the ink, pad 8 px, pad to the smallest bucket that fits (:data:`BUCKETS`), downsample x2.
The synthetic renderer uses the same function, so synthetic images look like the real ones.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from i2l.config import project_root
from i2l.errors import I2LError
from i2l.tokenizer import tokenize, tokenize_raw

log = logging.getLogger(__name__)

#: (width, height) buckets of the official preprocessing, before the x2 downsampling; the processed images
#: are these halved (120x50, 160x40, 200x40, ..., 500x100, 800x800).
BUCKETS: list[tuple[int, int]] = [
    (240, 100), (320, 80), (400, 80), (400, 100), (480, 80), (480, 100), (560, 80), (560, 100),
    (640, 80), (640, 100), (720, 80), (720, 100), (720, 120), (720, 200), (800, 100), (800, 320),
    (1000, 200), (1000, 400), (1200, 200), (1600, 200), (1600, 1600),
]
PAD = 8  # pixels of white around the ink, before downsampling
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


def process_page(img: Image.Image, pad: int = PAD, downsample: int = DOWNSAMPLE) -> Image.Image:
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


# ============================================================================ download
PROCESSED_URL = "https://im2markup.yuntiandeng.com/data/"
RAW_URL = "https://zenodo.org/records/56198/files/"
#: Environment variables that override the base URLs (mirrors, tests).
URL_ENV = {"processed": "I2L_IM2LATEX_PROCESSED_URL", "raw": "I2L_IM2LATEX_RAW_URL"}
_DEFAULT_URLS = {"processed": PROCESSED_URL, "raw": RAW_URL}


@dataclass(frozen=True)
class RemoteFile:
    """One file of an official download: its name, md5 if known, and whether it is a tar archive."""

    name: str
    md5: str | None = None
    extract: bool = False


FILES: dict[str, list[RemoteFile]] = {
    "processed": [
        RemoteFile("im2latex_formulas.norm.lst"),
        RemoteFile("im2latex_train_filter.lst"),
        RemoteFile("im2latex_validate_filter.lst"),
        RemoteFile("im2latex_test_filter.lst"),
        RemoteFile("formula_images_processed.tar.gz", extract=True),
    ],
    "raw": [
        RemoteFile("im2latex_formulas.lst", md5="974c0a14f0daa6d91ecd0e625f1ddf52"),
        RemoteFile("im2latex_train.lst", md5="d5607c37aa00576098a9e4bad84a7040"),
        RemoteFile("im2latex_validate.lst", md5="cf6eeee02bc443b1b9557685fbfe7ea5"),
        RemoteFile("im2latex_test.lst", md5="1bc17b865796dca5df15250b4da7804f"),
        RemoteFile("formula_images.tar.gz", md5="cf25f2408f1ea09bbd096890a6361533", extract=True),
    ],
}
_CHUNK = 1 << 16


def base_url(variant: str) -> str:
    """The base URL of ``variant``: the environment override (:data:`URL_ENV`) or the official one."""
    if variant not in FILES:
        raise I2LError(f"unknown dataset variant {variant!r}: choose 'processed' or 'raw'")
    url = os.environ.get(URL_ENV[variant]) or _DEFAULT_URLS[variant]
    return url if url.endswith("/") else url + "/"


def _resolve_dest(dest: str | Path) -> Path:
    dest = Path(dest).expanduser()
    return dest if dest.is_absolute() else project_root() / dest


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _total_from_headers(response, offset: int) -> int | None:
    """The full size of the remote file from Content-Range (206) or Content-Length (200)."""
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return int(length) + (offset if response.status == 206 else 0)
    return None


def _fetch_once(url: str, part: Path, timeout: float, progress: bool) -> int | None:
    """Download ``url`` into ``part``, resuming from its current size; returns the expected total size.

    Raises ``OSError``/``http.client.HTTPException`` on a network failure or a truncated transfer.
    """
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "i2l", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to fetch: the part file is already complete
            content_range = exc.headers.get("Content-Range", "")
            total = content_range.rsplit("/", 1)[-1].strip()
            return int(total) if total.isdigit() else offset
        raise
    with response:
        if offset and response.status != 206:  # the server ignored Range: start again
            offset = 0
        total = _total_from_headers(response, offset)
        mode = "ab" if offset else "wb"
        with open(part, mode) as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
        ) as bar:
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size < total:
        raise http.client.IncompleteRead(b"", total - size)
    return total


def download_file(url: str, path: Path, md5: str | None = None, retries: int = 3, timeout: float = 60.0,
                  progress: bool = True) -> Path:
    """Download ``url`` to ``path`` atomically, resuming (HTTP Range) after a cut connection.

    The data goes to ``path.part`` first and is renamed only once its size matches the server's
    Content-Length and its md5 matches ``md5`` (when given); a mismatch removes the part file and raises
    :class:`I2LError`. A part file left by an interrupted run is resumed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    last_error: Exception | None = None
    total: int | None = None
    for attempt in range(retries + 1):
        try:
            total = _fetch_once(url, part, timeout=timeout, progress=progress)
            last_error = None
            break
        except urllib.error.HTTPError as exc:
            raise I2LError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL or try again later") from exc
        except (OSError, http.client.HTTPException) as exc:  # cut connection, timeout, truncated body
            last_error = exc
            if attempt < retries:
                log.warning("%s: download interrupted (%s); resuming (attempt %d of %d)", path.name,
                            exc.__class__.__name__, attempt + 2, retries + 1)
                time.sleep(min(2.0**attempt * 0.1, 5.0))
    if last_error is not None:
        have = part.stat().st_size if part.exists() else 0
        if not have:
            raise I2LError(f"{url}: cannot download ({last_error!r}); check the network connection and the URL "
                           f"(override it with {URL_ENV.get('processed')} / {URL_ENV.get('raw')}), then run again")
        raise I2LError(
            f"{url}: download incomplete after {retries + 1} attempts ({have} bytes in {part}; "
            f"{last_error!r}); run the same command again to resume"
        ) from last_error
    size = part.stat().st_size
    if total is not None and size != total:
        part.unlink(missing_ok=True)
        raise I2LError(f"{path.name}: got {size} bytes but the server announced {total}; deleted, run again")
    if md5 is not None:
        actual = _md5(part)
        if actual != md5.lower():
            part.unlink(missing_ok=True)
            raise I2LError(
                f"{path.name}: md5 checksum mismatch (expected {md5}, got {actual}); the download was "
                "corrupted or the file changed upstream; deleted it, run the command again"
            )
    os.replace(part, path)
    return path


def _check_member(member: tarfile.TarInfo, dest: Path, archive: Path) -> None:
    target = (dest / member.name).resolve()
    if member.name.startswith(("/", "\\")) or not target.is_relative_to(dest.resolve()):
        raise I2LError(f"{archive}: unsafe path {member.name!r} in the archive (outside {dest}); not extracted")
    if member.issym() or member.islnk() or member.isdev():
        raise I2LError(f"{archive}: link or device {member.name!r} in the archive; not extracted")


def extract_tar(archive: str | Path, dest: str | Path, progress: bool = False) -> list[Path]:
    """Extract ``archive`` into ``dest`` safely (no absolute paths, ``..`` or links) and atomically per entry.

    Everything is extracted into a temporary folder inside ``dest`` first, then each top-level entry is
    moved into place. Returns the top-level paths.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member, tmp, archive)
                for member in tqdm(members, desc=f"extracting {archive.name}", unit="file", disable=not progress,
                                   leave=False):
                    tar.extract(member, tmp, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise I2LError(f"{archive}: not a valid tar archive ({exc}); delete it and download again") from exc
        moved = []
        for entry in sorted(tmp.iterdir()):
            target = dest / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
            moved.append(target)
        return moved
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download(variant: str = "processed", dest: str | Path = "data/im2latex", base: str | None = None,
             checksums: dict[str, str] | None = None, retries: int = 3, timeout: float = 60.0,
             progress: bool = True, keep_archives: bool = True) -> Path:
    """Download Im2Latex-100K (``variant`` 'processed' or 'raw') into ``dest`` and extract the images.

    Files already present (complete) are skipped; an interrupted download resumes. ``base`` overrides the
    base URL (also settable with the environment variables of :data:`URL_ENV`), ``checksums`` maps file
    names to md5s (added to / replacing the known ones). Relative ``dest`` paths are resolved against the
    project root. Returns ``dest``.
    """
    if variant not in FILES:
        raise I2LError(f"unknown dataset variant {variant!r}: choose 'processed' or 'raw'")
    url = base or base_url(variant)
    url = url if url.endswith("/") else url + "/"
    dest = _resolve_dest(dest)
    dest.mkdir(parents=True, exist_ok=True)
    checksums = checksums or {}
    for remote in FILES[variant]:
        path = dest / remote.name
        done = dest / f".{remote.name}.extracted"
        if remote.extract and done.exists():
            continue
        if not path.exists():
            log.info("downloading %s", url + remote.name)
            download_file(url + remote.name, path, md5=checksums.get(remote.name, remote.md5), retries=retries,
                          timeout=timeout, progress=progress)
        if remote.extract:
            extract_tar(path, dest, progress=progress)
            done.write_text("ok\n")
            if not keep_archives:
                path.unlink()
    return dest


# ============================================================================ layouts and splits
SPLITS = ("train", "validate", "test")
_SPLIT_ALIASES = {"val": "validate", "valid": "validate", "validation": "validate"}


@dataclass(frozen=True)
class Sample:
    """One image and its formula: ``formula`` is the line ``index`` of the formula list, as in the file."""

    name: str
    image_path: Path
    formula: str
    index: int
    layout: str = "processed"  # "raw": image_path is a full page (see load_image), formula is raw LaTeX

    @property
    def tokens(self) -> list[str]:
        """Tokens of the formula (whitespace split for normalized formulas, the raw regex for raw LaTeX)."""
        return tokenize_raw(self.formula) if self.layout == "raw" else tokenize(self.formula)


@dataclass
class LoadReport:
    """What :func:`load_split` skipped and why (each problem also logged with its file and line)."""

    split: str
    list_file: Path | None = None
    lines: int = 0
    loaded: int = 0
    empty_formulas: int = 0
    missing_images: int = 0
    empty_images: int = 0
    bad_lines: int = 0
    bad_indices: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Lines of the list that produced no sample."""
        return self.lines - self.loaded

    def add(self, kind: str, message: str) -> None:
        """Count a problem of ``kind`` (a field name) and log ``message`` (the first 20 of each load)."""
        setattr(self, kind, getattr(self, kind) + 1)
        self.messages.append(message)
        if len(self.messages) <= _MAX_LOGGED:
            log.warning(message)

    def summary(self) -> str:
        """One line: loaded and skipped counts by reason."""
        reasons = {k: getattr(self, k) for k in ("empty_formulas", "missing_images", "empty_images",
                                                  "bad_lines", "bad_indices") if getattr(self, k)}
        why = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in reasons.items()) or "nothing skipped"
        return f"{self.split}: {self.loaded} of {self.lines} samples loaded ({why})"


_MAX_LOGGED = 20


@dataclass(frozen=True)
class Layout:
    """Where the files of one dataset folder are: kind 'processed' or 'raw', either naming."""

    kind: str
    root: Path
    formulas: Path
    images: Path
    prefix: str  # "im2latex_" for the official downloads, "" for the sample and the synthetic sets

    def split_file(self, split: str) -> Path:
        """The list file of ``split`` ('train', 'validate' or 'test')."""
        suffix = "_filter.lst" if self.kind == "processed" else ".lst"
        return self.root / f"{self.prefix}{split}{suffix}"


_NAMES = {
    "processed": ("formulas.norm.lst", ("images_processed", "formula_images_processed")),
    "raw": ("formulas.lst", ("images", "formula_images")),
}


def find_layout(root: str | Path, layout: str = "auto") -> Layout:
    """The layout of the dataset folder ``root`` ('auto': processed if present, else raw).

    Accepts both namings (``formulas.norm.lst`` or ``im2latex_formulas.norm.lst``; ``images_processed/`` or
    ``formula_images_processed/``) and a folder holding ``processed/`` or ``raw/`` subfolders.
    """
    root = Path(root).expanduser()
    if layout not in ("auto", "processed", "raw"):
        raise I2LError(f"unknown layout {layout!r}: choose 'auto', 'processed' or 'raw'")
    if not root.is_dir():
        raise I2LError(f"{root}: dataset folder not found; download it with `i2l data download --dest {root}` "
                       "or generate a synthetic one with `i2l data synth`")
    kinds = ("processed", "raw") if layout == "auto" else (layout,)
    for kind in kinds:
        for folder in (root, root / kind):
            formulas_name, image_dirs = _NAMES[kind]
            for prefix in ("", "im2latex_"):
                formulas = folder / f"{prefix}{formulas_name}"
                if formulas.is_file():
                    images = next((folder / d for d in image_dirs if (folder / d).is_dir()), folder / image_dirs[0])
                    return Layout(kind, folder, formulas, images, prefix)
    wanted = " or ".join(f"{_NAMES[k][0]} (or im2latex_{_NAMES[k][0]})" for k in kinds)
    raise I2LError(f"{root}: no {wanted} found; is this an Im2Latex dataset folder?")


def _decode_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("%s line %d: not valid UTF-8, read as Latin-1", path, lineno)
        return raw.decode("latin-1")


def read_formulas(path: str | Path) -> list[str]:
    """Lines of a formula list, split on ``\\n`` only (formulas may contain ``\\r``); line k = formula k."""
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":  # the newline that ends the last line
        lines.pop()
    return [_decode_line(line, path, k + 1) for k, line in enumerate(lines)]


def _parse_line(line: str, kind: str) -> tuple[str, int] | None:
    """(image file name, formula index) of a list line, or None when malformed."""
    parts = line.split()
    try:
        if kind == "processed":  # "name.png idx"
            return parts[0], int(parts[1])
        return parts[1] + ".png", int(parts[0])  # "idx name render_type"
    except (IndexError, ValueError):
        return None


def load_split_report(root: str | Path, split: str, layout: str = "auto",
                      formulas: list[str] | None = None) -> tuple[list[Sample], LoadReport]:
    """Like :func:`load_split`, and also the :class:`LoadReport` of what was skipped."""
    split = _SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise I2LError(f"unknown split {split!r}: choose one of {SPLITS}")
    lay = find_layout(root, layout)
    list_file = lay.split_file(split)
    report = LoadReport(split=split, list_file=list_file)
    if not list_file.is_file():
        raise I2LError(f"{list_file}: split list not found (the {lay.kind} layout of {lay.root} has no "
                       f"{split} split); check the folder or download the dataset again")
    if formulas is None:
        formulas = read_formulas(lay.formulas)
    samples: list[Sample] = []
    for lineno, raw in enumerate(list_file.read_bytes().split(b"\n"), start=1):
        line = _decode_line(raw, list_file, lineno).strip()
        if not line:
            continue
        report.lines += 1
        where = f"{list_file} line {lineno}"
        parsed = _parse_line(line, lay.kind)
        if parsed is None:
            report.add("bad_lines", f"{where}: cannot parse {line[:60]!r}; skipped")
            continue
        name, index = parsed
        if not 0 <= index < len(formulas):
            report.add("bad_indices", f"{where}: formula index {index} outside {lay.formulas} "
                                      f"({len(formulas)} lines); skipped")
            continue
        formula = formulas[index].strip()
        if not formula:
            report.add("empty_formulas", f"{where}: formula {index} is empty in {lay.formulas} "
                                         "(an empty line: failed normalisation); skipped")
            continue
        image_path = lay.images / name
        try:
            size = image_path.stat().st_size
        except OSError:
            report.add("missing_images", f"{where}: image {image_path} not found; skipped")
            continue
        if size == 0:
            report.add("empty_images", f"{where}: image {image_path} is empty (0 bytes); skipped")
            continue
        samples.append(Sample(name, image_path, formula, index, lay.kind))
    report.loaded = len(samples)
    if len(report.messages) > _MAX_LOGGED:
        log.warning("... %d more problems; %s", len(report.messages) - _MAX_LOGGED, report.summary())
    return samples, report


def load_split(root: str | Path, split: str, layout: str = "auto") -> list[Sample]:
    """Samples of ``split`` ('train', 'validate' or 'test') of the dataset folder ``root``.

    Every line of the split list is kept except those that cannot be used (empty formula, missing or empty
    image, malformed line), each logged with its file and line. No length filter is applied here: the test
    split stays complete for evaluation; training applies ``cfg.max_len`` in the DataModule.
    """
    return load_split_report(root, split, layout)[0]


def load_image(sample: Sample | str | Path, layout: str | None = None) -> Image.Image:
    """The 'L' image of a sample, raw pages processed with :func:`process_page`; bad files raise I2LError."""
    if isinstance(sample, Sample):
        path, layout = sample.image_path, layout or sample.layout
    else:
        path, layout = Path(sample), layout or "processed"
    try:
        with Image.open(path) as img:
            img.load()
            return process_page(img) if layout == "raw" else to_gray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, I2LError):
            raise I2LError(f"{path}: {exc}") from exc
        raise I2LError(f"{path}: unreadable image ({exc}); delete or replace the file") from exc


def stats(path: str | Path, layout: str = "auto", image_sizes: bool = True) -> dict:
    """Counts, formula lengths and image sizes of the dataset folder ``path`` (for ``i2l data stats``)."""
    lay = find_layout(path, layout)
    formulas = read_formulas(lay.formulas)
    out: dict = {
        "root": str(lay.root), "layout": lay.kind, "formulas_file": lay.formulas.name,
        "formulas": len(formulas), "empty_formulas": sum(not f.strip() for f in formulas), "splits": {},
    }
    for split in SPLITS:
        if not lay.split_file(split).is_file():
            continue
        samples, report = load_split_report(lay.root, split, lay.kind, formulas=formulas)
        lengths = np.array([len(s.tokens) for s in samples]) if samples else np.zeros(1)
        entry: dict = {
            "list_file": report.list_file.name, "lines": report.lines, "samples": report.loaded,
            "skipped": {k: getattr(report, k) for k in ("empty_formulas", "missing_images", "empty_images",
                                                        "bad_lines", "bad_indices")},
            "tokens": {"mean": round(float(lengths.mean()), 2), "median": float(np.median(lengths)),
                       "max": int(lengths.max()), "over_150": int((lengths > 150).sum())},
        }
        if image_sizes and lay.kind == "processed" and samples:
            sizes = Counter()
            for s in samples:
                with Image.open(s.image_path) as img:
                    sizes[f"{img.width}x{img.height}"] += 1
            entry["image_sizes"] = dict(sizes.most_common())
        out["splits"][split] = entry
    return out


__all__ = [
    "BUCKETS", "PAD", "DOWNSAMPLE", "process_page", "bucket_size", "to_gray", "FILES", "URL_ENV", "RemoteFile",
    "download", "download_file", "extract_tar", "base_url", "SPLITS", "Sample", "LoadReport", "Layout",
    "find_layout", "read_formulas", "load_split", "load_split_report", "load_image", "stats",
]
