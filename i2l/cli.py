"""The ``i2l`` command: ``data``, ``train``, ``evaluate``, ``predict``, ``serve`` and ``demo``.

Flags map onto :class:`i2l.config.Config` or onto the library functions; each handler is one call into
the package. Errors a user can cause print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from i2l.config import MAX_BEAM, PRESETS, PRETRAINED, SPLITS
from i2l.errors import I2LError


# ----------------------------------------------------------------------------- handlers
def cmd_data_download(args: argparse.Namespace) -> int:
    from i2l.data.download import download

    path = download(variant=args.variant, dest=args.dest)
    print(f"dataset ready in {path}")
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from i2l.data.im2latex import stats

    print(json.dumps(stats(args.path), indent=2))
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from i2l.data.synth import make_dataset

    path = make_dataset(
        args.out, n=args.n, seed=args.seed, formulas_file=args.formulas, backend=args.backend,
        workers=args.workers, overwrite=args.overwrite, max_len=args.max_len, level=args.level,
    )
    print(f"synthetic dataset written to {path}")
    return 0


def _train_config(args: argparse.Namespace):
    from i2l.config import get_config

    overrides = {}
    for key in ("data_dir", "max_epochs", "devices", "num_nodes", "batch_size", "lr", "out_dir", "run_name",
                "precision", "max_time_minutes", "num_workers", "seed", "init_from"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    if args.compile:
        overrides["compile"] = True
    if args.devices is not None and args.devices != "auto":
        overrides["devices"] = int(args.devices)
    if overrides.get("devices") not in (None, "auto", 1) or args.num_nodes not in (None, 1):
        overrides["strategy"] = "ddp"
    try:
        return get_config(args.preset, **overrides).with_settings(args.set or [])
    except ValueError as exc:
        raise I2LError(f"--set: {exc}") from exc


def cmd_train(args: argparse.Namespace) -> int:
    from i2l.train import fit, pick_cpu_threads

    cfg = _train_config(args)
    if args.threads is not None or cfg.accelerator == "cpu" or not _has_accelerator():
        pick_cpu_threads(args.threads)
    result = fit(cfg, resume=args.resume)
    print(f"best checkpoint: {result.best_checkpoint}\nlast checkpoint: {result.last_checkpoint}\n"
          f"metrics: {result.metrics_csv}")
    return 0


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def cmd_evaluate(args: argparse.Namespace) -> int:
    from i2l.evaluate import evaluate

    evaluate(args.checkpoint, data_dir=args.data, split=args.split, beam_size=args.beam, limit=args.limit,
             out_dir=args.out, batch_size=args.batch_size, render=args.render, as_is=args.as_is)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from i2l.infer import Predictor

    predictor = Predictor.load(args.checkpoint, device=args.device)
    results = predictor.predict(args.images, beam=args.beam, max_len=args.max_len, strict=False)
    failed = 0
    for path, res in zip(args.images, results):
        if args.json:
            print(json.dumps({"image": str(path), **res.to_dict(), "model": predictor.model_name}))
        elif res.error:
            print(f"{path}\tERROR: {res.error}")
        else:
            print(f"{path}\t{res.latex}")
        failed += bool(res.error)
    return 1 if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from i2l.serve import run
    except ModuleNotFoundError as exc:
        if exc.name in ("fastapi", "uvicorn", "multipart", "python_multipart", "starlette"):
            raise I2LError(f"the web API needs {exc.name}: pip install 'i2l[serve]'") from exc
        raise

    run(args.checkpoint, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from i2l.demo import run_demo

    run_demo(minutes=args.minutes, n=args.n)
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="i2l", description="Images of mathematical formulas to LaTeX.")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="download, generate or describe datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("download", help="download Im2Latex-100K")
    d.add_argument("--variant", choices=["processed", "raw"], default="processed",
                   help="processed: cropped, downsampled images (what models train on); raw: full pdflatex pages")
    d.add_argument("--dest", default="data/im2latex", help="folder to download and extract into (resumable)")
    d.set_defaults(func=cmd_data_download)
    d = dsub.add_parser("stats", help="counts and sizes of a dataset folder")
    d.add_argument("path", help="a dataset folder (processed or raw layout)")
    d.set_defaults(func=cmd_data_stats)
    d = dsub.add_parser("synth", help="render a synthetic dataset in the processed layout")
    d.add_argument("--n", type=int, default=4000, help="number of formulas to generate")
    d.add_argument("--out", default="data/synth", help="folder of the new dataset (processed layout)")
    d.add_argument("--formulas", default=None, help="render this formula list (one per line) instead")
    d.add_argument("--seed", type=int, default=0, help="random seed of the generator: the same seed, the same formulas")
    d.add_argument("--level", choices=["full", "basic"], default="full",
                   help="full: Im2Latex-like formulas; basic: short formulas of common, visible symbols")
    d.add_argument("--max-len", type=int, default=None, help="at most this many tokens per generated formula")
    d.add_argument("--backend", choices=["auto", "latex", "mathtext"], default="auto",
                   help="renderer: pdflatex like the real dataset, matplotlib's mathtext, or auto (latex when installed)")
    d.add_argument("--workers", type=int, default=None, help="parallel render processes (default: the free cores)")
    d.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    d.set_defaults(func=cmd_data_synth)

    t = sub.add_parser("train", help="train a model")
    t.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="named configuration (i2l.config.PRESETS)")
    t.add_argument("--data", dest="data_dir", default=None, help="dataset folder (default: the preset's)")
    t.add_argument("--resume", action="store_true", help="continue from last.ckpt of the same run")
    t.add_argument("--max-epochs", type=int, default=None, help="stop after this many epochs")
    t.add_argument("--max-time-minutes", type=float, default=None,
                   help="time budget, resumed stretches included: training stops (and the cosine schedule ends) "
                        "when it runs out")
    t.add_argument("--devices", default=None, help="number of devices (GPUs) or 'auto'; more than one trains with DDP")
    t.add_argument("--num-nodes", type=int, default=None, help="machines for multi-node DDP")
    t.add_argument("--batch-size", type=int, default=None, help="images per batch and device")
    t.add_argument("--num-workers", type=int, default=None, help="data loader processes")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate")
    t.add_argument("--precision", default=None, help="Lightning precision, e.g. 32-true, bf16-mixed, 16-mixed")
    t.add_argument("--seed", type=int, default=None, help="random seed of the run")
    t.add_argument("--out-dir", default=None, help="folder of the runs (default: runs/)")
    t.add_argument("--run-name", default=None, help="name of the run folder (default: the preset's name)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model before training")
    t.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: all cores, one when other processes keep the CPU busy)")
    t.add_argument("--init-from", default=None,
                   help="warm start a new run from 'pretrained' (the shipped model) or a .ckpt/.pt file")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change any field of the preset (i2l.config.Config; the value is read as YAML), e.g. "
                        "--set curriculum=[] --set lr=3e-4; repeatable")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a split")
    e.add_argument("--checkpoint", default=PRETRAINED,
                    help="a training checkpoint (.ckpt) or a weights file (.pt); default: the shipped model")
    e.add_argument("--data", required=True, help="dataset folder (processed or raw layout)")
    e.add_argument("--split", choices=list(SPLITS), default="test", help="which split to read")
    e.add_argument("--beam", type=int, default=1, help=f"beam width, 1 (greedy) to {MAX_BEAM}")
    e.add_argument("--limit", type=int, default=None, help="only the first N samples")
    e.add_argument("--batch-size", type=int, default=32, help="images decoded together")
    e.add_argument("--out", default=None, help="folder for predictions.tsv and metrics.json")
    e.add_argument("--render", action="store_true", help="also compare rendered images (needs pdflatex)")
    e.add_argument("--as-is", action="store_true",
                   help="read the dataset's images as the training loader does, not through the Predictor's "
                        "preprocessing as a user's files are (to compare the two)")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="transcribe images")
    pr.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...) of formulas")
    pr.add_argument("--checkpoint", default=PRETRAINED,
                     help="a training checkpoint (.ckpt) or a weights file (.pt); default: the shipped model")
    pr.add_argument("--beam", type=int, default=1, help=f"beam width, 1 (greedy) to {MAX_BEAM}")
    pr.add_argument("--max-len", type=int, default=None, help="at most this many tokens (default: the model's)")
    pr.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    pr.add_argument("--json", action="store_true", help="one JSON object per image: tokens, scores, candidates")
    pr.set_defaults(func=cmd_predict)

    s = sub.add_parser("serve", help="serve the web API and page")
    s.add_argument("--checkpoint", default=PRETRAINED,
                    help="a training checkpoint (.ckpt) or a weights file (.pt); default: the shipped model")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=int, default=8000, help="port to listen on")
    s.add_argument("--max-upload-mb", type=float, default=5.0, help="refuse uploads larger than this")
    s.set_defaults(func=cmd_serve)

    dm = sub.add_parser("demo", help="synthetic data, a few CPU minutes of training, evaluation, transcriptions")
    dm.add_argument("--minutes", type=float, default=None, help="training minutes (default: the cpu preset's)")
    dm.add_argument("--n", type=int, default=None, help="synthetic formulas to generate")
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``i2l`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (I2LError, FileNotFoundError) as exc:
        print(f"i2l {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("i2l."):
            print(f"i2l {args.command}: not available yet in this version ({exc.name} is missing)", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:  # pragma: no cover
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
