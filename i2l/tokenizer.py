"""LaTeX tokens and the vocabulary.

Normalized Im2Latex formulas are already tokenized (tokens separated by single spaces), so
:func:`tokenize` just splits on whitespace; :func:`tokenize_raw` splits raw LaTeX with a regex that keeps
commands, ``\\\\``, braces, escaped symbols and single characters as tokens. :class:`Vocab` maps tokens to
ids with four special tokens and travels inside every checkpoint (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from i2l.errors import I2LError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)

# Order matters: "\\" (a line break) before "\x" (an escaped symbol) before single characters.
_RAW_TOKEN = re.compile(
    r"\\[a-zA-Z]+\*?"  # a command, e.g. \frac, \mathrm, \operatorname*
    r"|\\\\"  # a line break \\
    r"|\\[^a-zA-Z\s]"  # an escaped symbol, e.g. \{ \} \, \; \! \%
    r"|\\\s"  # an escaped space "\ "
    r"|[^\s\\]"  # any other single character (letters, digits, braces, operators)
    r"|\\"  # a lone backslash (at the end of the input)
)


def tokenize(formula: str) -> list[str]:
    """Tokens of a normalized formula (whitespace-separated)."""
    return formula.split()


def tokenize_raw(latex: str) -> list[str]:
    """Tokens of raw LaTeX: commands, ``\\\\``, braces, escaped symbols and single characters."""
    return _RAW_TOKEN.findall(latex)


def _as_tokens(formula: Sequence[str] | str) -> list[str]:
    return tokenize(formula) if isinstance(formula, str) else list(formula)


class SpecialIds(NamedTuple):
    """The ids of the start, end and padding tokens, as decoding needs them (:attr:`Vocab.special`)."""

    bos: int
    eos: int
    pad: int


class Vocab:
    """Token <-> id mapping; ids 0-3 are ``<pad>``, ``<s>``, ``</s>``, ``<unk>``, then tokens by frequency."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3
    special = SpecialIds(bos=bos_id, eos=eos_id, pad=pad_id)

    def __init__(self, tokens: Iterable[str], min_freq: int = 2) -> None:
        self.itos: list[str] = list(SPECIALS)
        for tok in tokens:
            if tok not in SPECIALS:
                self.itos.append(tok)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise I2LError("duplicate tokens in the vocabulary: every token must appear once")
        self.min_freq = min_freq

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, formulas: Iterable[Sequence[str] | str], min_freq: int = 2) -> Vocab:
        """Vocabulary of the tokens seen at least ``min_freq`` times in ``formulas`` (strings are split)."""
        counts: Counter[str] = Counter()
        for formula in formulas:
            counts.update(_as_tokens(formula))
        kept = [tok for tok, n in counts.items() if n >= min_freq and tok not in SPECIALS]
        kept.sort(key=lambda tok: (-counts[tok], tok))  # deterministic: frequency, then alphabetical
        return cls(kept, min_freq=min_freq)

    # ------------------------------------------------------------------ mapping
    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, min_freq={self.min_freq})"

    def encode(self, tokens: Sequence[str] | str, add_special: bool = True) -> list[int]:
        """Token ids (``<unk>`` for unknown tokens); with ``add_special``: ``[<s>] + ids + [</s>]``."""
        ids = [self.stoi.get(tok, self.unk_id) for tok in _as_tokens(tokens)]
        return [self.bos_id, *ids, self.eos_id] if add_special else ids

    def decode(self, ids: Iterable[int], strip_special: bool = True) -> list[str]:
        """Tokens of ``ids``, stopping at the first ``</s>``; ``strip_special`` drops ``<pad>``, ``<s>``, ``</s>``."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                if not strip_special:
                    out.append(EOS)
                break
            if strip_special and i in (self.pad_id, self.bos_id):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return out

    def decode_str(self, ids: Iterable[int]) -> str:
        """Decoded tokens joined by single spaces (the normalized formula format)."""
        return " ".join(self.decode(ids))

    def unknown_tokens(self, tokens: Sequence[str] | str) -> list[str]:
        """The tokens of ``tokens`` that are not in the vocabulary (in order, repeated)."""
        return [tok for tok in _as_tokens(tokens) if tok not in self.stoi]

    def count_unknown(self, tokens: Sequence[str] | str) -> int:
        """How many tokens of ``tokens`` map to ``<unk>``."""
        return len(self.unknown_tokens(tokens))

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """JSON-serialisable form (travels inside checkpoints)."""
        return {"itos": list(self.itos), "min_freq": self.min_freq}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        """Inverse of :meth:`to_dict`."""
        itos = d.get("itos")
        if not isinstance(itos, list) or tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise I2LError(f"not a vocabulary: expected 'itos' starting with {list(SPECIALS)}")
        return cls(itos[len(SPECIALS):], min_freq=int(d.get("min_freq", 2)))

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=0))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, I2LError) as exc:
            raise I2LError(f"{path}: cannot read the vocabulary ({exc}); rebuild it with Vocab.build") from exc


def coverage(vocab: Vocab, formulas: Iterable[Sequence[str] | str]) -> dict:
    """Unknown-token statistics of ``formulas`` under ``vocab``.

    Keys: ``formulas``, ``tokens``, ``unknown_tokens``, ``unknown_rate`` (share of tokens),
    ``formulas_with_unknown``, ``formula_unknown_rate``, ``top_unknown`` (most common unknown tokens).
    """
    n_formulas = n_tokens = n_unknown = n_bad = 0
    unknown: Counter[str] = Counter()
    for formula in formulas:
        tokens = _as_tokens(formula)
        missing = vocab.unknown_tokens(tokens)
        n_formulas += 1
        n_tokens += len(tokens)
        n_unknown += len(missing)
        n_bad += bool(missing)
        unknown.update(missing)
    return {
        "formulas": n_formulas,
        "tokens": n_tokens,
        "unknown_tokens": n_unknown,
        "unknown_rate": n_unknown / max(n_tokens, 1),
        "formulas_with_unknown": n_bad,
        "formula_unknown_rate": n_bad / max(n_formulas, 1),
        "top_unknown": unknown.most_common(10),
    }


__all__ = ["PAD", "BOS", "EOS", "UNK", "SPECIALS", "SpecialIds", "Vocab", "tokenize", "tokenize_raw", "coverage"]
