"""The LightningModule: loss, optimiser and schedule, validation metrics, and loading a checkpoint back.

:class:`LitIm2Latex` wraps :class:`i2l.model.Im2LatexModel`. Its hyper-parameters are two plain
dictionaries, ``{"config": cfg.to_dict(), "vocab": vocab.to_dict()}``, so that a checkpoint carries
everything needed to rebuild the model and read its predictions (:func:`i2l.checkpoint.load_checkpoint`).

- Loss: cross-entropy over the next token, padding ignored, optional label smoothing.
- Optimiser: AdamW (no weight decay on biases and norms).
- Schedules: ``"multistep"`` (lr * gamma after each milestone epoch: the original project halves it
  after epoch 10), ``"cosine"`` (linear warm-up over ``warmup_steps``, then cosine to zero over the
  estimated total number of steps) and ``"rsqrt"`` (warm-up, then inverse square root: no fixed end).
- Validation: the loss on every batch; at the epoch's end, greedy decoding of a fixed subset
  (``val_decode_samples`` first validation images) scored with :func:`i2l.metrics.compute_metrics`
  (``val_bleu``, ``val_edit_accuracy``, ``val_exact_match``), and a few sample predictions printed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from i2l.config import Config
from i2l.errors import I2LError
from i2l.model import Im2LatexModel
from i2l.tokenizer import Vocab

VAL_SAMPLES_SHOWN = 3


def cosine_with_warmup(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor at ``step``: linear warm-up to 1, then cosine decay to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def rsqrt_with_warmup(step: int, warmup_steps: int) -> float:
    """Learning-rate factor at ``step``: linear warm-up to 1, then ``sqrt(warmup / (step + 1))``: a schedule with no
    end, for a run resumed over many sessions whose length nobody knows in advance."""
    warmup = max(1, warmup_steps)
    if step < warmup:
        return (step + 1) / warmup
    return math.sqrt(warmup / (step + 1))


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Config, total_steps: int | Callable[[], int]
) -> tuple[torch.optim.lr_scheduler.LRScheduler, str]:
    """The schedule of ``cfg`` and how often it steps: ``("epoch")`` for multistep, ``("step")`` for cosine.

    ``total_steps`` may be a function, asked at every step (a time budget moves the end of the cosine)."""
    if cfg.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.milestones), gamma=cfg.gamma), "epoch"
    if cfg.schedule == "cosine":
        warmup = cfg.warmup_steps
        horizon = total_steps if callable(total_steps) else (lambda: total_steps)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_with_warmup(step, warmup, horizon())
        ), "step"
    if cfg.schedule == "rsqrt":
        warmup = cfg.warmup_steps
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: rsqrt_with_warmup(step, warmup)), "step"
    raise I2LError(f"unknown schedule {cfg.schedule!r} in the config: use 'multistep', 'cosine' or 'rsqrt'")


def lr_schedule(cfg: Config, steps_per_epoch: int, epochs: int | None = None) -> list[float]:
    """The learning rate of every optimiser step of a run of ``cfg`` (for plotting the schedule)."""
    epochs = epochs or cfg.max_epochs
    total = steps_per_epoch * epochs
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler, interval = make_scheduler(optimizer, cfg, total)
    lrs = []
    for step in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if interval == "step" or (step + 1) % steps_per_epoch == 0:
            scheduler.step()
    return lrs


class LitIm2Latex(L.LightningModule):
    """Training, validation and optimisation around :class:`i2l.model.Im2LatexModel`."""

    def __init__(self, config: dict | Config, vocab: dict | Vocab) -> None:
        super().__init__()
        config = config.to_dict() if isinstance(config, Config) else dict(config)
        vocab = vocab.to_dict() if isinstance(vocab, Vocab) else dict(vocab)
        self.save_hyperparameters({"config": config, "vocab": vocab})
        self.cfg = Config.from_dict(config)
        self.vocab = Vocab.from_dict(vocab)
        self.model = Im2LatexModel(self.cfg, len(self.vocab))
        self._compiled: Any = None  # set by compile_model(); kept out of the state dict
        self.schedule_steps: int | None = None  # end of the cosine when a time budget sets it (TimeBudgetSchedule)
        self._val_refs: list[str] = []
        self._val_preds: list[str] = []
        self.val_samples: list[tuple[str, str]] = []  # (reference, prediction) of the last validation

    # ------------------------------------------------------------------ model
    def compile_model(self) -> None:
        """Use ``torch.compile`` for the teacher-forced forward pass (the checkpoint keys stay unchanged)."""
        object.__setattr__(self, "_compiled", torch.compile(self.model))

    def forward(self, images: Tensor, tokens: Tensor, sizes: Tensor | None = None) -> Tensor:
        """Logits (B, T, V) for decoder input ``tokens`` (B, T) given ``images`` (B, 1, H, W)."""
        net = self._compiled if self._compiled is not None else self.model
        return net(images, tokens, sizes)

    def loss(self, batch: dict) -> tuple[Tensor, int]:
        """Teacher-forced cross-entropy over the batch (padding ignored) -> (loss, batch size)."""
        tokens = batch["tokens"]  # (B, T) = <s> ids </s> <pad>...
        logits = self(batch["images"], tokens[:, :-1], batch.get("sizes"))  # (B, T-1, V)
        targets = tokens[:, 1:]  # (B, T-1)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
            ignore_index=self.vocab.pad_id, label_smoothing=self.cfg.label_smoothing,
        )
        return loss, tokens.size(0)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        """Teacher-forced cross-entropy on one batch."""
        loss, B = self.loss(batch)
        if not torch.isfinite(loss):
            raise I2LError(
                f"the training loss became {loss.item()} at step {self.global_step}: lower the learning rate "
                f"(lr={self.cfg.lr}), keep gradient clipping on, or use precision 32; resume from last.ckpt"
            )
        self.log("train_loss", loss, prog_bar=True, batch_size=B)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_refs, self._val_preds = [], []

    def validation_step(self, batch: dict, batch_idx: int) -> Tensor:
        """Loss on every batch; greedy predictions for the first ``val_decode_samples`` images."""
        loss, B = self.loss(batch)
        self.log("val_loss", loss, prog_bar=True, batch_size=B, sync_dist=True)
        wanted = self.cfg.val_decode_samples - len(self._val_refs)
        if wanted > 0 and not self.trainer.sanity_checking:
            from i2l.decoding import greedy_decode

            k = min(wanted, B)
            sizes = batch.get("sizes")
            ids = greedy_decode(
                self.model, batch["images"][:k], None if sizes is None else sizes[:k],
                max_len=self.cfg.max_len + 2, special=self.vocab.special,
            )
            self._val_preds.extend(self.vocab.decode_str(seq) for seq in ids)
            self._val_refs.extend(batch["formulas"][:k])
        return loss

    def on_validation_epoch_end(self) -> None:
        if not self._val_refs:
            return
        from i2l.metrics import compute_metrics

        m = compute_metrics(self._val_refs, self._val_preds)
        for key in ("bleu", "edit_accuracy", "exact_match"):
            self.log(f"val_{key}", float(m[key]), prog_bar=key == "bleu", sync_dist=True)
        self.val_samples = list(zip(self._val_refs, self._val_preds))
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            lines = [f"epoch {self.current_epoch}: val_bleu {m['bleu']:.3f}, exact match {m['exact_match']:.3f}"]
            for ref, pred in self.val_samples[:VAL_SAMPLES_SHOWN]:
                lines += [f"  ref : {ref}", f"  pred: {pred}"]
            text = "\n".join(lines)
            print(text)
            for logger in self.loggers:
                exp = getattr(logger, "experiment", None)
                if hasattr(exp, "add_text"):
                    exp.add_text("val_samples", "    " + text.replace("\n", "\n    "), self.global_step)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict:
        """AdamW with the multistep or warm-up + cosine schedule."""
        cfg = self.cfg
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        total = self.total_steps() if cfg.schedule == "cosine" else 0
        scheduler, interval = make_scheduler(optimizer, cfg, lambda: min(total, self.schedule_steps or total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["schedule_steps"] = self.schedule_steps  # a resumed time-budgeted run keeps its schedule

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.schedule_steps = checkpoint.get("schedule_steps")

    def total_steps(self) -> int:
        """Optimiser steps of the whole run as Lightning estimates them (max_epochs x batches per epoch)."""
        try:
            total = self.trainer.estimated_stepping_batches
        except (RuntimeError, AttributeError):  # no trainer attached
            total = float("inf")
        if not math.isfinite(total):
            total = max(1, self.cfg.warmup_steps) * 10
        return max(1, int(total))


__all__ = ["LitIm2Latex", "cosine_with_warmup", "rsqrt_with_warmup", "make_scheduler", "lr_schedule"]
