"""Tests of i2l.tokenizer: tokenizers, Vocab specials, min_freq, encode/decode, JSON, coverage on real formulas."""

from __future__ import annotations

import json
import re

import pytest

from i2l.data.im2latex import read_formulas
from i2l.errors import I2LError
from i2l.tokenizer import BOS, EOS, PAD, UNK, Vocab, coverage, tokenize, tokenize_raw

FORMULAS = [
    "\\frac { a } { b } + x _ { i }",
    "x ^ { 2 } + y ^ { 2 } = z ^ { 2 }",
    "\\alpha + \\beta = \\gamma",
    "a + b",
]


def test_specials_have_fixed_ids():
    vocab = Vocab.build(FORMULAS)
    assert vocab.itos[:4] == [PAD, BOS, EOS, UNK]
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    assert vocab.stoi["<s>"] == 1 and vocab.stoi["</s>"] == 2


def test_min_freq_and_order():
    vocab = Vocab.build(FORMULAS, min_freq=2)
    assert "{" in vocab and "+" in vocab and "a" in vocab
    assert "\\alpha" not in vocab and "z" not in vocab  # seen once
    assert vocab.itos[4] == "{" and vocab.itos[5] == "}"  # the most frequent tokens come first
    assert len(Vocab.build(FORMULAS, min_freq=1)) > len(vocab)
    assert Vocab.build(FORMULAS) == Vocab.build(list(reversed(FORMULAS)))  # order-independent


def test_encode_decode_round_trip():
    vocab = Vocab.build(FORMULAS, min_freq=1)
    for f in FORMULAS:
        ids = vocab.encode(f)
        assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
        assert vocab.decode(ids) == f.split()
        assert vocab.decode_str(ids) == f
        assert vocab.encode(f.split()) == ids
        assert vocab.encode(f, add_special=False) == ids[1:-1]


def test_decode_stops_at_eos_and_strips():
    vocab = Vocab.build(FORMULAS, min_freq=1)
    ids = vocab.encode("a + b") + [vocab.stoi["x"], vocab.pad_id]
    assert vocab.decode(ids) == ["a", "+", "b"]
    assert vocab.decode(ids, strip_special=False) == [BOS, "a", "+", "b", EOS]
    assert vocab.decode([vocab.pad_id, vocab.stoi["a"], vocab.pad_id]) == ["a"]


def test_unknown_tokens_are_counted():
    vocab = Vocab.build(FORMULAS, min_freq=2)
    ids = vocab.encode("a + \\zeta")
    assert ids[-2] == vocab.unk_id
    assert vocab.count_unknown("a + \\zeta \\zeta") == 2
    assert vocab.unknown_tokens(["\\zeta", "a"]) == ["\\zeta"]
    assert vocab.decode(ids) == ["a", "+", UNK]


def test_save_load_json(tmp_path):
    vocab = Vocab.build(FORMULAS, min_freq=1)
    path = vocab.save(tmp_path / "sub" / "vocab.json")
    assert json.loads(path.read_text())["itos"][:4] == [PAD, BOS, EOS, UNK]
    assert Vocab.load(path) == vocab
    assert Vocab.from_dict(vocab.to_dict()).stoi == vocab.stoi
    assert not list(tmp_path.glob("**/*.tmp"))
    (tmp_path / "bad.json").write_text('{"itos": ["a"]}')
    with pytest.raises(I2LError, match="bad.json"):
        Vocab.load(tmp_path / "bad.json")


def test_tokenize_normalized():
    assert tokenize("  \\frac { a }\t{ b } ") == ["\\frac", "{", "a", "}", "{", "b", "}"]


@pytest.mark.parametrize(
    ("latex", "tokens"),
    [
        (r"\frac{a}{b}", [r"\frac", "{", "a", "}", "{", "b", "}"]),
        (r"x_{i}^2", ["x", "_", "{", "i", "}", "^", "2"]),
        (r"a \\ b", ["a", "\\\\", "b"]),
        (r"\{ x \} \, \; \!", [r"\{", "x", r"\}", r"\,", r"\;", r"\!"]),
        (r"\mathrm{d}x", [r"\mathrm", "{", "d", "}", "x"]),
        (r"\operatorname*{lim}", [r"\operatorname*", "{", "l", "i", "m", "}"]),
        ("a\\ b", ["a", "\\ ", "b"]),
        ("12.5", ["1", "2", ".", "5"]),
    ],
)
def test_tokenize_raw(latex, tokens):
    assert tokenize_raw(latex) == tokens


def test_coverage_report():
    vocab = Vocab.build(FORMULAS, min_freq=2)
    rep = coverage(vocab, ["a + b", "a + \\zeta"])
    assert rep["formulas"] == 2 and rep["tokens"] == 6 and rep["unknown_tokens"] == 1
    assert rep["formulas_with_unknown"] == 1 and rep["top_unknown"] == [("\\zeta", 1)]


# ---------------------------------------------------------------------------------------------- real data
def test_round_trip_on_real_formulas(shared_data):
    formulas_dir = shared_data / "im2latex" / "formulas"
    train = [f for f in read_formulas(formulas_dir / "head3000.formulas.norm.lst") if f.strip()]
    val = read_formulas(formulas_dir / "val.formulas.norm.txt")
    assert len(val) == 8475 and len(train) > 2000
    vocab = Vocab.build(train, min_freq=2)
    assert 200 < len(vocab) < 2000
    rep = coverage(vocab, val)
    assert rep["unknown_rate"] < 0.01  # the vocabulary of 3k formulas covers > 99% of validation tokens
    known = 0
    for f in val:
        ids = vocab.encode(f)
        decoded = vocab.decode(ids)
        assert len(decoded) == len(f.split())
        if not vocab.count_unknown(f):
            assert vocab.decode_str(ids) == " ".join(f.split())
            known += 1
        else:
            assert UNK in decoded
    assert known > 0.8 * len(val)
    assert Vocab.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab


def test_tokenize_raw_keeps_every_character_of_real_formulas(shared_data):
    formulas = [f for f in read_formulas(shared_data / "im2latex/sample/raw/formulas.lst") if f.strip()]
    assert len(formulas) > 1000
    for f in formulas:
        tokens = tokenize_raw(f)
        assert "".join(tokens).replace(" ", "") == re.sub(r"[ \t]", "", f)
        assert all(t.strip() or t == "\\ " for t in tokens)
