"""Tests for i2l.lit: the loss, the schedules and the validation metrics."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from i2l.config import get_config
from i2l.errors import I2LError
from i2l.lit import LitIm2Latex, cosine_with_warmup
from i2l.tokenizer import Vocab

FORMULAS = ["x ^ { 2 }", "\\frac { a } { b }", "a + b = c", "\\alpha _ { i }", "x + y"] * 2


@pytest.fixture()
def vocab() -> Vocab:
    return Vocab.build(FORMULAS, min_freq=1)


@pytest.fixture()
def cfg():
    return get_config("smoke", val_decode_samples=3, max_len=12)


def make_batch(vocab: Vocab, B: int = 4, seed: int = 0) -> dict:
    """A batch in the collate format: white images with a dark block, formulas encoded with BOS/EOS/PAD."""
    g = torch.Generator().manual_seed(seed)
    images = torch.ones(B, 1, 32, 96)
    for b in range(B):
        x = int(torch.randint(4, 60, (1,), generator=g))
        images[b, 0, 8:24, x: x + 20] = 0.0
    formulas = [FORMULAS[(seed + b) % len(FORMULAS)] for b in range(B)]
    ids = [vocab.encode(f) for f in formulas]
    T = max(len(i) for i in ids)
    tokens = torch.full((B, T), vocab.pad_id, dtype=torch.long)
    for b, seq in enumerate(ids):
        tokens[b, : len(seq)] = torch.tensor(seq)
    sizes = torch.tensor([[32, 96]] * B)
    return {"images": images, "tokens": tokens, "sizes": sizes, "formulas": formulas, "names": [f"{b}.png" for b in range(B)]}


def test_hyperparameters_are_plain_config_and_vocab(cfg, vocab):
    lit = LitIm2Latex(cfg, vocab)  # objects are accepted and stored as dictionaries
    assert lit.hparams["config"] == cfg.to_dict()
    assert lit.hparams["vocab"] == vocab.to_dict()
    assert Vocab.from_dict(lit.hparams["vocab"]) == vocab


def test_loss_ignores_padding(cfg, vocab):
    torch.manual_seed(0)
    lit = LitIm2Latex(cfg.to_dict(), vocab.to_dict()).eval()
    batch = make_batch(vocab)
    padded = dict(batch, tokens=torch.cat([batch["tokens"], torch.zeros(4, 5, dtype=torch.long)], dim=1))
    with torch.no_grad():
        loss, _ = lit.loss(batch)
        loss_padded, _ = lit.loss(padded)
        logits = lit(batch["images"], batch["tokens"][:, :-1], batch["sizes"])
    targets = batch["tokens"][:, 1:]
    keep = targets != vocab.pad_id
    manual = -torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)[keep].mean()
    assert torch.allclose(loss, manual, atol=1e-5)
    assert torch.allclose(loss, loss_padded, atol=1e-5)


def test_label_smoothing_changes_the_loss(cfg, vocab):
    torch.manual_seed(0)
    plain = LitIm2Latex(cfg.to_dict(), vocab.to_dict()).eval()
    smooth = LitIm2Latex(cfg.replace(label_smoothing=0.2).to_dict(), vocab.to_dict()).eval()
    smooth.load_state_dict(plain.state_dict())
    batch = make_batch(vocab)
    with torch.no_grad():
        assert not torch.allclose(plain.loss(batch)[0], smooth.loss(batch)[0])


def test_training_step_learns_a_batch(cfg, vocab):
    torch.manual_seed(0)
    lit = LitIm2Latex(cfg.replace(lr=3e-3).to_dict(), vocab.to_dict())
    batch = make_batch(vocab, B=2)
    opt = torch.optim.AdamW(lit.parameters(), lr=3e-3)
    first = None
    for _ in range(10):
        loss, _ = lit.loss(batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_cosine_with_warmup_shape():
    f = [cosine_with_warmup(s, 10, 110) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10]))  # warm-up rises
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # then decays
    assert f[60] == pytest.approx(0.5, abs=1e-6) and f[110] == pytest.approx(0.0, abs=1e-9)


def test_multistep_halves_the_lr_after_the_milestone(cfg, vocab):
    lit = LitIm2Latex(cfg.replace(schedule="multistep", milestones=(10,), gamma=0.5, lr=1e-3).to_dict(),
                      vocab.to_dict())
    conf = lit.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "epoch"
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[9] == pytest.approx(1e-3) and lrs[10] == pytest.approx(5e-4)


def test_cosine_schedule_and_weight_decay_groups(cfg, vocab, monkeypatch):
    lit = LitIm2Latex(cfg.replace(schedule="cosine", warmup_steps=5, lr=1e-3, weight_decay=0.1).to_dict(),
                      vocab.to_dict())
    monkeypatch.setattr(lit, "total_steps", lambda: 25)
    conf = lit.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    lrs = []
    for _ in range(25):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(2e-4) and max(lrs) == pytest.approx(1e-3) and lrs[-1] < 1e-5


def test_schedule_steps_moves_the_end_of_the_cosine(cfg, vocab, monkeypatch):
    lit = LitIm2Latex(cfg.replace(schedule="cosine", warmup_steps=0, lr=1e-3).to_dict(), vocab.to_dict())
    monkeypatch.setattr(lit, "total_steps", lambda: 100)
    conf = lit.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * cosine_with_warmup(10, 0, 100))
    lit.schedule_steps = 20  # a time budget says the run ends at step 20
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * cosine_with_warmup(11, 0, 20))
    lit.schedule_steps = 1000  # never beyond max_epochs
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * cosine_with_warmup(12, 0, 100))


def test_unknown_schedule_is_a_clear_error(cfg, vocab):
    lit = LitIm2Latex(cfg.replace(schedule="linear").to_dict(), vocab.to_dict())
    with pytest.raises(I2LError, match="multistep"):
        lit.configure_optimizers()


def test_validation_logs_metrics_and_samples(cfg, vocab, capsys):
    torch.manual_seed(0)
    lit = LitIm2Latex(cfg.to_dict(), vocab.to_dict())
    batches = [make_batch(vocab, B=2, seed=s) for s in range(3)]
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.validate(lit, dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    metrics = trainer.callback_metrics
    for key in ("val_loss", "val_bleu", "val_edit_accuracy", "val_exact_match"):
        assert key in metrics and math.isfinite(float(metrics[key]))
    assert len(lit.val_samples) == 3  # val_decode_samples, across batches
    assert [ref for ref, _ in lit.val_samples] == batches[0]["formulas"] + batches[1]["formulas"][:1]
    assert "ref :" in capsys.readouterr().out
