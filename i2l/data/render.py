"""LaTeX formulas to images, processed exactly like Im2Latex-100K's ``images_processed``.

Two backends:

- ``latex`` (primary): the dataset's own recipe. ``\\documentclass[12pt]{article}``, ``\\pagestyle{empty}``,
  ``amsmath`` and ``amssymb``, each formula in ``displaymath`` on its own page, ``pdflatex`` then Ghostscript
  at 200 dpi with anti-aliasing (``-r200 -dTextAlphaBits=4 -dGraphicsAlphaBits=4``). Many formulas go into
  one document (one page each) and one Ghostscript call renders all its pages (``pgmraw`` streamed through
  a pipe: the same rasterizer as ``pnggray`` without PNG encoding); batches run in parallel ``pdflatex`` and
  ``gs`` processes. A marker written to the log before and after each formula tells which formulas raised
  errors and which page each one shipped; a formula that fails is dropped (reported in
  :attr:`RenderResult.failed` with its reason) and the formulas after it are re-run without it if the failure
  disturbed them, so one bad formula never loses its batch. The pages are A4 cut short at the bottom by a
  whole number of pixels (the same pixels for the formula at the top, a third of the page to rasterize); a
  formula that reaches the short page's bottom is rendered again on a full page.
- ``mathtext`` (fallback when ``pdflatex`` or ``gs`` is missing: Colab, Windows): matplotlib's mathtext with
  Computer Modern fonts. The normalized token style is rewritten first (``x _ { i }`` -> ``x_{i}``; mathtext
  reads a spaced ``_`` as text; old-style font switches ``{ \\cal L }`` -> ``\\mathcal{L}`` because mathtext
  lets them leak out of their group). Constructs it cannot draw (arrays, matrices, ``\\hspace`` ...) are
  reported as failed, never drawn wrong.

The page is then binarized like the official pipeline (the official pages were black ink on a transparent
background, converted to grayscale with the alpha ignored, so every touched pixel is black), cropped to
the ink, padded 8 px, padded to the smallest bucket and downsampled x2 with LANCZOS:
:func:`i2l.images.process_page`.

Fidelity note: the dataset's pages were evidently made without ``amsmath``: their sums and integrals use the
fixed 10pt ``cmex10`` (``amsmath``/``amsfonts`` make cmex scale with the 12pt size) and their ``\\big``,
``\\Big``, ``\\bigg``, ``\\Bigg`` delimiters have the LaTeX kernel's fixed heights (amsmath scales them). The
preamble loads ``amsmath`` and ``amssymb`` (normalized formulas need ``\\operatorname``, ``matrix`` ...) and
then restores both. Measured on the real sample (benchmarks/render.py): about 96% of the raw and 93% of the
normalized formulas give an image of the real size with the ink box within 2 px; without the restores 94%/91%.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from i2l.errors import I2LError
from i2l.images import process_page

log = logging.getLogger(__name__)

PREAMBLE = r"""\documentclass[12pt]{article}
\pagestyle{empty}
\usepackage{amsmath}
\usepackage{amssymb}
\DeclareFontShape{OMX}{cmex}{m}{n}{<->sfixed*cmex10}{}
\makeatletter
\def\big#1{{\hbox{$\left#1\vbox to8.5\p@{}\right.\n@space$}}}
\def\Big#1{{\hbox{$\left#1\vbox to11.5\p@{}\right.\n@space$}}}
\def\bigg#1{{\hbox{$\left#1\vbox to14.5\p@{}\right.\n@space$}}}
\def\Bigg#1{{\hbox{$\left#1\vbox to17.5\p@{}\right.\n@space$}}}
\makeatother
\begin{document}
"""
DPI = 200
# Pages are A4 (pdfTeX's default) cut short at the bottom by a whole number of pixels: the formula sits at the
# top, so it rasterizes to exactly the same pixels while Ghostscript and Python handle 36% of the page.
# A formula whose ink reaches the short page's bottom edge is rendered again on a full page.
SHORT_PAGE = "\\pdfpageheight=\\dimexpr297mm-540bp\\relax\n"  # 540bp = 1500 px at 200 dpi: 839 of 2339 rows
BATCH_SIZE = 48  # formulas per pdflatex document
TEX_INSTALL_HINT = (
    "install TeX Live and Ghostscript for images like the real dataset's: Debian/Ubuntu/Colab "
    "`apt-get install texlive-latex-base texlive-fonts-recommended ghostscript`, macOS `brew install --cask "
    "mactex-no-gui ghostscript`, Windows: MiKTeX (miktex.org) and Ghostscript (ghostscript.com)"
)
_FORBIDDEN = re.compile(r"\\(?:end|begin)\s*\{\s*document\s*\}|\\(?:input|include|write|openout|openin|read|"
                        r"immediate|newpage|clearpage|pagebreak|shipout|output|typeout|special|csname|catcode)\b")
_LINE_NO = re.compile(r"^l\.\d+ ")  # the "l.123 <input line>" that follows every TeX error message
_MARK = re.compile(r"^I2L(BEGIN|END) (\d+)(?: (\d+))?$")


@dataclass
class RenderResult:
    """Processed images (None where a formula failed), the failed indices and the backend used."""

    images: list[Image.Image | None]
    failed: list[int]
    backend: str
    errors: dict[int, str] = field(default_factory=dict)  # index -> why it failed

    @property
    def ok(self) -> int:
        """Number of formulas rendered."""
        return len(self.images) - len(self.failed)

    def summary(self) -> str:
        """One line: how many rendered and the most common failure reasons."""
        from collections import Counter

        reasons = Counter(r.split(":")[0] for r in self.errors.values()).most_common(3)
        why = "; ".join(f"{n} x {r}" for r, n in reasons)
        return f"{self.ok}/{len(self.images)} formulas rendered with {self.backend}" + (
            f", {len(self.failed)} failed ({why})" if self.failed else "")


# ============================================================================ checks
def ghostscript() -> str | None:
    """The Ghostscript command on the PATH (``gs``; ``gswin64c``/``gswin32c`` on Windows), else None."""
    return next((name for name in ("gs", "gswin64c", "gswin32c") if shutil.which(name)), None)


def latex_available() -> bool:
    """True when both ``pdflatex`` and Ghostscript are on the PATH."""
    return shutil.which("pdflatex") is not None and ghostscript() is not None


def resolve_backend(backend: str = "auto") -> str:
    """``latex`` or ``mathtext``; ``auto`` falls back to mathtext with a warning when TeX is missing."""
    if backend not in ("auto", "latex", "mathtext"):
        raise I2LError(f"unknown render backend {backend!r}: choose auto, latex or mathtext")
    if backend == "auto":
        if latex_available():
            return "latex"
        warnings.warn(f"pdflatex/gs not found, rendering with matplotlib mathtext (images differ from the "
                      f"dataset's); {TEX_INSTALL_HINT}", stacklevel=3)
        return "mathtext"
    if backend == "latex" and not latex_available():
        raise I2LError(f"the latex backend needs pdflatex and gs on the PATH: {TEX_INSTALL_HINT}")
    return backend


def braces_balanced(formula: str) -> bool:
    """True when the unescaped ``{`` and ``}`` of ``formula`` balance (``\\{``, ``\\}`` don't count)."""
    depth = 0
    for tok in re.findall(r"\\.|[{}]", formula):
        depth += tok == "{"
        depth -= tok == "}"
        if depth < 0:
            return False
    return depth == 0


def precheck(formula: str) -> str | None:
    """The reason ``formula`` cannot be rendered before trying (empty, unbalanced, unsafe), else None."""
    if not formula.strip():
        return "empty formula"
    if not braces_balanced(formula):
        return "unbalanced braces"
    if _FORBIDDEN.search(formula):
        return "forbidden command (document structure, files or pages)"
    return None


# ============================================================================ page -> processed image
def page_to_image(page: np.ndarray) -> Image.Image | None:
    """A rendered grayscale page (H, W) uint8, white background -> processed image; None if it has no ink."""
    rows = np.flatnonzero(page.min(axis=1) < 255)
    if len(rows) == 0:
        return None
    band = page[rows[0]:rows[-1] + 1]
    cols = np.flatnonzero(band.min(axis=0) < 255)
    ink = band[:, cols[0]:cols[-1] + 1]
    binary = np.where(ink < 255, 0, 255).astype(np.uint8)  # like the official alpha-ignoring conversion
    return process_page(Image.fromarray(binary, mode="L"))


# ============================================================================ latex backend
def _document(formulas: list[str], short: bool = True, font_size: int = 12) -> str:
    preamble = PREAMBLE.replace("[12pt]", f"[{font_size}pt]")
    parts = [preamble.replace("\\begin{document}", SHORT_PAGE + "\\begin{document}") if short else preamble]
    for k, formula in enumerate(formulas):
        formula = formula.replace("\r", " ").replace("\n", " ")  # a ^^M would end the line: TeX drops the rest
        parts.append(f"\\typeout{{I2LBEGIN {k}}}\n\\begin{{displaymath}}\n{formula}\n\\end{{displaymath}}\n"
                     f"\\clearpage\n\\typeout{{I2LEND {k} \\arabic{{page}}}}\n")
    parts.append("\\end{document}\n")
    return "".join(parts)


def _parse_log(text: str) -> tuple[dict[int, int], dict[int, str], set[int]]:
    """Pages shipped ({k: page}), errors ({k: message}) and the formulas begun, from a pdflatex log."""
    pages: dict[int, int] = {}
    errors: dict[int, str] = {}
    begun: set[int] = set()
    current: int | None = None
    last_page = 1  # the page counter before the first formula
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _MARK.match(line.strip())
        if m:
            k = int(m.group(2))
            if m.group(1) == "BEGIN":
                current = k
                begun.add(k)
            elif k == current:
                page = int(m.group(3))
                shipped = page - last_page
                last_page = page
                if k not in errors:
                    if shipped == 1:
                        pages[k] = page - 1
                    else:
                        errors[k] = f"rendered {shipped} pages" if shipped else "renders empty (no page)"
                current = None
        elif (line.startswith("! ") and current is not None and current not in errors
              and any(_LINE_NO.match(after) for after in lines[i + 1:i + 16])):  # not a "! " in a box display
            errors[current] = "latex error: " + line[2:].strip()
    for k in begun:
        if k not in pages and k not in errors:
            errors[k] = "latex error: the run stopped inside this formula"
    return pages, errors, begun


def _read_pgm(stream: IO[bytes]) -> np.ndarray | None:
    """The next binary PGM image (H, W) uint8 of a stream, None at its end."""
    fields: list[bytes] = []
    token = b""
    while len(fields) < 4:
        ch = stream.read(1)
        if not ch:
            return None
        if ch == b"#" and not token:  # a comment ("# Image generated by GPL Ghostscript") runs to the line end
            stream.readline()
        elif ch.isspace():
            if token:
                fields.append(token)
                token = b""
        else:
            token += ch
    width, height = int(fields[1]), int(fields[2])
    data = stream.read(width * height)
    if len(data) < width * height:
        return None
    return np.frombuffer(data, np.uint8).reshape(height, width)


def _run_latex(formulas: list[str], workdir: Path, timeout: float, short: bool = True, font_size: int = 12
               ) -> tuple[dict, dict, set, Path | None]:
    tex = workdir / "batch.tex"
    tex.write_text(_document(formulas, short, font_size), encoding="utf-8")
    try:
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "-no-shell-escape", tex.name], cwd=workdir,
                       capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        log.warning("pdflatex timed out after %.0f s on a batch of %d formulas", timeout, len(formulas))
    logfile = workdir / "batch.log"
    text = logfile.read_text(encoding="latin-1") if logfile.exists() else ""
    pages, errors, begun = _parse_log(text)
    pdf = workdir / "batch.pdf"
    return pages, errors, begun, (pdf if pdf.exists() and pages else None)


