"""Load on the web API: N requests from C concurrent clients against a live uvicorn server on 127.0.0.1.

Reports p50 / p90 / p99 latency and throughput, beside the same images read by the Predictor directly in
one thread (the model time alone), so the ratio shows what HTTP, multipart and queueing add.

    .venv/bin/python benchmarks/serve_load.py --checkpoint runs/cpu/checkpoints/best.ckpt
    .venv/bin/python benchmarks/serve_load.py            # the smoke model (trained first if missing)
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from i2l.config import get_config
from i2l.data.render import render_formulas
from i2l.infer import Predictor
from i2l.serve import create_app, running

FORMULAS = ["x ^ { 2 } + y ^ { 2 } = 1", r"\frac { a } { b + c }", r"\sqrt { x _ { 1 } } - 3", r"\alpha \beta"]


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.array(values) * 1000
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the smoke run's (trained first if missing)")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    checkpoint = args.checkpoint
    if checkpoint is None:
        from i2l.evaluate import find_checkpoint

        checkpoint = find_checkpoint(get_config("smoke"))
    predictor = Predictor.from_checkpoint(checkpoint, device=args.device)
    uploads = []
    for img in render_formulas(FORMULAS, progress=False).images:
        if img is not None:
            big = img.resize((img.width * 2, img.height * 2))  # a screenshot at twice the training scale
            buf = io.BytesIO()
            big.save(buf, format="PNG")
            uploads.append(buf.getvalue())
    expected = [r.latex for r in predictor.predict(uploads, beam=args.beam)]

    def alone(k: int) -> float:
        t = time.perf_counter()
        predictor.predict([uploads[k % len(uploads)]], beam=args.beam)
        return time.perf_counter() - t

    # in one worker thread, like the server's: on an oversubscribed CPU, OpenMP's spin-waiting in the main
    # thread can make small decoding steps 100x slower (OMP_WAIT_POLICY=PASSIVE avoids it)
    with ThreadPoolExecutor(max_workers=1) as pool:
        direct = list(pool.map(alone, range(min(args.requests, 40))))

    def one(k: int, http: httpx.Client, url: str) -> tuple[float, bool]:
        i = k % len(uploads)
        t = time.perf_counter()
        r = http.post(f"{url}/predict", files={"file": (f"{i}.png", uploads[i], "image/png")},
                      data={"beam": str(args.beam)})
        return time.perf_counter() - t, r.status_code == 200 and r.json()["latex"] == expected[i]

    with running(create_app(predictor)) as url, httpx.Client(timeout=120) as http:
        http.get(f"{url}/health")
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            answers = list(pool.map(lambda k: one(k, http, url), range(args.requests)))
        wall = time.perf_counter() - start
    latencies = [t for t, _ in answers]
    ok = sum(good for _, good in answers)
    served, alone = percentiles(latencies), percentiles(direct)
    print(f"checkpoint {checkpoint} | device {predictor.device} | beam {args.beam} | "
          f"{args.requests} requests from {args.clients} clients")
    print(f"correct answers: {ok}/{args.requests} | throughput {args.requests / wall:.1f} req/s "
          f"(direct, one thread: {1 / statistics.mean(direct):.1f} img/s)")
    print(f"{'latency (ms)':>14} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    print(f"{'API, loaded':>14} " + " ".join(f"{served[k]:8.1f}" for k in ("p50", "p90", "p99", "max")))
    print(f"{'direct':>14} " + " ".join(f"{alone[k]:8.1f}" for k in ("p50", "p90", "p99", "max")))
    print(f"p50 ratio API/direct: {served['p50'] / alone['p50']:.1f}x (queueing behind {args.clients} clients "
          "included; the model runs one request at a time)")


if __name__ == "__main__":
    main()
