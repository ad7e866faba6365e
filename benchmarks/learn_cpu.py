"""Does the ``cpu`` preset learn on a CPU? Train it for at most 15 minutes on 2 cores, report the curve.

Target (issue 6): at least 50% token-level exact match on held-out synthetic formulas of up to 40 tokens.

1. a synthetic dataset of the ``cpu`` preset's kind: ``--level basic`` formulas of up to 40 tokens
   (``data/synth-learn-basic-<n>``, generated once; ``--level full`` for Im2Latex-like ones);
2. the ``cpu`` preset trained into ``runs/learn_cpu`` for ``--minutes`` (default 15); its cosine schedule ends
   with the time budget (:class:`i2l.train.TimeBudgetSchedule`); validation every ``--val-every`` steps on
   ``--val-batches`` batches plus greedy decoding of a fixed subset;
3. the best checkpoint evaluated on the held-out test split (greedy), overall and by reference length;
4. the curve (validation exact match / BLEU against wall-clock minutes) printed and written to
   ``figures/learn_cpu.png``, the numbers to ``runs/learn_cpu/learn_cpu.json``.

Torch threads: all cores on an idle machine, one when other processes load the CPU
(:func:`i2l.train.pick_cpu_threads`): with two threads on a busy 2-core machine every parallel region waits
for the descheduled thread (150 batches: 11-181 s with 2 threads, 18.7 s with 1).

    .venv/bin/python benchmarks/learn_cpu.py [--minutes 15] [--n 40000] [--level basic] [--threads 2]
        [--set lr=2e-3 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import lightning as L
import torch

from i2l.config import get_config, project_root
from i2l.data.synth import make_dataset
from i2l.evaluate import evaluate, read_predictions
from i2l.metrics import compute_metrics, metrics_by_length
from i2l.train import fit, pick_cpu_threads

MAX_TOKENS = 40
TARGET = 0.5


class Curve(L.Callback):
    """Wall-clock minutes, step and validation metrics after each validation run."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self.points: list[dict] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        point = {"minutes": (time.time() - self.t0) / 60, "step": trainer.global_step, "epoch": trainer.current_epoch}
        for key in ("val_loss", "val_bleu", "val_exact_match", "val_edit_accuracy"):
            if key in m:
                point[key] = float(m[key])
        self.points.append(point)
        print(f"[curve] {point['minutes']:5.1f} min, step {point['step']}: exact match "
              f"{point.get('val_exact_match', float('nan')):.3f}, BLEU {point.get('val_bleu', float('nan')):.3f}",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--n", type=int, default=40000,
                   help="synthetic formulas (train/validate/test 80/10/10); with 9,600 training formulas the "
                        "validation loss stopped falling after 9,500 of 12,400 steps while the training loss fell")
    p.add_argument("--level", choices=["basic", "full"], default="basic",
                   help="generator level (i2l.data.grammar): the cpu preset's basic formulas, or Im2Latex-like ones")
    p.add_argument("--data", default=None, help="an existing dataset folder instead of generating one")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: 1 when other processes load the CPU, else all)")
    p.add_argument("--val-every", type=int, default=1000, help="validate every N training steps")
    p.add_argument("--val-batches", type=int, default=8,
                   help="validation batches for the loss (each validation costs training time: the whole split "
                        "every 500 steps cost 15%% of the steps)")
    p.add_argument("--eval-limit", type=int, default=600, help="held-out test images decoded at the end")
    p.add_argument("--run-name", default="learn_cpu")
    p.add_argument("--max-epochs", type=int, default=None,
                   help="cap on epochs (default: the preset's; the cosine schedule ends with the time budget)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a field of the cpu preset (YAML value), e.g. --set lr=3e-3; repeatable")
    p.add_argument("--replot", metavar="JSON", default=None,
                   help="only redraw the figure from a run's learn_cpu.json (no training)")
    args = p.parse_args()
    if args.replot:
        print(f"wrote {plot_curve(json.loads(Path(args.replot).read_text()))}")
        return
    pick_cpu_threads(args.threads)

    data = Path(args.data) if args.data else project_root() / "data" / f"synth-learn-{args.level}-{args.n}"
    if not (data / "formulas.norm.lst").exists():
        make_dataset(data, n=args.n, seed=7, max_len=MAX_TOKENS, level=args.level)
    defaults = {"limit_val_batches": args.val_batches}
    if args.max_epochs is not None:
        defaults["max_epochs"] = args.max_epochs
    cfg = get_config("cpu", data_dir=str(data), run_name=args.run_name, max_time_minutes=args.minutes,
                     **defaults).with_settings(args.set)
    if cfg.run_dir.exists():
        shutil.rmtree(cfg.run_dir)  # a benchmark run starts from scratch
    curve = Curve()
    t0 = time.time()
    result = fit(cfg, progress_bar=False, val_check_interval=args.val_every, check_val_every_n_epoch=None,
                 extra_callbacks=[curve])
    train_minutes = (time.time() - t0) / 60

    ckpt = result.best_checkpoint or result.last_checkpoint
    metrics = evaluate(ckpt, data_dir=data, split="test", beam_size=1, limit=args.eval_limit,
                       out_dir=cfg.run_dir / "eval", progress=False, verbose=False)
    rows = [r for r in read_predictions(metrics["predictions_tsv"]) if len(r["reference"].split()) <= MAX_TOKENS]
    held_out = compute_metrics([r["reference"] for r in rows], [r["prediction"] for r in rows])
    by_length = metrics_by_length([r["reference"] for r in rows], [r["prediction"] for r in rows],
                                  bins=(0, 10, 20, 30, MAX_TOKENS + 1))

    print(f"\ncpu preset: {cfg.d_model=} {cfg.batch_size=} {cfg.lr=} {cfg.warmup_steps=} {cfg.max_len=}, "
          f"{torch.get_num_threads()} torch threads on {os.cpu_count()} cores, {train_minutes:.1f} min of training, {result.global_step} steps")
    print(f"{'minutes':>7s} {'step':>6s} {'val exact':>9s} {'val BLEU':>8s}")
    for pt in curve.points:
        print(f"{pt['minutes']:7.1f} {pt['step']:6d} {pt.get('val_exact_match', float('nan')):9.3f} "
              f"{pt.get('val_bleu', float('nan')):8.3f}")
    verdict = "PASS" if held_out["exact_match"] >= TARGET else "FAIL"
    print(f"held-out test (<= {MAX_TOKENS} tokens, n={held_out['n']}): exact match {held_out['exact_match']:.3f}, "
          f"BLEU {held_out['bleu']:.3f}, edit accuracy {held_out['edit_accuracy']:.3f} -> {verdict} "
          f"(target {TARGET:.0%})")
    for b in by_length:
        print(f"  references of {b['lo']:2d}-{b['hi'] - 1:2d} tokens (n={b['n']:4d}): exact match {b['exact_match']:.3f}, "
              f"BLEU {b['bleu']:.3f}, edit accuracy {b['edit_accuracy']:.3f}")

    summary = {"config": cfg.to_dict(), "level": args.level, "threads": torch.get_num_threads(),
               "train_minutes": train_minutes, "steps": result.global_step, "curve": curve.points,
               "held_out": held_out, "by_length": by_length, "checkpoint": str(ckpt), "target": TARGET}
    summary_path = cfg.run_dir / "learn_cpu.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    print(f"wrote {plot_curve(summary)} and {summary_path}")