_CUT = "cut"  # marks a page whose ink comes within 64 px of the bottom edge (it may go on below)


def _rasterize(pdf: Path, wanted: dict[int, int], timeout: float) -> dict[int, Image.Image | str | None]:
    """Render the pages of ``pdf`` with one Ghostscript call; {formula: processed image, None if blank, or
    :data:`_CUT` if the ink reaches the bottom edge of the page}."""
    by_page = {page: k for k, page in wanted.items()}
    cmd = [ghostscript() or "gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=pgmraw", f"-r{DPI}", "-dTextAlphaBits=4",
           "-dGraphicsAlphaBits=4", f"-sPageList={','.join(str(p) for p in sorted(by_page))}", "-o", "-",
           str(pdf)]
    out: dict[int, Image.Image | None] = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for page in sorted(by_page):
                pixels = _read_pgm(proc.stdout)
                if pixels is None:
                    break
                out[by_page[page]] = _CUT if pixels[-64:].min() < 255 else page_to_image(pixels)
        finally:
            timer.cancel()
            proc.stdout.close() if proc.stdout else None
    return out


def render_latex_batch(formulas: list[str], timeout: float = 120.0, font_size: int = 12
                       ) -> tuple[list[Image.Image | None], dict[int, str]]:
    """Render one batch with one pdflatex and one gs run per pass; (images, {index: reason} for failures).

    ``font_size``: the article class's size in pt (10, 11 or 12; the dataset's is 12)."""
    images: list[Image.Image | None] = [None] * len(formulas)
    errors: dict[int, str] = {}
    todo = []
    for k, formula in enumerate(formulas):
        reason = precheck(formula)
        if reason:
            errors[k] = reason
        else:
            todo.append(k)
    tall: list[int] = []
    with tempfile.TemporaryDirectory(prefix="i2l-render-") as tmp:
        workdir = Path(tmp)
        short = True
        while todo:
            pages, errs, begun, pdf = _run_latex([formulas[k] for k in todo], workdir, timeout, short, font_size)
            first = min(errs) if errs else len(todo)
            if pdf is not None:
                for j, img in _rasterize(pdf, pages, timeout).items():
                    if img is None:
                        errs[j] = "renders empty (no ink)"
                    elif isinstance(img, str):  # taller than the short page: again on a full page
                        tall.append(todo[j])
                        errs[j] = "tall"
                    else:
                        images[todo[j]] = img
            # The first failure is final; later formulas that failed or never began may be collateral: retry.
            retry = []
            for j, k in enumerate(todo):
                if images[k] is not None or errs.get(j) == "tall":
                    continue
                if j <= first or (j in errs and not errs[j].startswith("latex error")):
                    errors[k] = errs.get(j, "latex error: no page")
                else:
                    retry.append(k)
            if retry and len(retry) == len(todo):  # no progress (should not happen): give up on all
                for k in retry:
                    errors[k] = "latex error: no page"
                retry = []
            todo = retry
            if not todo and tall and short:
                todo, tall, short = sorted(tall), [], False
            for f in workdir.iterdir():
                f.unlink()
    for k in tall:  # still reaching the bottom of a full page
        errors[k] = "too tall for the page"
    return images, errors


