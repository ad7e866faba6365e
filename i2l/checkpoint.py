"""The checkpoint format: config, vocabulary and weights, read and written without Lightning.

Two kinds of file hold a model, and :func:`load_checkpoint` reads both:

- a **training checkpoint** (``.ckpt``), written by Lightning during ``i2l train``: the weights under
  ``state_dict`` with a ``model.`` prefix, ``{"config": ..., "vocab": ...}`` under ``hyper_parameters``,
  and the optimiser and loop state needed to resume;
- a **weights file** (``.pt``), what a release ships: ``{"format": "i2l-weights", "version": 1,
  "config": ..., "vocab": ..., "state_dict": ...}``, the weights alone (fp16 by default, half the size of
  fp32), written by :func:`save_weights` or :func:`export_weights`.

Both are written atomically (a temporary file renamed over the target): an interrupted write never leaves
a half-written file, nor destroys the file it was replacing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from i2l.config import Config
from i2l.errors import I2LError
from i2l.model import Im2LatexModel
from i2l.tokenizer import Vocab

WEIGHTS_FORMAT = "i2l-weights"
WEIGHTS_VERSION = 1


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    if not path.is_file():
        raise I2LError(f"checkpoint {path} not found: train one with `i2l train` or pass the path of a .ckpt "
                       "or .pt file")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated, not a torch file, ...
        raise I2LError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}): the file is corrupt or "
            "not a PyTorch checkpoint; use another checkpoint (e.g. last.ckpt of the run) or train again"
        ) from exc


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of the file at ``path`` (read in 1 MB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> Path:
    """``path`` when the file's SHA-256 is ``expected``; an :class:`I2LError` saying what to do otherwise."""
    path = Path(path)
    if not path.is_file():
        raise I2LError(f"weights file {path} not found: reinstall i2l (pip install --force-reinstall i2l) or "
                       "pass --checkpoint with a model of your own")
    actual = file_sha256(path)
    if actual != expected.lower():
        raise I2LError(f"weights file {path} is damaged or not the expected one (SHA-256 {actual[:12]}..., "
                       f"expected {expected[:12]}...): reinstall i2l (pip install --force-reinstall i2l) or "
                       "pass --checkpoint with a model of your own")
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", sha256: str | None = None) -> dict:
    """The raw dictionary of a training checkpoint or a weights file, or an :class:`I2LError` saying why not.

    ``sha256``: refuse the file unless its SHA-256 is this (a shipped weights file), before unpickling it.
    """
    path = Path(path)
    if sha256 is not None:
        verify_sha256(path, sha256)
    ckpt = _torch_load(path, map_location)
    if isinstance(ckpt, dict) and ckpt.get("format") == WEIGHTS_FORMAT:
        if ckpt.get("version") != WEIGHTS_VERSION:
            raise I2LError(f"{path} is an i2l weights file of version {ckpt.get('version')!r}; this i2l reads "
                           f"version {WEIGHTS_VERSION}: upgrade i2l or export the weights again")
        if not all(k in ckpt for k in ("config", "vocab", "state_dict")):
            raise I2LError(f"{path} is an incomplete i2l weights file (config, vocab or state_dict missing): "
                           "export it again with i2l.checkpoint.export_weights")
        return ckpt
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "config" not in hp or "vocab" not in hp or "state_dict" not in ckpt:
        raise I2LError(
            f"checkpoint {path} is not an i2l checkpoint (it lacks the config, the vocabulary or the weights): "
            "use a checkpoint written by `i2l train` / i2l.train.fit, or a weights file of i2l.checkpoint"
        )
    return ckpt


def checkpoint_parts(ckpt: dict) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """``(config dict, vocab dict, model state dict without prefixes)`` of a dictionary read by
    :func:`read_checkpoint`, whichever of the two kinds it is."""
    if ckpt.get("format") == WEIGHTS_FORMAT:
        return ckpt["config"], ckpt["vocab"], ckpt["state_dict"]
    hp = ckpt["hyper_parameters"]
    state = {k.removeprefix("model.").replace("_orig_mod.", ""): v
             for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return hp["config"], hp["vocab"], state


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", sha256: str | None = None
) -> tuple[Im2LatexModel, Vocab, Config]:
    """``(model, vocab, cfg)`` from a training checkpoint or a weights file; the model in eval mode, fp32.
    ``sha256`` as in :func:`read_checkpoint`."""
    ckpt = read_checkpoint(path, map_location, sha256=sha256)
    config, vocab_dict, state = checkpoint_parts(ckpt)
    try:
        known = set(Config.__dataclass_fields__)
        cfg = Config.from_dict({k: v for k, v in config.items() if k in known})
        vocab = Vocab.from_dict(vocab_dict)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise I2LError(f"checkpoint {path} has an unreadable config or vocabulary: {exc}") from exc
    model = Im2LatexModel(cfg, len(vocab))
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise I2LError(
            f"checkpoint {path} does not match the model its config describes ({str(exc)[:300]}): "
            "it was written by another version of i2l; retrain or use a matching version"
        ) from exc
    model.eval()
    return model, vocab, cfg


def ordinary_mode(fd: int) -> None:
    """Give a file made by ``tempfile.mkstemp`` (mode 0600) the mode an ordinary new file gets (0666 less the
    umask), so that a renamed-into-place file reads like any other."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)


def write_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        ordinary_mode(fd)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_weights(model: torch.nn.Module, vocab: Vocab, cfg: Config, path: str | Path,
                 dtype: torch.dtype = torch.float16) -> Path:
    """Write a weights file: the model's weights in ``dtype`` (floating tensors only), its config and vocabulary."""
    state = {k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    return write_atomic({"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "config": cfg.to_dict(),
                         "vocab": vocab.to_dict(), "dtype": str(dtype).removeprefix("torch."),
                         "state_dict": state}, path)


def export_weights(checkpoint: str | Path, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """The weights file of a training checkpoint (what a release ships); the checkpoint is left as it is."""
    if Path(checkpoint).resolve() == Path(path).resolve():
        raise I2LError(f"export_weights would overwrite its input {checkpoint}: choose another output path")
    model, vocab, cfg = load_checkpoint(checkpoint)
    return save_weights(model, vocab, cfg, path, dtype=dtype)


__all__ = ["WEIGHTS_FORMAT", "WEIGHTS_VERSION", "file_sha256", "verify_sha256", "read_checkpoint",
           "checkpoint_parts", "load_checkpoint", "save_weights", "export_weights", "write_atomic"]
