"""Decoding: batched greedy and beam search with the decoder's key/value cache, temperature sampling.

All functions take the model, images (B, 1, H, W) (1.0 = white) and optional sizes (B, 2), run in eval mode
without gradients, and return token ids WITHOUT the start and end tokens. A decoding step is one generated token,
the end token included; ``max_len`` bounds the number of steps. The start and padding tokens are never generated;
the end token not before ``min_len`` steps (``min_len=max_len`` forces ``max_len`` tokens, for benchmarks).

- :func:`greedy_decode`: cached; a sequence stops at its end token and leaves the batch, the loop stops when all
  have ended.
- :func:`greedy_decode_uncached`: recomputes the whole decoder at every step (the original project's way); the
  reference for tests and benchmarks.
- :func:`beam_search`: cached, batched over images x beams; keeps ``beam_size`` hypotheses per image, scores are
  sums of log-probabilities divided by ``length ** length_penalty`` (0 = no length normalisation).
- :func:`sample_decode`: draws each token from softmax(logits / temperature).
- :func:`decode`: one entry point returning :class:`Hypothesis` lists.
- :func:`cross_attention_maps`: where the decoder looks in the image for each token, (T, H', W').
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from i2l.errors import I2LError
from i2l.model import Im2LatexModel, check_images
from i2l.tokenizer import SpecialIds, Vocab


@dataclass
class Hypothesis:
    """A decoded sequence: token ids (no start/end token), its (length-normalised) score, and the log-probability
    of every generated token (one more than ``tokens`` when the sequence ended with the end token)."""

    tokens: list[int]
    score: float
    token_logprobs: list[float] = field(default_factory=list)

    @property
    def logprob(self) -> float:
        """Sum of the token log-probabilities (the end token included)."""
        return float(sum(self.token_logprobs))


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    if was_training:  # switching walks every module: only when needed (a Predictor's model is in eval already)
        model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            model.train()


def _prepare(model: Im2LatexModel, images: Tensor, sizes: Tensor | None) -> tuple[Tensor, Tensor | None]:
    images, sizes = check_images(images, sizes)
    param = next(model.parameters())  # images follow the model's device and dtype (e.g. a bf16 model)
    return images.to(param.device, param.dtype), None if sizes is None else sizes.to(param.device)


def _check_lengths(max_len: int, min_len: int) -> None:
    if max_len < 1:
        raise I2LError(f"max_len must be at least 1, got {max_len}")
    if min_len < 0 or min_len > max_len:
        raise I2LError(f"min_len must lie in [0, max_len={max_len}], got {min_len}")


def _logit_bias(model: Im2LatexModel, device: torch.device, special: SpecialIds) -> tuple[Tensor, Tensor]:
    """Additive logit masks (V,): start/padding forbidden, and the same with the end token forbidden too."""
    bias = torch.zeros(model.vocab_size, device=device)
    bias[special.bos] = float("-inf")
    if special.pad != special.eos:
        bias[special.pad] = float("-inf")
    no_end = bias.clone()
    no_end[special.eos] = float("-inf")
    return bias, no_end


def _log_probs(
    logits: Tensor, step: int, bias: tuple[Tensor, Tensor], min_len: int, temperature: float = 1.0
) -> Tensor:
    """logits (N, V) -> log-probabilities (N, V), forbidden tokens at -inf (the end token before min_len)."""
    logits = logits.float() + (bias[1] if step < min_len else bias[0])
    if temperature != 1.0:
        logits = logits / temperature
    return F.log_softmax(logits, dim=-1)


def _normalise(logprob: float, length: int, length_penalty: float) -> float:
    return logprob / (max(length, 1) ** length_penalty)


# ----------------------------------------------------------------------------- greedy and sampling
def _generate(
    model: Im2LatexModel,
    images: Tensor,
    sizes: Tensor | None,
    max_len: int,
    special: SpecialIds,
    min_len: int,
    temperature: float | None,
    generator: torch.Generator | None,
    logprobs: bool = True,
) -> tuple[list[list[int]], list[list[float]]]:
    """Cached greedy (temperature None) or sampling; returns tokens without EOS and log-probs with EOS's
    (empty lists when ``logprobs`` is False: greedy then skips the softmax, argmax of the logits is enough)."""
    _check_lengths(max_len, min_len)
    images, sizes = _prepare(model, images, sizes)
    memory, memory_mask = model.encode(images, sizes)  # (B, S, d), (B, S)
    B = memory.shape[0]
    state = model.init_state(memory, memory_mask, capacity=max_len)
    bias = _logit_bias(model, memory.device, special)
    rows = torch.arange(B, device=memory.device)  # (N,) original index of each active row
    tokens = torch.full((B,), special.bos, dtype=torch.long, device=memory.device)  # (N,)
    history: list[tuple[Tensor, Tensor, Tensor | None]] = []  # per step: rows, tokens, log-probs (N,) each
    for step in range(max_len):
        logits, state = model.decode_step(tokens, state)  # (N, V)
        if temperature is None and not logprobs:
            tokens = (logits.float() + bias[int(step < min_len)]).argmax(dim=-1)  # (N,)
            history.append((rows, tokens, None))
        else:
            logp = _log_probs(logits, step, bias, min_len)  # (N, V)
            if temperature is None:
                tokens = logp.argmax(dim=-1)  # (N,)
            else:
                probs = _log_probs(logits, step, bias, min_len, temperature).exp()
                tokens = torch.multinomial(probs, 1, generator=generator)[:, 0]
            history.append((rows, tokens, logp.gather(1, tokens[:, None])[:, 0]))
        ended = tokens == special.eos  # (N,)
        if bool(ended.any()):
            keep = (~ended).nonzero()[:, 0]  # (N',)
            if keep.numel() == 0:
                break
            state = state.select(keep)
            rows, tokens = rows[keep], tokens[keep]
    out_tokens: list[list[int]] = [[] for _ in range(B)]
    out_logprobs: list[list[float]] = [[] for _ in range(B)]
    if history:
        all_rows = torch.cat([h[0] for h in history]).tolist()
        all_tokens = torch.cat([h[1] for h in history]).tolist()
        for r, t in zip(all_rows, all_tokens):  # in step order
            if t != special.eos:
                out_tokens[r].append(t)
        if history[0][2] is not None:
            for r, lp in zip(all_rows, torch.cat([h[2] for h in history]).tolist()):
                out_logprobs[r].append(lp)
    return out_tokens, out_logprobs


def greedy_decode(
    model: Im2LatexModel,
    images: Tensor,
    sizes: Tensor | None = None,
    max_len: int = 150,
    *,
    special: SpecialIds = Vocab.special,
    min_len: int = 0,
) -> list[list[int]]:
    """Batched greedy decoding with the key/value cache -> token ids per image (no start/end token)."""
    with _eval_mode(model):
        return _generate(model, images, sizes, max_len, special, min_len, None, None, False)[0]


def sample_decode(
    model: Im2LatexModel,
    images: Tensor,
    sizes: Tensor | None = None,
    max_len: int = 150,
    temperature: float = 1.0,
    *,
    special: SpecialIds = Vocab.special,
    min_len: int = 0,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Batched cached sampling from softmax(logits / temperature) -> token ids per image."""
    if temperature <= 0:
        raise I2LError(f"temperature must be > 0 (use greedy_decode for temperature 0), got {temperature}")
    with _eval_mode(model):
        return _generate(
            model, images, sizes, max_len, special, min_len, temperature, generator
        )[0]