# ============================================================================ mathtext backend
_FONT_SWITCH = {"\\cal": "\\mathcal", "\\bf": "\\mathbf", "\\rm": "\\mathrm", "\\it": "\\mathit",
                "\\sf": "\\mathsf", "\\tt": "\\mathtt", "\\mit": "\\mathit", "\\boldmath": "\\mathbf"}
_DROP = {"\\displaystyle", "\\textstyle", "\\scriptstyle", "\\scriptscriptstyle", "\\big", "\\Big", "\\bigg",
         "\\Bigg", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr", "\\biggl", "\\biggr", "\\Biggl", "\\Biggr",
         "\\nonumber", "\\limits", "\\nolimits"}
_RENAME = {"\\operatorname*": "\\operatorname", "\\stackrel": "\\overset", "\\textrm": "\\mathrm",
           "\\textnormal": "\\mathrm", "\\textup": "\\mathrm", "\\textit": "\\mathit", "\\dag": "\\dagger",
           "\\lbrack": "[", "\\rbrack": "]", "\\to": "\\rightarrow", "\\gets": "\\leftarrow"}
_UNSUPPORTED = re.compile(r"\\(?:begin|end|hspace|vspace|atop|over|choose|hline|put|makebox|raisebox|fbox|"
                          r"phantom|vphantom|hphantom|smash|label|kern|raise|rlap|llap|unitlength|tiny|small|"
                          r"large|Large|LARGE|footnotesize|scriptsize|circle|sp|sb|buildrel|binom|not)\b")


