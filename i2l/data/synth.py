"""Synthetic datasets: formulas of :mod:`i2l.data.grammar` (or of a formula file) rendered in the processed
Im2Latex layout.

:func:`read_formula_file` reads a formula list (one per line, blank and non-UTF-8 lines skipped with a count);
:func:`make_dataset` renders a dataset in the processed Im2Latex layout, split train/validate/test
(``SPLIT_FRACTIONS``); :func:`ensure_dataset` makes the synthetic set a config points at when it is missing.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path

from PIL import Image

from i2l.data.grammar import FormulaGenerator
from i2l.errors import I2LError

log = logging.getLogger(__name__)

SPLIT_FRACTIONS = (("train", 0.8), ("validate", 0.1), ("test", 0.1))
MAX_IMAGE_SIZE = (500, 160)  # (width, height) of a processed image, the official train/validate filter


def is_dataset(path: str | Path) -> bool:
    """True when ``path`` holds a formula list of the processed layout (plain or ``im2latex_`` names)."""
    path = Path(path)
    return any((path / f"{prefix}formulas.norm.lst").is_file() for prefix in ("", "im2latex_"))


def read_formula_file(path: str | Path) -> tuple[list[str], dict[str, list[int]]]:
    """Non-blank UTF-8 lines of a formula list (split on ``\\n``) and {"blank"/"not utf-8": line numbers}."""
    path = Path(path)
    if not path.is_file():
        raise I2LError(f"formula list {path} not found: give a text file with one LaTeX formula per line")
    formulas: list[str] = []
    skipped: dict[str, list[int]] = {"blank": [], "not utf-8": []}
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for lineno, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            skipped["not utf-8"].append(lineno)
            continue
        if not text:
            skipped["blank"].append(lineno)
            continue
        formulas.append(" ".join(text.split()))  # one line, single spaces (tabs and \r included)
    for why, where in skipped.items():
        if where:
            shown = ", ".join(map(str, where[:10])) + (" ..." if len(where) > 10 else "")
            log.warning("%s: skipped %d %s line(s) (line %s)", path, len(where), why, shown)
    if not formulas:
        raise I2LError(f"{path}: no formulas (all {len(lines)} lines blank or not UTF-8); write one formula "
                       "per line, UTF-8 encoded")
    return formulas, skipped


def _split_names(names: list[str], seed: int) -> dict[str, list[str]]:
    order = list(range(len(names)))
    random.Random(seed).shuffle(order)
    n = len(order)
    n_val = max(1, round(0.1 * n)) if n >= 3 else 0
    n_test = max(1, round(0.1 * n)) if n >= 3 else 0
    n_train = n - n_val - n_test
    parts = {"train": order[:n_train], "validate": order[n_train:n_train + n_val],
             "test": order[n_train + n_val:]}
    return {split: [names[i] for i in sorted(idx)] for split, idx in parts.items()}


def make_dataset(out: str | Path, n: int = 4000, seed: int = 0, formulas_file: str | Path | None = None,
                 backend: str = "auto", workers: int | None = None, overwrite: bool = False,
                 max_len: int | None = None, progress: bool | None = None, level: str = "full",
                 mean_len: float | None = None, std_len: float | None = None) -> Path:
    """Render a dataset in the processed Im2Latex layout at ``out``; returns ``out``.

    ``n`` generated formulas (seeded; at most ``max_len`` tokens; ``level`` "full" or "basic" and the target
    length ``mean_len`` / ``std_len``, see :class:`FormulaGenerator`), or every formula of ``formulas_file``
    (one per line; blank and non-UTF-8 lines are skipped with a count; ``n`` is then ignored). Formulas
    that fail to render are dropped (generated ones are replaced). Splits train/validate/test 80/10/10.
    Built in a temporary folder beside ``out`` and renamed into place: never a half-written dataset.
    An existing dataset is only replaced with ``overwrite=True``. ``synth_report.json`` records the counts.
    """
    from i2l.data.render import render_formulas, resolve_backend

    out = Path(out).expanduser().absolute()
    if out.exists() and (out.is_file() or any(out.iterdir())) and not overwrite:
        raise I2LError(f"{out} already exists; choose another --out or pass --overwrite (overwrite=True) "
                       "to replace it")
    backend = resolve_backend(backend)
    report: dict = {"backend": backend, "seed": seed, "source": str(formulas_file) if formulas_file else
                    "generated", "failed": {}}
    if formulas_file is None:
        report.update(level=level, mean_len=mean_len, std_len=std_len)
    if formulas_file is not None:
        formulas, skipped = read_formula_file(formulas_file)
        report["skipped_lines"] = {k: len(v) for k, v in skipped.items()}
    else:
        if n < 1:
            raise I2LError(f"n must be at least 1 (got {n})")
        generator = FormulaGenerator(seed=seed, max_len=max_len, level=level, mean_len=mean_len, std_len=std_len)
        formulas = generator.generate(n)
    report["requested"] = len(formulas)

    kept: list[tuple[str, Image.Image]] = []  # (formula, processed image)
    pending = formulas
    for attempt in range(4):
        result = render_formulas(pending, backend=backend, workers=workers, progress=progress)
        for k, formula in enumerate(pending):
            image = result.images[k]
            if image is None:
                reason = result.errors.get(k, "failed").split(":")[0]
                report["failed"][reason] = report["failed"].get(reason, 0) + 1
            elif formulas_file is None and (image.width > MAX_IMAGE_SIZE[0] or image.height > MAX_IMAGE_SIZE[1]):
                report["failed"]["too large"] = report["failed"].get("too large", 0) + 1
            else:
                kept.append((formula, image))
        missing = len(formulas) - len(kept)
        if formulas_file is not None or missing == 0 or attempt == 3:
            break
        pending = generator.generate(missing)  # replace the generated formulas that failed
    dropped = sum(report["failed"].values())
    if dropped:
        log.warning("%d formula(s) could not be rendered with %s and were dropped: %s", dropped, backend,
                    report["failed"])
    if not kept:
        raise I2LError(f"none of the {len(formulas)} formulas rendered with {backend}: {report['failed']}; "
                       "check the formulas (one LaTeX formula per line, without $ or \\[ \\])")
    report["rendered"] = len(kept)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "images_processed").mkdir(parents=True)
        names = [f"{k:06d}.png" for k in range(len(kept))]
        for name, (_, image) in zip(names, kept):
            image.save(tmp / "images_processed" / name)
        (tmp / "formulas.norm.lst").write_text("".join(f + "\n" for f, _ in kept), encoding="utf-8")
        index = {name: k for k, name in enumerate(names)}
        splits = _split_names(names, seed)
        for split, split_names in splits.items():
            (tmp / f"{split}_filter.lst").write_text("".join(f"{m} {index[m]}\n" for m in split_names))
        report["splits"] = {split: len(v) for split, v in splits.items()}
        (tmp / "synth_report.json").write_text(json.dumps(report, indent=2) + "\n")
        if out.exists() and (out.is_file() or any(out.iterdir())) and not overwrite:
            if is_dataset(out):  # another process finished the same dataset first: keep theirs
                log.info("%s was written meanwhile by another process; keeping it", out)
                return out
            raise I2LError(f"{out} appeared while the dataset was being made; pass overwrite=True to replace it")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("dataset of %d formulas written to %s", len(kept), out)
    return out


SHARD_PREFIX = "shard-"


def shard_dirs(path: str | Path) -> list[Path]:
    """The datasets that make up ``path``: ``[path]`` when it is one, else its complete ``shard-*`` sub-folders
    in order (empty when there are none)."""
    path = Path(path)
    if is_dataset(path):
        return [path]
    if not path.is_dir():
        return []
    shards = [p for p in path.glob(SHARD_PREFIX + "*") if p.is_dir() and is_dataset(p)
              and p.name[len(SHARD_PREFIX):].isdigit()]
    return sorted(shards, key=lambda p: int(p.name[len(SHARD_PREFIX):]))


def _requested(shard: Path) -> int | None:
    """How many formulas a shard was made for (its ``synth_report.json``), None when it does not say."""
    try:
        return int(json.loads((shard / "synth_report.json").read_text())["requested"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def make_shards(out: str | Path, n: int, shard_size: int, seed: int = 0, **kwargs) -> Path:
    """``n`` generated formulas as ``ceil(n / shard_size)`` datasets ``out/shard-000``, ``out/shard-001``, ...

    Shard ``k`` is :func:`make_dataset` with seed ``seed + k`` (``kwargs`` as there). Shards that are already
    complete are kept, so an interrupted run resumes with the next one, and a larger ``n`` adds shards.
    """
    if shard_size < 1 or n < 1:
        raise I2LError(f"n and shard_size must be at least 1 (got n={n}, shard_size={shard_size})")
    out = Path(out)
    count = -(-n // shard_size)
    for k in range(count):
        shard = out / f"{SHARD_PREFIX}{k:03d}"
        size = min(shard_size, n - k * shard_size)
        if is_dataset(shard) and _requested(shard) in (None, size):
            continue  # complete (a last shard made for a smaller n is made again at its new size)
        log.info("rendering shard %d of %d (%d formulas) into %s", k + 1, count, size, shard)
        make_dataset(shard, n=size, seed=seed + k, overwrite=shard.exists(), **kwargs)
    return out


def ensure_dataset(cfg) -> Path:
    """``cfg.data_path``, generating the synthetic set there (``cfg.synth_size`` formulas) if missing.

    With ``cfg.synth_shard_size`` the set is made of shards (:func:`make_shards`) and the missing ones are
    rendered. Only a synthetic path (its folder name starts with ``synth``) is generated; for any other missing
    path an :class:`I2LError` says how to get the data.
    """
    path = cfg.data_path
    shards = cfg.synth_shard_size
    wanted = -(-cfg.synth_size // shards) if shards else 1
    found = shard_dirs(path)
    if is_dataset(path) or (found and (not shards or len(found) >= wanted)):
        return path
    if not path.name.startswith("synth"):
        raise I2LError(f"no dataset at {path}: download Im2Latex-100K with `i2l data download --dest {path}`, "
                       "or point data_dir at a synthetic set (e.g. data/synth) to generate one")
    log.info("generating %d synthetic formulas (level %s) into %s", cfg.synth_size, cfg.synth_level, path)
    options = dict(max_len=cfg.max_len, level=cfg.synth_level, mean_len=cfg.synth_mean_len,
                   std_len=cfg.synth_std_len)
    try:
        if shards:
            return make_shards(path, n=cfg.synth_size, shard_size=shards, seed=cfg.synth_seed, **options)
        return make_dataset(path, n=cfg.synth_size, seed=cfg.synth_seed, **options)
    except I2LError:
        if is_dataset(path):  # another process made it meanwhile
            return path
        raise


__all__ = ["make_dataset", "make_shards", "shard_dirs", "SHARD_PREFIX", "ensure_dataset", "read_formula_file", "is_dataset", "SPLIT_FRACTIONS",
           "MAX_IMAGE_SIZE"]
