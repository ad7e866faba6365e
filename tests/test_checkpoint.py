"""Tests for i2l.checkpoint: training checkpoints and weights files load on their own, bad files are clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from i2l.checkpoint import export_weights, file_sha256, load_checkpoint, read_checkpoint, save_weights
from i2l.config import get_config
from i2l.errors import I2LError
from i2l.lit import LitIm2Latex
from i2l.tokenizer import Vocab

FORMULAS = ["x ^ { 2 }", "\\frac { a } { b }", "a + b = c", "\\alpha _ { i }", "x + y"]


@pytest.fixture()
def vocab() -> Vocab:
    return Vocab.build(FORMULAS, min_freq=1)


@pytest.fixture()
def lit(vocab) -> LitIm2Latex:
    torch.manual_seed(0)
    return LitIm2Latex(get_config("smoke", max_len=12).to_dict(), vocab.to_dict()).eval()


@pytest.fixture()
def ckpt(lit, tmp_path, save_checkpoint):
    return save_checkpoint(lit, tmp_path / "m.ckpt")


def _inputs(vocab: Vocab):
    images = torch.ones(2, 1, 32, 96)
    images[:, :, 8:24, 20:40] = 0.0
    tokens = torch.tensor([vocab.encode("x + y"), vocab.encode("a + b")])
    return images, tokens


def test_training_checkpoint_needs_nothing_else(lit, vocab, ckpt):
    model, vocab2, cfg2 = load_checkpoint(ckpt)
    assert vocab2 == vocab and cfg2 == lit.cfg and not model.training
    images, tokens = _inputs(vocab)
    with torch.no_grad():
        assert torch.allclose(lit(images, tokens), model(images, tokens))


def test_weights_file_is_fp16_smaller_and_reads_the_same(lit, vocab, ckpt, tmp_path):
    out = export_weights(ckpt, tmp_path / "m.pt")
    raw = read_checkpoint(out)
    assert raw["format"] == "i2l-weights" and raw["dtype"] == "float16"
    assert {v.dtype for v in raw["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    assert "optimizer_states" not in raw and out.stat().st_size < 0.6 * ckpt.stat().st_size
    model, vocab2, cfg2 = load_checkpoint(out)
    assert vocab2 == vocab and cfg2 == lit.cfg
    assert next(model.parameters()).dtype == torch.float32  # fp16 on disk, fp32 to run
    images, tokens = _inputs(vocab)
    with torch.no_grad():
        expected, got = lit(images, tokens), model(images, tokens)
    assert (expected - got).abs().max() < 0.05 * expected.abs().max()
    assert torch.equal(expected.argmax(-1), got.argmax(-1))
    save_weights(model, vocab2, cfg2, tmp_path / "fp32.pt", dtype=torch.float32)
    again, _, _ = load_checkpoint(tmp_path / "fp32.pt")
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_export_never_overwrites_its_input(ckpt):
    before = ckpt.read_bytes()
    with pytest.raises(I2LError, match="overwrite its input"):
        export_weights(ckpt, ckpt)
    assert ckpt.read_bytes() == before


def test_a_failed_write_keeps_the_old_file(lit, vocab, tmp_path, monkeypatch):
    path = save_weights(lit.model, vocab, lit.cfg, tmp_path / "w.pt")
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_weights(lit.model, vocab, lit.cfg, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]  # no temporary file left


def test_bad_files_are_clear_errors(lit, vocab, ckpt, tmp_path):
    with pytest.raises(I2LError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(I2LError, match="corrupt"):
        load_checkpoint(tmp_path / "junk.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(I2LError, match="not an i2l checkpoint"):
        read_checkpoint(tmp_path / "foreign.ckpt")
    data = ckpt.read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(I2LError, match="corrupt"):
        load_checkpoint(tmp_path / "truncated.ckpt")
    weights = read_checkpoint(export_weights(ckpt, tmp_path / "m.pt"))
    torch.save({**weights, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(I2LError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({k: v for k, v in weights.items() if k != "vocab"}, tmp_path / "partial.pt")
    with pytest.raises(I2LError, match="incomplete"):
        load_checkpoint(tmp_path / "partial.pt")
    other = Vocab.build(FORMULAS + ["\\beta \\gamma"], min_freq=1)  # a checkpoint of another vocabulary
    torch.save({**weights, "vocab": other.to_dict()}, tmp_path / "mismatch.pt")
    with pytest.raises(I2LError, match="does not match"):
        load_checkpoint(tmp_path / "mismatch.pt")


def test_reading_a_checkpoint_imports_no_lightning(ckpt, tmp_path):
    weights = export_weights(ckpt, tmp_path / "m.pt")
    code = ("import sys; from i2l.checkpoint import load_checkpoint; "
            f"load_checkpoint({str(ckpt)!r}); load_checkpoint({str(weights)!r}); "
            "assert 'lightning' not in sys.modules and 'pytorch_lightning' not in sys.modules, 'lightning imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_weights_file_is_checked_against_its_sha256_before_it_is_read(ckpt, tmp_path, monkeypatch):
    import hashlib

    out = export_weights(ckpt, tmp_path / "m.pt")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert file_sha256(out) == digest
    model, _, _ = load_checkpoint(out, sha256=digest.upper())  # hex digits in either case
    assert not model.training
    damaged = tmp_path / "damaged.pt"
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: torch might still read it, the checksum does not pass
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a damaged file must not be unpickled"))
    with pytest.raises(I2LError, match="damaged or not the expected one.*reinstall"):
        read_checkpoint(damaged, sha256=digest)
    with pytest.raises(I2LError, match="not found: reinstall"):
        read_checkpoint(tmp_path / "missing.pt", sha256=digest)
