"""Recipe choices side by side by accuracy: the ``reference`` preset trained once per arm, then read by the Predictor.

Every arm is the ``reference`` preset with its own ``--set``-style settings (``name:field=value,field=value``;
``name:`` alone keeps the preset), trained under the same conditions, one after the other: the same data
(``--synth-size`` formulas of the reference shards), the same start (``--init-from``: nothing, ``pretrained`` or a
checkpoint), the same seed, one torch thread, and either the same number of steps (``--steps``, for choices that
cost the same per step) or the same training minutes (``--minutes``, for accuracy per CPU-hour).
Each arm's last checkpoint is then read through the Predictor from image files (greedy):

- the real validation proxy (``benchmarks/reference.py``'s: ``data/proxy-val``, a fixed subset of ``--n``);
- held-out synthetic formulas of the reference data (the shards' validate splits, ``--synthetic-n``).

The table (markdown) is printed and, with every figure, written to ``runs/recipe-accuracy/<label>.json``.

    PYTHONPATH=. .venv/bin/python benchmarks/recipe_accuracy.py --label label-smoothing --init-from pretrained \
        --steps 600 --arm "ls-0.1:" --arm "ls-0:label_smoothing=0"
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.reference import PROXY_DIR, proxy_samples, proxy_scores, synthetic_samples
from i2l.config import get_config, project_root
from i2l.infer import Predictor
from i2l.train import fit, pick_cpu_threads

OUT = project_root() / "runs" / "recipe-accuracy"


def parse_arm(text: str) -> tuple[str, list[str]]:
    """``"name:field=value,field=value"`` -> (name, ["field=value", ...])."""
    name, _, settings = text.partition(":")
    if not name:
        raise SystemExit(f"arm {text!r}: give it a name, as in 'ls-0:label_smoothing=0'")
    return name, [s for s in settings.split(",") if s.strip()]


def train_arm(name: str, settings: list[str], args: argparse.Namespace) -> tuple[Path, int, float]:
    """Train one arm afresh; its last checkpoint, steps and the training's wall-clock hours."""
    cfg = get_config("reference").with_settings(settings).replace(
        run_name=f"recipe-{args.label}-{name}", synth_size=args.synth_size, init_from=args.init_from,
        max_time_minutes=args.minutes, checkpoint_every_minutes=None)
    overrides = {"max_steps": args.steps} if args.steps else {}
    t0 = time.perf_counter()
    result = fit(cfg, overwrite=True, progress_bar=False, **overrides)
    return result.last_checkpoint, result.global_step, (time.perf_counter() - t0) / 3600


def read_arm(checkpoint: Path, proxy: list, synthetic: list) -> dict:
    """Greedy scores of ``checkpoint`` through the Predictor on the proxy and the synthetic samples."""
    predictor = Predictor.load(checkpoint, device="cpu")

    def scores(samples: list) -> dict | None:
        if not samples:
            return None
        s = proxy_scores(predictor, samples, beam=1)
        return {k: s[k] for k in ("n", "bleu", "edit_accuracy", "exact_match")}

    return {"checkpoint": str(checkpoint), "proxy": scores(proxy), "synthetic": scores(synthetic)}


def markdown(result: dict) -> str:
    lines = [f"Recipe arms `{result['label']}`: {result['budget']}, start {result['init_from'] or 'from nothing'}, "
             f"{result['synth_size']:,} formulas; read by the Predictor, greedy.", "",
             "| arm | settings | steps | hours | proxy BLEU | proxy edit acc. | proxy exact | synthetic BLEU |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for arm in result["arms"]:
        p, s = arm["proxy"], arm["synthetic"] or {}
        lines.append(f"| {arm['name']} | {', '.join(arm['settings']) or 'the preset'} | {arm['steps']} | "
                     f"{arm['train_hours']} | {p['bleu']:.3f} | {p['edit_accuracy']:.3f} | {p['exact_match']:.3f} | "
                     f"{s.get('bleu', float('nan')):.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True, help="the comparison's name (run folders and the JSON file)")
    p.add_argument("--arm", action="append", required=True, metavar="NAME:FIELD=VALUE,...")
    p.add_argument("--init-from", default=None, help="'pretrained', a checkpoint, or nothing (from nothing)")
    p.add_argument("--steps", type=int, default=None, help="train every arm for this many steps")
    p.add_argument("--minutes", type=float, default=None, help="train every arm for this many minutes")
    p.add_argument("--synth-size", type=int, default=20000, help="formulas of the reference shards to train on")
    p.add_argument("--n", type=int, default=300, help="proxy formulas to read")
    p.add_argument("--synthetic-n", type=int, default=300, help="held-out synthetic formulas to read")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if not args.steps and not args.minutes:
        raise SystemExit("give the arms a budget: --steps N (same cost per step) or --minutes M (per CPU-hour)")
    pick_cpu_threads(args.threads)
    arms = [parse_arm(a) for a in args.arm]
    proxy = proxy_samples(PROXY_DIR, args.n)
    synthetic = synthetic_samples(args.synthetic_n)
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} minutes"
    result = {"label": args.label, "budget": budget, "init_from": args.init_from, "synth_size": args.synth_size,
              "threads": args.threads, "arms": []}
    OUT.mkdir(parents=True, exist_ok=True)
    for name, settings in arms:
        checkpoint, steps, hours = train_arm(name, settings, args)
        arm = {"name": name, "settings": settings, "steps": steps, "train_hours": round(hours, 3),
               **read_arm(checkpoint, proxy, synthetic)}
        result["arms"].append(arm)
        print(json.dumps(arm), flush=True)
        (OUT / f"{args.label}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
