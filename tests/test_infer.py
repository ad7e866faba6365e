"""The Predictor: checkpoint loading, every input type, batching, beam candidates, errors, attention.

The checkpoint is a tiny untrained model saved by Lightning like ``i2l train`` saves it
(:func:`conftest.make_checkpoint`, shared with the serve, widget, CLI and browser tests): deterministic, and made
in a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import formula_image, make_checkpoint, make_other_vocab_weights, png_bytes
from PIL import Image

from i2l.config import get_config
from i2l.errors import I2LError
from i2l.images import to_batch
from i2l.infer import PredictionResult, Predictor
from i2l.tokenizer import Vocab


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    path = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")
    return Predictor.from_checkpoint(path, device="cpu")


def test_from_checkpoint_reads_config_and_vocab(predictor: Predictor) -> None:
    assert predictor.cfg.name == "smoke" and predictor.cfg.max_len == 12
    assert "\\frac" in predictor.vocab
    assert str(predictor.device) == "cpu" and not predictor.model.training


def test_every_input_type_gives_the_same_answer(predictor: Predictor, tmp_path: Path) -> None:
    img = formula_image()
    path = tmp_path / "f.png"
    img.save(path)
    sources = [img, str(path), path, png_bytes(img), np.asarray(img), np.asarray(img) / 255.0]
    results = predictor.predict(sources)
    assert len(results) == len(sources)
    assert all(r.ok and r.latex == results[0].latex for r in results)
    first = results[0]
    assert first.tokens == first.latex.split() and len(first.token_scores) == len(first.tokens)
    assert all(0 < p <= 1 for p in first.token_scores)
    assert len(first.candidates) == 1 and first.candidates[0].latex == first.latex


def test_single_image_and_batching_agree(predictor: Predictor) -> None:
    images = [formula_image(t, size=s) for t, s in [("x+1", 28), ("a=b", 40), ("y^2", 20), ("k", 30)]]
    one_by_one = [predictor.predict(im)[0].latex for im in images]
    predictor.batch_size = 3
    batched = [r.latex for r in predictor.predict(images)]
    predictor.batch_size = 16
    assert batched == one_by_one


def test_beam_candidates(predictor: Predictor) -> None:
    result = predictor.predict_one(formula_image(), beam=3)
    assert 1 <= len(result.candidates) <= 3
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    assert result.latex == result.candidates[0].latex
    d = result.to_dict()
    assert set(d) >= {"latex", "tokens", "token_scores", "candidates", "error"}
    assert d["candidates"][0] == {"latex": result.latex, "score": pytest.approx(scores[0], abs=1e-5)}


def test_strict_and_lenient_errors(predictor: Predictor, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(I2LError, match="not an image"):
        predictor.predict([text])
    results = predictor.predict([text, formula_image(), b"", Image.new("L", (20, 20), 255)], strict=False)
    assert [r.ok for r in results] == [False, True, False, False]
    assert "not an image" in results[0].error and "empty" in results[2].error and "no ink" in results[3].error
    assert results[0].to_dict()["error"] == results[0].error and results[0].latex == ""


def test_several_scales_keep_the_most_confident(predictor: Predictor) -> None:
    img = formula_image("x+1")
    alone = {f: predictor.predict(img, scales=(f,))[0] for f in (0.8, 1.0, 1.25)}
    best = predictor.predict(img, scales=(0.8, 1.0, 1.25))[0]
    assert best.score == pytest.approx(max(r.score for r in alone.values()))
    winner = max(alone.values(), key=lambda r: r.score)
    assert best.latex == winner.latex and best.scale == pytest.approx(winner.scale)
    assert len({r.image.tobytes() for r in alone.values()}) == 3  # the scales did change the image
    with pytest.raises(I2LError, match="scales"):
        predictor.predict(img, scales=(10.0,))
    [bad] = predictor.predict([b""], scales=(0.8, 1.0), strict=False)
    assert "empty" in bad.error


@pytest.mark.parametrize("beam", [0, 21, 2.5])
def test_bad_beam(predictor: Predictor, beam) -> None:
    with pytest.raises(I2LError, match="beam"):
        predictor.predict([formula_image()], beam=beam)


def test_attention(predictor: Predictor) -> None:
    result = predictor.predict_one(formula_image())
    maps = predictor.attention(result)
    batch, _ = to_batch([result.image])
    assert maps.shape == (len(result.token_ids), *predictor.model.feature_shape(*batch.shape[-2:]))
    assert torch.allclose(maps.sum(dim=(1, 2)), torch.ones(maps.shape[0]), atol=1e-4)
    with pytest.raises(I2LError):
        predictor.attention(PredictionResult(error="x"))


def test_checkpoint_from_another_vocabulary(tmp_path: Path) -> None:
    path = make_other_vocab_weights(make_checkpoint(tmp_path / "a.ckpt"), tmp_path / "other_vocab.pt")
    with pytest.raises(I2LError, match="does not match"):
        Predictor.from_checkpoint(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "x.ckpt").write_text("nope")
    with pytest.raises(I2LError, match="cannot be read"):
        Predictor.from_checkpoint(tmp_path / "x.ckpt")
    with pytest.raises(I2LError, match="not found"):
        Predictor.from_checkpoint(tmp_path / "missing.ckpt")


@pytest.mark.slow
def test_same_prediction_at_every_scale_with_a_trained_model() -> None:
    """A model trained on images at the training scale reads the same formula given at 0.5x to 2x."""
    import torch.nn.functional as F

    from i2l.data.render import render_formula
    from i2l.decoding import greedy_decode
    from i2l.model import Im2LatexModel
    from i2l.preprocess import preprocess

    formulas = [r"x ^ { 2 } + y", r"\frac { a } { b } = 1", r"\sqrt { z } - 3", r"a _ { i } b _ { j }"]  # made up
    pages, rendered = [], []  # each formula at about 200 dpi, like a screenshot at the scale of the dataset's pages
    for f in formulas:
        img = render_formula(f)
        rendered.append(img)
        pages.append(img.resize((img.width * 2, img.height * 2), Image.LANCZOS))
    vocab = Vocab.build(formulas, min_freq=1)
    cfg = get_config("smoke", max_len=16, d_model=64, num_heads=4, dim_feedforward=128)
    torch.manual_seed(0)
    model = Im2LatexModel(cfg, len(vocab)).train()
    # the rendered images (0.5x pages are exactly those, kept as they are) and the pages as preprocessing
    # brings them to the training scale (an upscaled image is blurrier than a page: it reads about 10% off)
    images, sizes = to_batch(rendered + [preprocess(p) for p in pages])
    targets = [vocab.encode(f, add_special=False) for f in formulas] * 2
    tokens = torch.full((len(targets), max(map(len, targets)) + 2), vocab.pad_id)
    for i, t in enumerate(targets):
        tokens[i, : len(t) + 2] = torch.tensor([vocab.bos_id, *t, vocab.eos_id])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(400):
        logits = model(images, tokens[:, :-1], sizes)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                               ignore_index=vocab.pad_id)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24 and loss.item() < 0.01 and greedy_decode(model, images, sizes, max_len=16) == targets:
            break  # fitted well, not just at the edge of reading the training scale
    predictor = Predictor(model, vocab, cfg, device="cpu")
    assert [r.latex for r in predictor.predict(pages)] == formulas, f"not learned: loss {loss.item():.3f}"
    for scale in (0.5, 0.75, 1.5, 2.0):
        scaled = [p.resize((round(p.width * scale), round(p.height * scale)), Image.LANCZOS) for p in pages]
        assert [r.latex for r in predictor.predict(scaled)] == formulas, f"scale {scale}"