def greedy_decode_uncached(
    model: Im2LatexModel,
    images: Tensor,
    sizes: Tensor | None = None,
    max_len: int = 150,
    *,
    special: SpecialIds = Vocab.special,
    min_len: int = 0,
) -> list[list[int]]:
    """Greedy decoding that recomputes the whole decoder over all previous tokens at every step (reference)."""
    _check_lengths(max_len, min_len)
    with _eval_mode(model):
        images, sizes = _prepare(model, images, sizes)
        memory, memory_mask = model.encode(images, sizes)  # (B, S, d), (B, S)
        B = memory.shape[0]
        tokens = torch.full((B, 1), special.bos, dtype=torch.long, device=memory.device)  # (B, t)
        ended = torch.zeros(B, dtype=torch.bool, device=memory.device)
        bias = _logit_bias(model, memory.device, special)
        for step in range(max_len):
            logits = model.decode_full(memory, memory_mask, tokens)[:, -1]  # (B, V)
            nxt = (logits.float() + bias[int(step < min_len)]).argmax(dim=-1)  # (B,)
            nxt = torch.where(ended, torch.full_like(nxt, special.eos), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            ended = ended | (nxt == special.eos)
            if bool(ended.all()):
                break
        result = []
        for row in tokens[:, 1:].tolist():
            result.append(row[: row.index(special.eos)] if special.eos in row else row)
        return result


# ----------------------------------------------------------------------------- beam search
def beam_search(
    model: Im2LatexModel,
    images: Tensor,
    sizes: Tensor | None = None,
    beam_size: int = 5,
    max_len: int = 150,
    length_penalty: float = 1.0,
    *,
    special: SpecialIds = Vocab.special,
    min_len: int = 0,
) -> list[list[Hypothesis]]:
    """Batched beam search with the cache -> the ``beam_size`` best hypotheses per image, best first.

    At each step the 2k best extensions of the k live beams are ranked; those ending with the end token and
    ranked within the first k become finished hypotheses, the first k others live on. An image is done when it
    has k finished hypotheses and no live beam scores better than the worst of them (exact without length
    normalisation, the usual heuristic with it). Live beams still running at ``max_len`` are returned as well.
    """
    if beam_size < 1:
        raise I2LError(f"beam_size must be at least 1, got {beam_size}")
    _check_lengths(max_len, min_len)
    k = beam_size
    with _eval_mode(model):
        images, sizes = _prepare(model, images, sizes)
        memory, memory_mask = model.encode(images, sizes)  # (B, S, d), (B, S)
        B, device = memory.shape[0], memory.device
        state = model.init_state(memory, memory_mask, capacity=max_len).select(
            torch.arange(B, device=device).repeat_interleave(k)
        )
        scores = torch.full((B, k), float("-inf"), device=device)  # (n, k) raw sums of log-probs
        scores[:, 0] = 0.0  # one live beam at the start, so the first step does not pick k copies
        hist_tokens = torch.zeros(B * k, 0, dtype=torch.long, device=device)  # (n*k, t)
        hist_logp = torch.zeros(B * k, 0, device=device)  # (n*k, t)
        finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        images_left = list(range(B))  # original index of each active image
        tokens = torch.full((B * k,), special.bos, dtype=torch.long, device=device)  # (n*k,)
        arange_k = torch.arange(k, device=device)
        bias = _logit_bias(model, device, special)
        for step in range(max_len):
            length = step + 1
            n = len(images_left)
            logits, state = model.decode_step(tokens, state)  # (n*k, V)
            logp = _log_probs(logits, step, bias, min_len)  # (n*k, V)
            V = logp.shape[1]
            cand = (scores.reshape(n * k, 1) + logp).reshape(n, k * V)  # (n, k*V)
            top_scores, top_idx = cand.topk(min(2 * k, k * V), dim=1)  # (n, 2k)
            top_beam, top_tok = top_idx // V, top_idx % V  # (n, 2k)
            rank = torch.arange(top_idx.shape[1], device=device)[None, :]  # (1, 2k)
            is_eos = top_tok == special.eos
            # finished: end token among the first k, finite score
            fin = is_eos & (rank < k) & torch.isfinite(top_scores)
            if bool(fin.any()):
                for i, j in fin.nonzero().tolist():
                    row = i * k + int(top_beam[i, j])
                    lps = hist_logp[row].tolist() + [float(logp[row, special.eos])]
                    hyp = Hypothesis(
                        hist_tokens[row].tolist(), _normalise(sum(lps), length, length_penalty), lps
                    )
                    lst = finished[images_left[i]]
                    lst.append(hyp)
                    lst.sort(key=lambda h: -h.score)
                    del lst[k:]
            # live: the first k candidates that are not the end token (at most k of the 2k are)
            order = torch.where(is_eos, rank + top_idx.shape[1], rank).argsort(dim=1)[:, :k]  # (n, k)
            scores = top_scores.gather(1, order)  # (n, k)
            new_beam, new_tok = top_beam.gather(1, order), top_tok.gather(1, order)  # (n, k)
            src = (torch.arange(n, device=device)[:, None] * k + new_beam).reshape(-1)  # (n*k,)
            tokens = new_tok.reshape(-1)  # (n*k,)
            hist_tokens = torch.cat([hist_tokens[src], tokens[:, None]], dim=1)
            hist_logp = torch.cat([hist_logp[src], logp[src, tokens][:, None]], dim=1)
            state = state.select(src, cross=False)  # beams stay within their image
            if length == max_len:
                break
            # which images are done?
            best_live = (scores.max(dim=1).values / length**length_penalty).tolist()  # (n,)
            keep = []
            for i, b in enumerate(images_left):
                lst = finished[b]
                done = best_live[i] == float("-inf") or (len(lst) >= k and best_live[i] <= lst[-1].score)
                if not done:
                    keep.append(i)
            if len(keep) < n:
                if not keep:
                    break
                keep_t = torch.tensor(keep, device=device)
                rows = (keep_t[:, None] * k + arange_k).reshape(-1)  # (n'*k,)
                state = state.select(rows)
                hist_tokens, hist_logp, tokens = hist_tokens[rows], hist_logp[rows], tokens[rows]
                scores = scores[keep_t]
                images_left = [images_left[i] for i in keep]
        if images_left and length == max_len:  # beams still alive at max_len are hypotheses too
            lengths = hist_tokens.shape[1]
            for i, b in enumerate(images_left):
                for j in range(k):
                    if not torch.isfinite(scores[i, j]):
                        continue
                    row = i * k + j
                    lps = hist_logp[row].tolist()
                    finished[b].append(
                        Hypothesis(
                            hist_tokens[row].tolist(), _normalise(sum(lps), lengths, length_penalty), lps
                        )
                    )
                finished[b].sort(key=lambda h: -h.score)
                del finished[b][k:]
        return finished


# ----------------------------------------------------------------------------- one entry point
def decode(
    model: Im2LatexModel,
    images: Tensor,
    sizes: Tensor | None = None,
    beam_size: int = 1,
    max_len: int = 150,
    length_penalty: float = 1.0,
    temperature: float | None = None,
    *,
    special: SpecialIds = Vocab.special,
    min_len: int = 0,
    generator: torch.Generator | None = None,
) -> list[list[Hypothesis]]:
    """Beam search when beam_size > 1, sampling when a temperature is given, else cached greedy.

    Returns, per image, a list of hypotheses best first (one for greedy and sampling).
    """
    if beam_size > 1:
        if temperature is not None:
            raise I2LError("choose beam search (beam_size > 1) or sampling (temperature), not both")
        return beam_search(
            model,
            images,
            sizes,
            beam_size,
            max_len,
            length_penalty,
            special=special,
            min_len=min_len,
        )
    if temperature is not None and temperature <= 0:
        raise I2LError(f"temperature must be > 0 (or None for greedy), got {temperature}")
    with _eval_mode(model):
        tokens, logprobs = _generate(
            model, images, sizes, max_len, special, min_len, temperature, generator
        )
    return [
        [Hypothesis(t, _normalise(sum(lp), len(lp), length_penalty), lp)] for t, lp in zip(tokens, logprobs)
    ]


# ----------------------------------------------------------------------------- attention maps
def cross_attention_maps(
    model: Im2LatexModel,
    image: Tensor,
    tokens: Sequence[int] | Tensor,
    layer: int | str = "last",
    *,
    special: SpecialIds = Vocab.special,
) -> Tensor:
    """Where the decoder looks while predicting each of ``tokens``: (T, H', W'), averaged over heads.

    image: (1, H, W) or (1, 1, H, W); tokens: the T predicted ids (no start token); layer: "last", "mean"
    (over layers) or a layer index. Each map sums to 1 over the feature map.
    """
    images, _ = check_images(image)
    if images.shape[0] != 1:
        raise I2LError(f"cross_attention_maps takes one image, got a batch of {images.shape[0]}")
    ids = torch.as_tensor(tokens, dtype=torch.long).reshape(-1).tolist()
    if not ids:
        raise I2LError("cross_attention_maps needs at least one token")
    Hf, Wf = model.feature_shape(images.shape[-2], images.shape[-1])
    with _eval_mode(model):
        images, _ = _prepare(model, images, None)
        memory, memory_mask = model.encode(images)  # (1, S, d)
        inp = torch.tensor([[special.bos] + ids[:-1]], device=memory.device)  # (1, T)
        _, weights = model.decoder(inp, model.init_state(memory, memory_mask), need_weights=True)
        per_layer = torch.stack([w[0].mean(dim=0) for w in weights])  # (L, T, S)
        if layer == "last":
            maps = per_layer[-1]
        elif layer == "mean":
            maps = per_layer.mean(dim=0)
        elif isinstance(layer, int):
            maps = per_layer[layer]
        else:
            raise I2LError(f"layer must be 'last', 'mean' or an int, got {layer!r}")
        return maps.reshape(len(ids), Hf, Wf).float().cpu()  # (T, H', W')


__all__ = [
    "Hypothesis",
    "greedy_decode",
    "greedy_decode_uncached",
    "beam_search",
    "sample_decode",
    "decode",
    "cross_attention_maps",
]
