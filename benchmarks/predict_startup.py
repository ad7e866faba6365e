"""``i2l predict`` on one image, as a whole process: wall time and peak memory, side by side with a baseline.

The command is ``python -m i2l.cli predict IMAGE --checkpoint CKPT`` (what the ``i2l`` script runs). With
``--baseline-tree DIR`` the same command runs alternately from another checkout of i2l (for example a git
worktree of an older commit: ``git worktree add /tmp/i2l-old <commit>``), and the ratio new/baseline is
given run by run, so that a noisy machine shifts both alike. Also shown: a bare ``import torch``, the floor.

    .venv/bin/python benchmarks/predict_startup.py --checkpoint CKPT --image formula.png \
        [--baseline-tree /tmp/i2l-old] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(cmd: list[str], tree: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one run of ``cmd`` with ``tree`` first on the Python path."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tree)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed in {tree} (exit {os.waitstatus_to_exitcode(status)})")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a training checkpoint or a weights file")
    p.add_argument("--image", required=True, help="one image file of a formula")
    p.add_argument("--baseline-tree", default=None, help="another i2l checkout to compare with")
    p.add_argument("--runs", type=int, default=7, help="counted runs of each command (after one warm-up)")
    args = p.parse_args()
    predict = [sys.executable, "-m", "i2l.cli", "predict", str(Path(args.image).resolve()), "--checkpoint",
               str(Path(args.checkpoint).resolve()), "--device", "cpu"]
    floor = [sys.executable, "-c", "import torch"]
    trees = {"i2l predict (this tree)": REPO}
    if args.baseline_tree:
        trees["i2l predict (baseline tree)"] = Path(args.baseline_tree).resolve()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in [*trees, "import torch"]}
    for k in range(args.runs + 1):  # the first round warms the file cache and is not counted
        for name, tree in trees.items():
            r = run_once(predict, tree)
            if k:
                results[name].append(r)
        r = run_once(floor, REPO)
        if k:
            results["import torch"].append(r)
    print(f"{args.runs} runs each, alternating, 1 torch thread\n")
    print(f"{'command':<30} {'wall s (median)':>16} {'min':>6} {'max':>6} {'peak MB (median)':>17}")
    for name, rs in results.items():
        walls = [w for w, _ in rs]
        print(f"{name:<30} {statistics.median(walls):16.2f} {min(walls):6.2f} {max(walls):6.2f} "
              f"{statistics.median(m for _, m in rs):17.0f}")
    if args.baseline_tree:
        new, old = results["i2l predict (this tree)"], results["i2l predict (baseline tree)"]
        ratios = [a[0] / b[0] for a, b in zip(new, old)]
        mem = [a[1] / b[1] for a, b in zip(new, old)]
        print(f"\nthis tree / baseline, run by run: wall {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}), peak memory {statistics.median(mem):.2f}")


if __name__ == "__main__":
    main()
