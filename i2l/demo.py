"""``make demo`` / ``i2l demo``: synthetic data, a few CPU minutes of training, evaluation, transcriptions.

Steps, each one call into the package:

1. a synthetic dataset in the processed Im2Latex layout (:func:`i2l.data.synth.ensure_dataset`);
2. the ``cpu`` preset trained for ``minutes`` (default: the preset's ``max_time_minutes``) into ``runs/demo``;
3. the best checkpoint evaluated on the test split (:func:`i2l.evaluate.evaluate`);
4. a few test images transcribed with :class:`i2l.infer.Predictor`;
5. figures written to ``figures/`` (training curves, hard cases).

A previous ``runs/demo`` is kept until the new run has finished, and put back if it fails
(``fit(cfg, overwrite=True)``).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from i2l.config import Config, get_config, project_root

DEMO_RUN = "demo"
N_TRANSCRIBED = 5


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def demo_config(minutes: float | None = None, n: int | None = None) -> Config:
    """The ``cpu`` preset as the demo uses it: run ``demo``, ``minutes`` of training, ``n`` synthetic formulas."""
    cfg = get_config("cpu", run_name=DEMO_RUN)
    if minutes is not None:
        cfg = cfg.replace(max_time_minutes=float(minutes))
    if n is not None and n != cfg.synth_size:
        cfg = cfg.replace(synth_size=int(n), data_dir=f"{cfg.data_dir}-{int(n)}")
    return cfg


def run_demo(
    minutes: float | None = None, n: int | None = None, figures_dir: str | Path | None = None,
    cfg: Config | None = None,
) -> dict:
    """Run the whole demo; print what happens and return a summary (paths, metrics, transcriptions).

    ``cfg`` replaces the demo's configuration (tests pass a smoke one); ``minutes`` and ``n`` then do nothing.
    """
    from i2l.train import find_data, fit, pick_cpu_threads

    t0 = time.time()
    if cfg is None:
        cfg = demo_config(minutes, n)
        pick_cpu_threads()
    figures = Path(figures_dir) if figures_dir is not None else project_root() / "figures"
    summary: dict[str, Any] = {"missing": []}

    _step(f"1/5 synthetic data ({cfg.synth_size} formulas) in {cfg.data_path}")
    data = find_data(cfg)
    print(f"dataset: {data} ({time.time() - t0:.0f} s)")

    _step(f"2/5 training the '{cfg.name}' preset for up to {cfg.max_time_minutes} min on the CPU")
    result = fit(cfg, overwrite=True)
    ckpt = result.best_checkpoint or result.last_checkpoint
    summary.update(checkpoint=str(ckpt), last_checkpoint=str(result.last_checkpoint),
                   metrics_csv=str(result.metrics_csv), epochs=result.epochs, steps=result.global_step)
    print(f"checkpoint: {ckpt}\nmetrics:    {result.metrics_csv} ({time.time() - t0:.0f} s)")

    _step("3/5 evaluation on the test split (greedy decoding)")
    if _available("i2l.evaluate"):
        from i2l.evaluate import evaluate

        metrics = evaluate(ckpt, data_dir=data, split="test", beam_size=1, out_dir=cfg.run_dir / "eval" / "test",
                           progress=False)
        summary["metrics"] = {k: metrics[k] for k in ("bleu", "edit_accuracy", "exact_match") if k in metrics}
        summary["predictions_tsv"] = metrics.get("predictions_tsv")
    else:
        summary["missing"].append("i2l.evaluate")
        print("i2l.evaluate is not available in this version: skipping the evaluation")

    _step(f"4/5 transcribing {N_TRANSCRIBED} test images")
    from i2l.data.im2latex import load_split

    samples = load_split(data, "test")[:N_TRANSCRIBED]
    if _available("i2l.infer"):
        from i2l.infer import Predictor

        predictor = Predictor.from_checkpoint(ckpt)
        results = predictor.predict([s.image_path for s in samples])
        summary["transcriptions"] = []
        for s, r in zip(samples, results):
            latex = getattr(r, "latex", str(r))
            mark = "ok " if latex.split() == list(s.formula.split()) else "   "
            print(f"{mark}{s.name}\n    truth: {s.formula}\n    model: {latex}")
            summary["transcriptions"].append({"image": str(s.image_path), "reference": s.formula, "prediction": latex})
    else:
        summary["missing"].append("i2l.infer")
        print("i2l.infer is not available in this version: skipping the transcriptions")

    _step(f"5/5 figures in {figures}")
    summary["figures"] = _figures(result.metrics_csv, summary.get("predictions_tsv"), figures, summary["missing"])
    for f in summary["figures"]:
        print(f"wrote {f}")

    summary["seconds"] = round(time.time() - t0, 1)
    _step("done")
    if "metrics" in summary:
        m = summary["metrics"]
        print(f"test BLEU {m.get('bleu', float('nan')):.3f} | edit accuracy {m.get('edit_accuracy', float('nan')):.3f}"
              f" | exact match {m.get('exact_match', float('nan')):.3f}")
    if summary["missing"]:
        print(f"not available yet: {', '.join(summary['missing'])}")
    print(f"total {summary['seconds'] / 60:.1f} min; checkpoint {ckpt}")
    return summary


def _figures(metrics_csv: Path, predictions_tsv: str | None, figures: Path, missing: list[str]) -> list[str]:
    """Training curves and hard cases, when i2l.plots is there."""
    if not _available("i2l.plots"):
        missing.append("i2l.plots")
        return []
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from i2l.plots.evaluation import plot_metrics_by_length
    from i2l.plots.training import plot_training_curves

    out = []
    fig = plot_training_curves(metrics_csv, figures / "demo_training_curves.png")
    plt.close(fig)
    out.append(str(figures / "demo_training_curves.png"))
    if predictions_tsv:
        from i2l.evaluate import read_predictions

        rows = read_predictions(predictions_tsv)
        refs, preds = [r["reference"] for r in rows], [r["prediction"] for r in rows]
        try:
            fig = plot_metrics_by_length(refs, preds, path=figures / "demo_metrics_by_length.png")
            plt.close(fig)
            out.append(str(figures / "demo_metrics_by_length.png"))
        except TypeError:  # another signature: skip this figure rather than fail the demo
            pass
    return out


__all__ = ["run_demo", "demo_config"]