def to_mathtext(formula: str) -> str | None:
    """Rewrite a normalized formula for matplotlib mathtext; None when it uses something mathtext lacks."""
    if _UNSUPPORTED.search(formula):
        return None
    tokens = [_RENAME.get(t, t) for t in formula.split() if t not in _DROP]
    out: list[str] = []
    closers = [0]  # per open group (the formula itself first): extra "}" to emit when it closes
    for tok in tokens:
        if tok == "{":
            closers.append(0)
            out.append(tok)
        elif tok == "}":
            out.append("}" * (1 + closers.pop()))
        elif tok in _FONT_SWITCH:  # the switch applies to the rest of its group: \mathcal{ rest }
            out.append(_FONT_SWITCH[tok] + "{")
            closers[-1] += 1
        elif tok in ("\\", "~"):  # control space / tie: a \; keeps the gap and never glues onto a _ or ^
            out.append("\\;")
        else:
            out.append(tok)
    out.append("}" * closers[0])
    text = " ".join(out)
    text = re.sub(r"\s*([_^])\s*", r"\1", text)  # x _ { i } -> x_{i}: mathtext reads a spaced _ as text
    text = re.sub(r"\\(mathcal|mathbf|mathrm|mathit|mathsf|mathtt|operatorname)\s*\{", r"\\\1{", text)
    return re.sub(r"\s+\}", "}", re.sub(r"\{\s+", "{", text)).strip()  # mathtext ignores these spaces


