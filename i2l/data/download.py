"""Download Im2Latex-100K (the processed or the raw variant) into a dataset folder, resumably and safely.

:func:`download` fetches every file of a variant (:data:`FILES`) from the official servers (or the URLs of
:data:`URL_ENV`) and extracts the image archives. :func:`download_file` writes atomically (``.part`` file,
renamed once complete), resumes a cut connection with HTTP Range and checks sizes and md5s;
:func:`extract_tar` refuses absolute paths, ``..`` and links. Parse the result with :mod:`i2l.data.im2latex`.
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
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from i2l.config import project_root
from i2l.errors import I2LError

log = logging.getLogger(__name__)

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


__all__ = ["PROCESSED_URL", "RAW_URL", "URL_ENV", "RemoteFile", "FILES", "base_url", "download_file", "extract_tar",
           "download"]
