"""Tests for i2l.decoding: cached == uncached greedy, beam search vs greedy and brute force, padding, overfitting,
sampling, attention maps and bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from i2l.config import get_config
from i2l.decoding import (
    Hypothesis,
    beam_search,
    cross_attention_maps,
    decode,
    greedy_decode,
    greedy_decode_uncached,
    sample_decode,
)
from i2l.errors import I2LError
from i2l.model import Im2LatexModel

BOS, EOS, PAD = 1, 2, 0


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(vocab_size: int = 30, seed: int = 0, **overrides) -> Im2LatexModel:
    cfg = dict(d_model=32, num_heads=2, num_layers=2, dim_feedforward=64, dropout=0.0)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return Im2LatexModel(get_config("smoke", **cfg), vocab_size).eval()


def ink_images(B: int, H: int, W: int, seed: int = 0) -> torch.Tensor:
    """White images (B, 1, H, W) with random dark blocks."""
    g = torch.Generator().manual_seed(seed)
    images = torch.ones(B, 1, H, W)
    for b in range(B):
        for _ in range(8):
            y = int(torch.randint(0, max(H - 6, 1), (1,), generator=g))
            x = int(torch.randint(0, max(W - 12, 1), (1,), generator=g))
            images[b, 0, y : y + 5, x : x + 11] = 0.0
    return images


def padded_batch(shapes: list[tuple[int, int]], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of different sizes white-padded into one batch, like the dataset's collate."""
    H = -(-max(h for h, _ in shapes) // 16) * 16
    W = -(-max(w for _, w in shapes) // 16) * 16
    images = torch.ones(len(shapes), 1, H, W)
    for i, (h, w) in enumerate(shapes):
        images[i, :, :h, :w] = ink_images(1, h, w, seed + i)[0]
    return images, torch.tensor(shapes)


@pytest.fixture(scope="module", params=[True, False], ids=["pre-norm", "post-norm"])
def model(request) -> Im2LatexModel:
    return tiny_model(norm_first=request.param)


SHAPES = [(40, 120), (64, 200), (20, 50), (33, 77), (16, 16)]


def test_cached_greedy_equals_uncached(model):
    images, sizes = padded_batch(SHAPES)
    cached = greedy_decode(model, images, sizes, max_len=40)
    uncached = greedy_decode_uncached(model, images, sizes, max_len=40)
    assert cached == uncached
    assert (
        len({tuple(t) for t in cached}) > 1
    )  # different images give different outputs (not a constant model)
    assert all(PAD not in t and BOS not in t and EOS not in t for t in cached)


def test_cached_greedy_equals_uncached_with_early_ends():
    """A model biased towards the end token: sequences end at different steps and leave the batch."""
    model = tiny_model(seed=1)
    with torch.no_grad():
        model.decoder.output.bias[EOS] += 0.5
    images, sizes = padded_batch(SHAPES * 2, seed=5)
    cached = greedy_decode(model, images, sizes, max_len=30)
    assert cached == greedy_decode_uncached(model, images, sizes, max_len=30)
    lengths = {len(t) for t in cached}
    assert len(lengths) > 1 and min(lengths) < 30, lengths


def test_beam_of_one_equals_greedy(model):
    images, sizes = padded_batch(SHAPES)
    greedy = greedy_decode(model, images, sizes, max_len=30)
    beams = beam_search(model, images, sizes, beam_size=1, max_len=30)
    assert [b[0].tokens for b in beams] == greedy
    assert all(len(b) == 1 for b in beams)


def test_beam_hypotheses_are_sorted_and_scored(model):
    images, sizes = padded_batch(SHAPES[:3])
    for lp in (0.0, 1.0):
        beams = beam_search(model, images, sizes, beam_size=4, max_len=12, length_penalty=lp)
        for hyps in beams:
            assert len(hyps) == 4
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
            for h in hyps:
                n = len(h.token_logprobs)
                assert n in (len(h.tokens), len(h.tokens) + 1)
                assert math.isclose(h.score, sum(h.token_logprobs) / n**lp, rel_tol=1e-5, abs_tol=1e-5)
        # beam search finds at least as good a sequence as greedy (by the raw score without length penalty)
    greedy = decode(model, images, sizes, beam_size=1, max_len=12, length_penalty=0.0)
    beams = beam_search(model, images, sizes, beam_size=4, max_len=12, length_penalty=0.0)
    for g, b in zip(greedy, beams):
        assert b[0].score >= g[0].score - 1e-5


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    logits = logits.clone()
    logits[..., BOS] = float("-inf")
    logits[..., PAD] = float("-inf")
    return F.log_softmax(logits, dim=-1)


def brute_force(model, image, max_len: int, vocab_size: int) -> list[tuple[float, list[int]]]:
    """Every sequence of at most max_len steps (ending with EOS, or max_len tokens without), by full scoring."""
    allowed = [t for t in range(vocab_size) if t not in (BOS, PAD, EOS)]
    seqs = []
    for n in range(max_len):
        seqs += [list(s) + [EOS] for s in itertools.product(allowed, repeat=n)]
    seqs += [list(s) for s in itertools.product(allowed, repeat=max_len)]
    results = []
    with torch.no_grad():
        memory, mask = model.encode(image)
        for seq in seqs:
            inp = torch.tensor([[BOS] + seq[:-1]])
            logp = _log_probs(model.decode_full(memory, mask, inp))[0]  # (T, V)
            score = sum(float(logp[t, tok]) for t, tok in enumerate(seq))
            results.append((score, [t for t in seq if t != EOS]))
    return sorted(results, key=lambda r: -r[0])


def test_beam_search_matches_brute_force():
    """Tiny vocabulary, 3 steps, a beam wide enough to be exhaustive: the full ranking equals enumeration."""
    vocab_size, max_len = 6, 3  # 3 allowed tokens (UNK, 4, 5) + EOS -> 1 + 3 + 9 + 27 = 40 sequences
    model = tiny_model(vocab_size=vocab_size, seed=2)
    with torch.no_grad():
        model.decoder.output.bias[EOS] += 1.0  # make ending early competitive
    image = ink_images(1, 32, 80, seed=9)
    expected = brute_force(model, image, max_len, vocab_size)
    assert len(expected) == 40
    hyps = beam_search(model, image, beam_size=40, max_len=max_len, length_penalty=0.0)[0]
    assert [h.tokens for h in hyps] == [seq for _, seq in expected]
    for h, (score, _) in zip(hyps, expected):
        assert math.isclose(h.score, score, rel_tol=1e-4, abs_tol=1e-4)
    # a narrow beam may miss the best, but scores its hypotheses exactly like the enumeration
    by_tokens = {tuple(seq): score for score, seq in expected}
    narrow = beam_search(model, image, beam_size=3, max_len=max_len, length_penalty=0.0)[0]
    assert len(narrow) == 3
    for h in narrow:
        assert math.isclose(h.score, by_tokens[tuple(h.tokens)], rel_tol=1e-4, abs_tol=1e-4)


def test_padding_does_not_change_predictions(model):
    """An image decoded alone and inside a white-padded batch: same first-step logits and same tokens."""
    image = ink_images(1, 37, 90, seed=11)
    alone = greedy_decode(model, image, max_len=30)
    batch, sizes = padded_batch([(80, 250), (37, 90), (20, 40)], seed=20)
    batch[1] = 1.0
    batch[1, :, :37, :90] = image[0]
    inside = greedy_decode(model, batch, sizes, max_len=30)
    assert inside[1] == alone[0]
    beams_alone = beam_search(model, image, beam_size=3, max_len=15)[0]
    beams_inside = beam_search(model, batch, sizes, beam_size=3, max_len=15)[1]
    assert [h.tokens for h in beams_alone] == [h.tokens for h in beams_inside]
    with torch.no_grad():
        a = model(image, torch.tensor([[BOS, 5, 6]]))[0]
        b = model(batch, torch.tensor([[BOS, 5, 6]] * 3), sizes)[1]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_min_len_and_max_len(model):
    images, sizes = padded_batch(SHAPES[:2])
    out = greedy_decode(model, images, sizes, max_len=17, min_len=17)
    assert [len(t) for t in out] == [17, 17]
    assert greedy_decode_uncached(model, images, sizes, max_len=17, min_len=17) == out
    beams = beam_search(model, images, sizes, beam_size=3, max_len=9, min_len=9)
    assert all(len(h.tokens) == 9 for hyps in beams for h in hyps)


def test_sampling(model):
    images, sizes = padded_batch(SHAPES[:3])
    greedy = greedy_decode(model, images, sizes, max_len=20)
    cold = sample_decode(
        model, images, sizes, max_len=20, temperature=1e-4, generator=torch.Generator().manual_seed(0)
    )
    assert cold == greedy
    hot = [
        sample_decode(
            model, images, sizes, max_len=20, temperature=2.0, generator=torch.Generator().manual_seed(s)
        )
        for s in (0, 0, 1)
    ]
    assert hot[0] == hot[1] and hot[0] != hot[2]
    hyps = decode(
        model, images, sizes, temperature=2.0, max_len=20, generator=torch.Generator().manual_seed(0)
    )
    assert [h[0].tokens for h in hyps] == hot[0]


def test_decode_dispatch(model):
    images, sizes = padded_batch(SHAPES[:2])
    greedy = decode(model, images, sizes, max_len=20)
    assert all(len(h) == 1 and isinstance(h[0], Hypothesis) for h in greedy)
    assert [h[0].tokens for h in greedy] == greedy_decode(model, images, sizes, max_len=20)
    for (h,) in greedy:  # one log-probability per step (the end token's included), the score their mean
        assert len(h.token_logprobs) in (len(h.tokens), len(h.tokens) + 1)
        assert all(lp <= 0 for lp in h.token_logprobs)
        assert math.isclose(h.score, h.logprob / len(h.token_logprobs), rel_tol=1e-6)
    beams = decode(model, images, sizes, beam_size=3, max_len=20)
    assert [[h.tokens for h in b] for b in beams] == [
        [h.tokens for h in b] for b in beam_search(model, images, sizes, beam_size=3, max_len=20)
    ]
    with pytest.raises(I2LError, match="not both"):
        decode(model, images, sizes, beam_size=3, temperature=1.0)


def test_decoding_restores_training_mode():
    model = tiny_model().train()
    greedy_decode(model, ink_images(1, 32, 32), max_len=3)
    assert model.training


def test_cross_attention_maps(model):
    image = ink_images(1, 40, 120, seed=2)
    tokens = greedy_decode(model, image, max_len=10, min_len=10)[0]
    maps = cross_attention_maps(model, image[0], tokens)
    assert maps.shape == (10, *model.feature_shape(40, 120))
    torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(10))
    mean = cross_attention_maps(model, image, tokens, layer="mean")
    assert mean.shape == maps.shape and not torch.allclose(mean, maps)
    with pytest.raises(I2LError, match="one image"):
        cross_attention_maps(model, ink_images(2, 40, 40), tokens)


def test_bad_input_gives_clear_errors_or_sensible_predictions(model):
    # smaller than the stride, all white, a batch of one, very wide: sensible (possibly empty) predictions
    for images in (
        torch.ones(1, 1, 5, 7),
        torch.ones(1, 1, 64, 256),
        ink_images(1, 32, 64),
        ink_images(1, 64, 2400),
    ):
        for hyps in (
            greedy_decode(model, images, max_len=8),
            [h.tokens for h in beam_search(model, images, max_len=8)[0]],
        ):
            assert all(isinstance(t, list) and len(t) <= 8 for t in hyps)
    with pytest.raises(I2LError, match="maximum side"):
        greedy_decode(model, torch.ones(1, 1, 32, 5000))
    with pytest.raises(I2LError, match="grayscale"):
        greedy_decode(model, torch.ones(1, 3, 32, 32))
    with pytest.raises(I2LError, match="max_len"):
        greedy_decode(model, torch.ones(1, 1, 32, 32), max_len=0)
    with pytest.raises(I2LError, match="beam_size"):
        beam_search(model, torch.ones(1, 1, 32, 32), beam_size=0)
    with pytest.raises(I2LError, match="temperature"):
        sample_decode(model, torch.ones(1, 1, 32, 32), temperature=0.0)


# ----------------------------------------------------------------------------- overfitting (slow)
def _text_images(strings: list[str], H: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Strings drawn with PIL's default font, each image as wide as its text, white-padded into one batch."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    widths = [8 + 7 * len(s) for s in strings]
    images = torch.ones(len(strings), 1, -(-H // 16) * 16, -(-max(widths) // 16) * 16)
    for i, (s, w) in enumerate(zip(strings, widths)):
        img = Image.new("L", (w, H), 255)
        ImageDraw.Draw(img).text((4, 8), s, fill=0, font=font)
        images[i, 0, :H, :w] = torch.tensor(list(img.getdata()), dtype=torch.float32).reshape(H, w) / 255.0
    return images, torch.tensor([[H, w] for w in widths])


@pytest.mark.slow
def test_overfits_eight_images_to_exact_match():
    strings = ["x+1", "a=b", "y-2", "7x", "b+a=3", "1-y", "2ab", "x=y+7"]
    chars = sorted(set("".join(strings)))
    stoi = {c: i + 4 for i, c in enumerate(chars)}
    targets = [[stoi[c] for c in s] for s in strings]
    T = max(map(len, targets)) + 2
    tokens = torch.full((8, T), PAD)
    for i, t in enumerate(targets):
        tokens[i, : len(t) + 2] = torch.tensor([BOS, *t, EOS])
    images, sizes = _text_images(strings)
    model = tiny_model(
        vocab_size=len(chars) + 4, seed=0, d_model=64, num_heads=4, dim_feedforward=128
    ).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(400):
        logits = model(images, tokens[:, :-1], sizes)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=PAD
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24 and greedy_decode(model, images, sizes, max_len=T) == targets:
            break
    assert greedy_decode(model, images, sizes, max_len=T) == targets, (
        f"loss {loss.item():.3f} after {step + 1} steps"
    )
    # trained: each image decoded alone (cropped to its size, no padding) still reads correctly, also by beam
    for i, (h, w) in enumerate(sizes.tolist()):
        assert greedy_decode(model, images[i, :, :h, :w], max_len=T)[0] == targets[i]
    assert [b[0].tokens for b in beam_search(model, images, sizes, beam_size=3, max_len=T)] == targets
