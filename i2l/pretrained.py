"""The shipped reference model: fp16 weights inside the package, checked against their SHA-256 before loading.

``i2l/weights/`` holds three files:

- ``reference.pt``: the weights file (:mod:`i2l.checkpoint` format: fp16 weights, config, vocabulary);
- ``reference.json``: its card in numbers: ``sha256``, ``name``, the training it had (steps, CPU-hours, data)
  and the validation-proxy scores it was shipped with;
- ``MODEL_CARD.md``: the model card for people;
- ``reference_metrics.csv``: the training log of its latest stretch (Lightning's ``metrics.csv``), for the
  training curves of notebook 05.

:func:`read_pretrained` reads the weights after checking the SHA-256 (a damaged or replaced file is refused
before it is unpickled); :func:`ship` replaces them, only when a new checkpoint scores better on the proxy.
Nothing here imports training code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from i2l.checkpoint import export_weights, file_sha256, ordinary_mode, read_checkpoint
from i2l.errors import I2LError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "reference.pt"
CARD_FILE = WEIGHTS_DIR / "reference.json"
MODEL_CARD = WEIGHTS_DIR / "MODEL_CARD.md"
TRAINING_LOG = WEIGHTS_DIR / "reference_metrics.csv"
#: The proxy score that decides whether a new checkpoint replaces the shipped one (higher is better).
SHIP_METRIC = "bleu"
#: The simple-formula check (issue 13): this many short formulas of the generator's basic level, with a seed the
#: reference data never used (its shards are the full level, seeds 1000 and up), rendered by pdflatex when it runs.
SIMPLE_N, SIMPLE_MAX_LEN, SIMPLE_SEED = 10, 10, 20261202
#: The target: at least this many of the SIMPLE_N read exactly.
SIMPLE_TARGET = 8


def card(weights_dir: str | Path | None = None) -> dict[str, Any]:
    """The shipped model's card (``reference.json``), or an :class:`I2LError` saying what to do."""
    path = Path(weights_dir or WEIGHTS_DIR) / CARD_FILE.name
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise I2LError(f"the shipped model's card {path} is missing: reinstall i2l (pip install --force-reinstall "
                       "i2l) or pass --checkpoint with a model of your own") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise I2LError(f"the shipped model's card {path} cannot be read ({exc}): reinstall i2l or pass "
                       "--checkpoint with a model of your own") from exc
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), str) or "name" not in data:
        raise I2LError(f"the shipped model's card {path} lacks its sha256 or name: reinstall i2l or pass "
                       "--checkpoint with a model of your own")
    return data


def model_name(weights_dir: str | Path | None = None) -> str:
    """The name a door reports for the shipped model, e.g. ``i2l-reference-3``."""
    return str(card(weights_dir)["name"])


def read_pretrained(weights_dir: str | Path | None = None, map_location: str = "cpu") -> dict:
    """The shipped weights file's dictionary, after checking its SHA-256 against the card."""
    folder = Path(weights_dir or WEIGHTS_DIR)
    return read_checkpoint(folder / WEIGHTS_FILE.name, map_location, sha256=card(folder)["sha256"])


def training_log(source: str | Path, weights_dir: str | Path | None = None) -> Path:
    """The training log (``metrics.csv``) of a model: the shipped model's for ``"pretrained"``, else the one of the
    run folder a checkpoint lies in (``runs/<name>/checkpoints/best.ckpt`` -> ``runs/<name>/metrics.csv``)."""
    if str(source) == "pretrained":
        path = Path(weights_dir or WEIGHTS_DIR) / TRAINING_LOG.name
    else:
        path = Path(source).resolve().parent.parent / "metrics.csv"
    if not path.is_file():
        raise I2LError(f"no training log for {source}: {path} does not exist (a run of i2l train writes metrics.csv "
                       "in its run folder; a weights file copied elsewhere has none)")
    return path