def render_mathtext(formula: str) -> tuple[Image.Image | None, str | None]:
    """One formula with matplotlib mathtext; (processed image, None) or (None, reason)."""
    import io

    import matplotlib
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    reason = precheck(formula)
    if reason:
        return None, reason
    text = to_mathtext(formula)
    if text is None:
        return None, "mathtext cannot draw this construct (arrays, spacing boxes ...)"
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), matplotlib.rc_context({"mathtext.fontset": "cm"}):
            warnings.simplefilter("ignore")
            mathtext.math_to_image(f"${text}$", buf, dpi=DPI, format="png", prop=FontProperties(size=12))
    except Exception as exc:  # noqa: BLE001 - matplotlib raises ValueError/ParseException/...
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return None, "mathtext error: " + (lines[-1][:120] if lines else type(exc).__name__)
    rgba = Image.open(buf).convert("RGBA")
    page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    page.alpha_composite(rgba)
    image = page_to_image(np.asarray(page.convert("L")))
    return (image, None) if image is not None else (None, "renders empty (no ink)")


# ============================================================================ public
def _progress_bar(total: int, progress: bool | None, desc: str):
    from tqdm.auto import tqdm

    disable = (total < 200) if progress is None else not progress
    return tqdm(total=total, desc=desc, unit="formula", disable=disable)


def default_workers() -> int:
    """Parallel pdflatex/gs pipelines: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def render_formulas(formulas: list[str], backend: str = "auto", workers: int | None = None,
                    progress: bool | None = None, batch_size: int | None = None, font_size: int = 12) -> RenderResult:
    """Render ``formulas`` into processed images like the dataset's; failures are reported, never raised.

    ``workers`` parallel pdflatex+gs pipelines (default: the CPU count), ``batch_size`` formulas per LaTeX
    document, a progress bar when ``progress`` (default: for 200 formulas or more); ``font_size`` in pt
    (10, 11 or 12, the dataset's; the latex backend only).
    """
    formulas = list(formulas)
    backend = resolve_backend(backend)
    if font_size not in (10, 11, 12):
        raise I2LError(f"font_size must be 10, 11 or 12 (the article class's sizes), got {font_size}")
    if font_size != 12 and backend != "latex":
        raise I2LError(f"font_size {font_size} needs the latex backend (pdflatex); mathtext renders one size")
    n = len(formulas)
    images: list[Image.Image | None] = [None] * n
    errors: dict[int, str] = {}
    bar = _progress_bar(n, progress, f"render ({backend})")
    with bar:
        if backend == "mathtext":
            for k, formula in enumerate(formulas):
                images[k], reason = render_mathtext(formula)
                if reason:
                    errors[k] = reason
                bar.update(1)
        elif n:
            workers = workers or default_workers()
            n_batches = workers * -(-n // (workers * BATCH_SIZE))  # a multiple of workers: even shares
            size = batch_size or max(4, -(-n // n_batches))
            starts = list(range(0, n, size))
            with ThreadPoolExecutor(max_workers=workers) as pool:  # the work happens in pdflatex/gs processes
                futures = {pool.submit(render_latex_batch, formulas[s:s + size], font_size=font_size): s
                           for s in starts}
                for future in as_completed(futures):
                    s = futures[future]
                    batch_images, batch_errors = future.result()
                    images[s:s + len(batch_images)] = batch_images
                    errors.update({s + j: reason for j, reason in batch_errors.items()})
                    bar.update(len(batch_images))
    failed = sorted(errors)
    return RenderResult(images=images, failed=failed, backend=backend, errors=errors)


def render_formula(formula: str, backend: str = "auto") -> Image.Image:
    """One formula to one processed image; raises :class:`I2LError` with the reason when it fails."""
    result = render_formulas([formula], backend=backend, workers=1, progress=False)
    if result.failed:
        raise I2LError(f"cannot render {formula[:60]!r} with {result.backend}: {result.errors[0]}")
    assert result.images[0] is not None
    return result.images[0]


__all__ = ["RenderResult", "render_formulas", "render_formula", "render_latex_batch", "render_mathtext",
           "to_mathtext", "page_to_image", "latex_available", "resolve_backend", "precheck", "PREAMBLE",
           "TEX_INSTALL_HINT"]