def plot_curve(summary: dict) -> Path:
    """The learning curve of a run summary (``learn_cpu.json``) -> ``figures/learn_cpu[_<level>].png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, level = summary["curve"], summary.get("level", "basic")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    mins = [pt["minutes"] for pt in points]
    for key, label in (("val_exact_match", "exact match"), ("val_bleu", "BLEU-4"), ("val_edit_accuracy", "edit acc.")):
        ax.plot(mins, [pt.get(key, float("nan")) for pt in points], marker="o", label=f"validation {label}")
    ax.axhline(summary["target"], color="grey", ls="--", lw=1, label="target exact match")
    ax.scatter([summary["train_minutes"]], [summary["held_out"]["exact_match"]], color="black", zorder=5,
               label="held-out test exact match")
    ax.set_xlabel(f"training minutes ({summary.get('threads', '?')} CPU threads)")
    ax.set_ylim(0, 1)
    ax.set_title(f"cpu preset on {level} synthetic formulas (<= {MAX_TOKENS} tokens)")
    ax.legend(fontsize=7, loc="upper left")
    out = project_root() / "figures" / ("learn_cpu.png" if level == "basic" else f"learn_cpu_{level}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight", dpi=150)
    plt.close(fig)
    return out


if __name__ == "__main__":
    main()