def simple_formulas(n: int = SIMPLE_N) -> list[str]:
    """The simple formulas of the reading check (deterministic; never in the training data)."""
    from i2l.data.grammar import FormulaGenerator

    return FormulaGenerator(seed=SIMPLE_SEED, level="basic", max_len=SIMPLE_MAX_LEN).generate(n)


def read_simple(predictor: Any, n: int = SIMPLE_N) -> dict[str, Any]:
    """Render :func:`simple_formulas` with pdflatex now and read them with ``predictor`` (greedy):
    ``{"n", "exact", "bleu", "misread": [(reference, reading)]}``."""
    from i2l.data.render import latex_available, render_formulas
    from i2l.metrics import compute_metrics

    if not latex_available():
        raise I2LError("the simple-formula check renders with pdflatex and Ghostscript, as the model's data was: "
                       "install them (apt-get install texlive-latex-base ghostscript)")
    formulas = simple_formulas(n)
    rendered = render_formulas(formulas, backend="latex", progress=False)
    if any(img is None for img in rendered.images):
        raise I2LError(f"the simple formulas did not all render: {rendered.errors}")
    readings = [r.latex for r in predictor.predict(rendered.images, beam=1)]
    return {"n": n, "exact": sum(a == b for a, b in zip(readings, formulas)),
            "bleu": compute_metrics(formulas, readings)["bleu"],
            "misread": [(ref, got) for ref, got in zip(formulas, readings) if ref != got]}


def _write_json_atomic(data: dict, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    ordinary_mode(fd)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def ship(checkpoint: str | Path, scores: dict[str, float], training: dict[str, Any],
         weights_dir: str | Path | None = None, force: bool = False, metrics_csv: str | Path | None = None) -> bool:
    """Replace the shipped model with ``checkpoint`` when its proxy ``scores`` beat the shipped ones.

    ``scores`` are the validation-proxy figures of ``checkpoint`` measured through the Predictor
    (``benchmarks/reference.py``); ``training`` says what training it had (steps, CPU-hours, data). The new
    weights are exported to a temporary file and renamed into place, then the card: an interrupted or failed
    call leaves the shipped model as it was. ``metrics_csv``, the run's training log, is shipped beside it
    (:func:`training_log`). Returns whether it replaced it.
    """
    folder = Path(weights_dir or WEIGHTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    old: dict[str, Any] | None = None
    if (folder / CARD_FILE.name).is_file():
        old = card(folder)
    if SHIP_METRIC not in scores:
        raise I2LError(f"ship needs the proxy's {SHIP_METRIC!r} among the scores (got {sorted(scores)})")
    if old is not None and not force and scores[SHIP_METRIC] <= old.get("scores", {}).get(SHIP_METRIC, -1.0):
        return False
    version = int(old.get("version", 0)) + 1 if old else 1
    tmp = folder / f".{WEIGHTS_FILE.name}.new"
    log_tmp = folder / f".{TRAINING_LOG.name}.new"
    try:
        export_weights(checkpoint, tmp)
        sha = file_sha256(tmp)
        if metrics_csv is not None:
            log_tmp.write_bytes(Path(metrics_csv).read_bytes())
        os.replace(tmp, folder / WEIGHTS_FILE.name)
        if metrics_csv is not None:
            os.replace(log_tmp, folder / TRAINING_LOG.name)
    finally:
        tmp.unlink(missing_ok=True)
        log_tmp.unlink(missing_ok=True)
    _write_json_atomic({"name": f"i2l-reference-{version}", "version": version, "sha256": sha,
                        "scores": dict(scores), "training": dict(training)}, folder / CARD_FILE.name)
    return True


__all__ = ["WEIGHTS_DIR", "WEIGHTS_FILE", "CARD_FILE", "MODEL_CARD", "SHIP_METRIC", "SIMPLE_N", "SIMPLE_TARGET",
           "TRAINING_LOG", "card", "model_name", "read_pretrained", "ship", "training_log", "simple_formulas", "read_simple"]
