"""The Predictor: a checkpoint in, LaTeX out, for the CLI, the web API and the notebook widgets alike.

>>> predictor = Predictor.pretrained()  # the shipped model; or Predictor.from_checkpoint("runs/cpu/checkpoints/best.ckpt")
>>> [result] = predictor.predict(["formula.png"], beam=5)
>>> result.latex, result.candidates[0].score

Images go through :func:`i2l.preprocess.prepare` (any mode, background and scale), are batched by width
and decoded with :func:`i2l.decoding.decode` under a lock, so one Predictor can serve many threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from i2l.checkpoint import load_checkpoint
from i2l.config import MAX_BEAM, PRETRAINED, Config
from i2l.decoding import cross_attention_maps, decode
from i2l.errors import I2LError
from i2l.images import ImageSource, load_image, to_batch, to_gray
from i2l.preprocess import PAGE_GLYPH_HEIGHT, Prepared, prepare
from i2l.tokenizer import Vocab


@dataclass
class Candidate:
    """One beam search hypothesis: its LaTeX (space-separated tokens) and its length-normalised score."""

    latex: str
    score: float


@dataclass
class PredictionResult:
    """What the model read in one image; ``error`` is set (and the rest empty) when the image was unusable."""

    latex: str = ""
    tokens: list[str] = field(default_factory=list)
    token_scores: list[float] = field(default_factory=list)  # probability of each token of ``tokens``
    score: float | None = None  # length-normalised log-probability of the best hypothesis
    candidates: list[Candidate] = field(default_factory=list)  # best first; one for greedy decoding
    error: str | None = None
    token_ids: list[int] = field(default_factory=list)
    image: Image.Image | None = field(default=None, repr=False)  # the processed image the model saw
    scale: float | None = None  # how much preprocessing rescaled the input

    @property
    def ok(self) -> bool:
        """True when the image was read (no error)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: latex, tokens, token_scores, score, candidates [{latex, score}], error, scale."""
        return {
            "latex": self.latex,
            "tokens": self.tokens,
            "token_scores": [round(p, 6) for p in self.token_scores],
            "score": None if self.score is None else round(self.score, 6),
            "candidates": [{"latex": c.latex, "score": round(c.score, 6)} for c in self.candidates],
            "error": self.error,
            "scale": None if self.scale is None else round(self.scale, 4),
        }


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if available, then MPS, else the CPU; any other value as given."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _is_single(images: Any) -> bool:
    return isinstance(images, (str, Path, bytes, bytearray, memoryview, Image.Image, np.ndarray, torch.Tensor))


class Predictor:
    """A trained model with its vocabulary and config; :meth:`predict` turns images into LaTeX."""

    def __init__(self, model: torch.nn.Module, vocab: Vocab, cfg: Config, device: str | torch.device = "auto",
                 batch_size: int = 16, page_glyph_height: float = PAGE_GLYPH_HEIGHT,
                 scales: Sequence[float] = (1.0,), model_name: str | None = None) -> None:
        self.model_name = model_name or cfg.name  # which model answers: the doors report it
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.vocab = vocab
        self.cfg = cfg
        self.batch_size = batch_size
        self.page_glyph_height = page_glyph_height
        self.scales = tuple(scales)
        self.lock = threading.Lock()  # model calls one at a time: safe from many threads

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", **kwargs: Any) -> Predictor:
        """Load a training checkpoint or a weights file (:mod:`i2l.checkpoint`); config and vocabulary come from it."""
        model, vocab, cfg = load_checkpoint(path, map_location="cpu")
        return cls(model, vocab, cfg, device=device, **{"model_name": str(path), **kwargs})

    @classmethod
    def pretrained(cls, device: str | torch.device = "auto", weights_dir: str | Path | None = None,
                   **kwargs: Any) -> Predictor:
        """The shipped reference model (``i2l/weights``, checked against its SHA-256; see :mod:`i2l.pretrained`)."""
        from i2l.pretrained import WEIGHTS_DIR, WEIGHTS_FILE, card

        folder = Path(weights_dir or WEIGHTS_DIR)
        info = card(folder)
        model, vocab, cfg = load_checkpoint(folder / WEIGHTS_FILE.name, map_location="cpu", sha256=info["sha256"])
        return cls(model, vocab, cfg, device=device, **{"model_name": info["name"], **kwargs})

    @classmethod
    def load(cls, source: str | Path = PRETRAINED, device: str | torch.device = "auto", **kwargs: Any) -> Predictor:
        """``"pretrained"``: the shipped model (:meth:`pretrained`); else the checkpoint or weights file at ``source``
        (:meth:`from_checkpoint`). What every door calls."""
        if str(source) == PRETRAINED:
            return cls.pretrained(device=device, **kwargs)
        return cls.from_checkpoint(source, device=device, **kwargs)

    # ------------------------------------------------------------------ steps
    def prepare(self, image: ImageSource) -> Prepared:
        """The processed image the model will see (see :mod:`i2l.preprocess`)."""
        return prepare(image, page_glyph_height=self.page_glyph_height)

    def _decode(self, images: list[Image.Image], beam: int, max_len: int) -> list[PredictionResult]:
        batch, sizes = to_batch(images)  # (B, 1, H, W), (B, 2)
        with self.lock, torch.inference_mode():
            hyps = decode(self.model, batch.to(self.device), sizes.to(self.device), beam_size=beam,
                          max_len=max_len, length_penalty=self.cfg.length_penalty, special=self.vocab.special)
        results = []
        for per_image in hyps:
            best = per_image[0]
            tokens = self.vocab.decode(best.tokens)
            probs = [float(np.exp(lp)) for lp in best.token_logprobs[: len(best.tokens)]]
            candidates = [Candidate(" ".join(self.vocab.decode(h.tokens)), float(h.score)) for h in per_image]
            results.append(PredictionResult(latex=" ".join(tokens), tokens=tokens, token_scores=probs,
                                            score=float(best.score), candidates=candidates,
                                            token_ids=list(best.tokens)))
        return results

    def _decode_robust(self, images: list[Image.Image], beam: int, max_len: int,
                       strict: bool) -> list[PredictionResult]:
        """:meth:`_decode`; with ``strict=False`` a failing batch is decoded image by image, so that one image
        that cannot be decoded (too large for memory, say) fails alone, with ``error`` set."""
        try:
            return self._decode(images, beam, max_len)
        except (I2LError, RuntimeError) as exc:
            if strict:
                raise
            if len(images) == 1:
                return [PredictionResult(error=f"decoding failed: {str(exc)[:300]}")]
        return [r for image in images for r in self._decode_robust([image], beam, max_len, strict)]

    # ------------------------------------------------------------------ the entry point
    def predict(self, images: ImageSource | list[ImageSource], beam: int = 1, max_len: int | None = None,
                strict: bool = True, scales: Sequence[float] | None = None,
                as_is: bool = False) -> list[PredictionResult]:
        """One result per image (paths, bytes, PIL images, arrays); beam > 1 adds the beam's candidates.

        ``strict=False``: an unusable image gives a result with ``error`` set instead of raising I2LError (its
        ``image`` is None when the image could not be read, set when it was read but decoding failed).
        ``scales`` (default ``self.scales``, i.e. ``(1.0,)``): read each image also at these multiples of the
        normalised glyph height, e.g. ``(0.85, 1.0, 1.2)``, and keep the most confident reading (best score):
        a remedy for formulas whose glyphs are unusually tall or small, at the cost of one decoding per scale.
        ``as_is=True``: the images are already processed like the dataset's (e.g. its ``images_processed``):
        they reach the model as they are, in greyscale, with no cropping or rescaling; for comparisons.
        """
        if _is_single(images):
            images = [images]
        images = list(images)
        if not isinstance(beam, int) or not 1 <= beam <= MAX_BEAM:
            raise I2LError(f"beam must be an integer from 1 to {MAX_BEAM}, got {beam!r}")
        max_len = int(max_len or self.cfg.max_len)
        if max_len < 1:
            raise I2LError(f"max_len must be at least 1, got {max_len}")
        scales = (1.0,) if as_is else tuple(scales or self.scales)
        if not scales or any(not 0.25 <= f <= 4 for f in scales):
            raise I2LError(f"scales must be factors between 0.25 and 4, got {scales}")
        results: list[PredictionResult | None] = [None] * len(images)
        prepared: dict[tuple[int, float], Prepared] = {}
        for k, image in enumerate(images):
            try:
                loaded = load_image(image)
                for f in scales:
                    prepared[k, f] = (Prepared(to_gray(loaded), None, 1.0, loaded.size, "given") if as_is else
                                      prepare(loaded, page_glyph_height=self.page_glyph_height * f))
            except I2LError as exc:
                if strict:
                    raise
                results[k] = PredictionResult(error=str(exc))
                for f in scales:
                    prepared.pop((k, f), None)
        order = sorted(prepared, key=lambda key: prepared[key].image.width)  # similar widths share a batch
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            decoded = self._decode_robust([prepared[key].image for key in chunk], beam, max_len, strict)
            for (k, f), res in zip(chunk, decoded):
                res.image, res.scale = prepared[k, f].image, prepared[k, f].scale
                best = results[k]
                if best is None or (res.ok and (not best.ok or res.score > best.score)):
                    results[k] = res
        return results  # type: ignore[return-value]

    def predict_one(self, image: ImageSource, beam: int = 1, max_len: int | None = None) -> PredictionResult:
        """The result for one image (raises I2LError on an unusable image)."""
        return self.predict([image], beam=beam, max_len=max_len)[0]

    def attention(self, result: PredictionResult) -> torch.Tensor:
        """Cross-attention maps (T, H', W') of the decoder over ``result.image`` for its predicted tokens."""
        if result.image is None or not result.token_ids:
            raise I2LError("no attention to show: the prediction is empty or failed")
        batch, _ = to_batch([result.image])  # (1, 1, H, W)
        with self.lock, torch.inference_mode():
            return cross_attention_maps(self.model, batch.to(self.device), result.token_ids,
                                        special=self.vocab.special)


__all__ = ["Predictor", "PredictionResult", "Candidate", "pick_device"]
