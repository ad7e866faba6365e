"""Build the Trainer and run fit: precision from the device, checkpoints, loggers, resuming, DDP.

``fit(cfg)`` trains ``cfg`` into ``cfg.run_dir`` (``runs/<run_name or preset>``) and returns a
:class:`FitResult`. The run folder holds::

    runs/<name>/checkpoints/best.ckpt   best validation score (val_bleu, or val_loss without decoding)
    runs/<name>/checkpoints/last.ckpt   end of the latest epoch: what ``resume=True`` continues from
    runs/<name>/metrics.csv             CSVLogger, one row per logged step / epoch (notebook 05 plots it)
    runs/<name>/tensorboard/            TensorBoard events, when tensorboard is installed
    runs/<name>/config.json, vocab.json the run's configuration and vocabulary, for people

Every checkpoint also carries the config and the vocabulary (see :mod:`i2l.lit`). Checkpoints are
written to a temporary file and renamed, so a crash never leaves a half-written ``last.ckpt``, and a
fresh run refuses to start in a folder that already holds checkpoints (resume it or pick a new run name).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, Timer, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from i2l.checkpoint import checkpoint_parts, load_checkpoint, read_checkpoint
from i2l.config import PRETRAINED, Config, project_root
from i2l.errors import I2LError
from i2l.lit import LitIm2Latex
from i2l.model import Im2LatexModel
from i2l.tokenizer import Vocab

# Fields that fix the shape of the network: a resumed run must keep them.
ARCHITECTURE_FIELDS = ("d_model", "num_heads", "num_layers", "dim_feedforward", "norm_first", "pretrained_backbone")


@dataclass
class FitResult:
    """Where a run left its files, and the last logged metrics."""

    best_checkpoint: Path | None
    last_checkpoint: Path | None
    metrics_csv: Path
    run_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: int = 0
    global_step: int = 0


# ---------------------------------------------------------------------------------- pieces
def choose_precision(cfg: Config) -> str:
    """``cfg.precision``, or for ``"auto"``: bf16-mixed on compute capability >= 8, 16-mixed on older GPUs, else 32.

    ``torch.cuda.is_bf16_supported()`` answers True on a T4 (compute capability 7.5) where bf16 is emulated
    and slow, so the capability is read directly.
    """
    if cfg.precision != "auto":
        return cfg.precision
    if cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability()
        return "bf16-mixed" if major >= 8 else "16-mixed"
    return "32-true"


def busy_cores(interval: float = 0.5) -> float | None:
    """How many cores other processes keep busy now: from ``/proc/stat`` over ``interval`` seconds (while this
    process sleeps), else the 1-minute load average; None where neither exists.

    The load average lags by about a minute, so it still counts a ``pip install`` or a rendering pass that has
    just ended (``make demo`` right after making its environment); ``/proc/stat`` says what happens now."""
    def cpu_times() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        return sum(fields), fields[3] + fields[4]  # all jiffies, idle + iowait

    first = cpu_times()
    if first is not None:
        time.sleep(interval)
        second = cpu_times()
        if second is not None and second[0] > first[0]:
            busy_share = 1.0 - (second[1] - first[1]) / (second[0] - first[0])
            return max(0.0, busy_share) * (os.cpu_count() or 1)
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def pick_cpu_threads(threads: int | None = None, verbose: bool = True) -> int:
    """Set and return torch's CPU threads: ``threads`` if given; 1 when the CPU is busy with other processes.

    On a shared CPU (other processes keep half the cores busy, :func:`busy_cores`), several threads stall at
    every parallel region while one of them waits for a core: one thread is then several times faster
    (``benchmarks/learn_cpu.py``).
    """
    if threads is None:
        busy = busy_cores()
        shared = busy is not None and busy >= 0.5 * (os.cpu_count() or 1)
        threads = 1 if shared else torch.get_num_threads()
        if shared and verbose:
            print(f"the CPU is shared ({busy:.1f} of {os.cpu_count()} cores busy with other processes): "
                  "1 torch thread")
    torch.set_num_threads(threads)
    return threads


def checkpoint_dir(cfg: Config) -> Path:
    """``cfg.run_dir / "checkpoints"``."""
    return cfg.run_dir / "checkpoints"


def metrics_csv_path(cfg: Config) -> Path:
    """``cfg.run_dir / "metrics.csv"``, where the CSVLogger writes."""
    return cfg.run_dir / "metrics.csv"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to ``<name>.tmp`` and renames it, so a crash never leaves a broken checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


class ResumableCSVLogger(CSVLogger):
    """A CSVLogger writing ``<save_dir>/metrics.csv`` that, when resuming, appends instead of starting afresh."""

    def __init__(self, save_dir: str | Path, keep_existing: bool = False) -> None:
        super().__init__(save_dir=str(save_dir), name="", version="")
        self._keep_existing = keep_existing

    @property
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        kept = path.read_text() if self._keep_existing and path.is_file() else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            exp = super().experiment  # Lightning deletes an existing metrics.csv here
        if kept is not None and rank_zero_only.rank == 0:
            path.write_text(kept)
            header = next(csv.reader(io.StringIO(kept)), [])
            exp.metrics_keys = sorted(set(header))
        return exp


def make_loggers(cfg: Config, resume: bool = False) -> list[Logger]:
    """CSVLogger (always) and TensorBoardLogger (when installed), both inside ``cfg.run_dir``."""
    loggers: list[Logger] = [ResumableCSVLogger(cfg.run_dir, keep_existing=resume)]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(save_dir=str(cfg.run_dir), name="tensorboard", version="",
                                         default_hp_metric=False))
    return loggers


def monitored_metric(cfg: Config) -> tuple[str, str]:
    """The metric that picks the best checkpoint and its mode: ``val_bleu``/max, or ``val_loss``/min."""
    return ("val_bleu", "max") if cfg.val_decode_samples > 0 else ("val_loss", "min")


class TimeBudgetSchedule(Callback):
    """Ends the cosine schedule when ``max_time_minutes`` runs out rather than after ``max_epochs``.

    Every ``every`` steps it measures this session's steps per second (validation pauses included) and moves
    the end of the cosine (:attr:`LitIm2Latex.schedule_steps`) to the step at which the time budget, as
    Lightning's ``Timer`` counts it (resumed runs included), will be spent; never beyond ``max_epochs``. Rank 0's
    estimate is broadcast so that every DDP rank follows the same learning rate.
    A run stopped by its time budget thus ends with a decayed learning rate, as a full schedule does.
    """

    def __init__(self, every: int = 50) -> None:
        self.every = every
        self._t0 = 0.0
        self._step0 = 0

    @staticmethod
    def _timer(trainer: L.Trainer) -> Timer | None:
        return next((c for c in trainer.callbacks if isinstance(c, Timer)), None)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._step0 = time.monotonic(), trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step - self._step0 < self.every or step % self.every:
            return  # every step stays cheap: the work below runs once per `every` steps
        timer = self._timer(trainer)
        remaining = timer.time_remaining("train") if timer is not None else None
        if remaining is None:
            return
        rate = (step - self._step0) / max(1e-6, time.monotonic() - self._t0)
        horizon = max(step + 1, step + int(remaining * rate))
        pl_module.schedule_steps = trainer.strategy.broadcast(horizon, src=0)  # one schedule for all DDP ranks


class PeriodicCheckpoint(Callback):
    """Writes ``last.ckpt`` every ``minutes`` of training, between the end-of-epoch checkpoints, so that a long
    epoch stopped from outside loses at most that much work, and once more when training ends."""

    def __init__(self, path: Path, minutes: float) -> None:
        self.path, self.seconds = Path(path), 60.0 * minutes
        self._last = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        due = trainer.strategy.broadcast(time.monotonic() - self._last >= self.seconds, src=0)
        if not due:  # rank 0 decides, so that every DDP rank saves at the same step
            return
        trainer.save_checkpoint(str(self.path))
        self._last = time.monotonic()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A run that stops between validations (its time budget spent) keeps its last steps too."""
        trainer.save_checkpoint(str(self.path))


def make_callbacks(cfg: Config, progress_bar: bool = True) -> list[Callback]:
    """ModelCheckpoint (``best.ckpt`` + ``last.ckpt``), LearningRateMonitor, the progress bar, and with a time
    budget and the cosine schedule :class:`TimeBudgetSchedule`."""
    monitor, mode = monitored_metric(cfg)
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=str(checkpoint_dir(cfg)), filename="best", monitor=monitor, mode=mode, save_top_k=1,
            save_last=True, auto_insert_metric_name=False,
            enable_version_counter=False,  # last.ckpt is also written by PeriodicCheckpoint: overwrite, no last-v1
        ),
        LearningRateMonitor(logging_interval="step"),
    ]
    if progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, cfg.log_every_n_steps)))
    if cfg.max_time_minutes and cfg.schedule == "cosine":
        callbacks.append(TimeBudgetSchedule())
    if cfg.checkpoint_every_minutes:
        callbacks.append(PeriodicCheckpoint(checkpoint_dir(cfg) / "last.ckpt", cfg.checkpoint_every_minutes))
    return callbacks


def make_trainer(
    cfg: Config, resume: bool = False, progress_bar: bool = True, extra_callbacks: list[Callback] | None = None,
    **overrides: Any,
) -> L.Trainer:
    """The Lightning Trainer for ``cfg``: device, precision, clipping, limits, callbacks, loggers.

    ``overrides`` are passed to ``L.Trainer`` as they are (e.g. ``val_check_interval``).
    """
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    kwargs: dict[str, Any] = dict(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=choose_precision(cfg),
        max_epochs=cfg.max_epochs,
        max_time=timedelta(minutes=cfg.max_time_minutes) if cfg.max_time_minutes else None,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        gradient_clip_val=cfg.grad_clip or None,
        log_every_n_steps=cfg.log_every_n_steps,
        deterministic=("warn" if torch.cuda.is_available() else True) if cfg.deterministic else None,
        callbacks=make_callbacks(cfg, progress_bar=progress_bar) + list(extra_callbacks or []),
        logger=make_loggers(cfg, resume=resume),
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(cfg.run_dir),
        enable_progress_bar=progress_bar,
        num_sanity_val_steps=1,
        use_distributed_sampler=False,  # the bucketing batch sampler splits the batches between ranks itself
        reload_dataloaders_every_n_epochs=1 if cfg.curriculum else 0,  # a curriculum's stage changes the batches
    )
    if cfg.val_check_interval:
        kwargs.update(val_check_interval=cfg.val_check_interval, check_val_every_n_epoch=None)
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def find_data(cfg: Config) -> Path:
    """The dataset folder of ``cfg`` (one dataset, or a folder of ``shard-*`` datasets), generating the synthetic
    set first when that is what it names."""
    from i2l.data.synth import ensure_dataset, shard_dirs

    path = Path(ensure_dataset(cfg))
    if not shard_dirs(path):
        raise I2LError(
            f"no dataset found at {path} (it needs formulas.norm.lst, the split lists and images_processed/): "
            f"run `i2l data download --dest {cfg.data_dir}` for Im2Latex-100K, `i2l data synth --out "
            f"{cfg.data_dir}` for synthetic formulas, or pass --data with the right folder"
        )
    return path


def make_datamodule(cfg: Config, vocab: Vocab | None = None) -> Any:
    """The :class:`~i2l.data.dataset.Im2LatexDataModule` of ``cfg``, set up (vocabulary built if not given)."""
    from i2l.data.dataset import Im2LatexDataModule

    dm = Im2LatexDataModule(cfg, vocab=vocab, data_dir=find_data(cfg))
    dm.setup()
    if len(dm.train_set) == 0:
        raise I2LError(f"the training split of {cfg.data_path} is empty: check train_filter.lst")
    return dm


def _check_resume(cfg: Config, last: Path, vocab: Vocab) -> None:
    old_cfg, old_vocab_dict, state = checkpoint_parts(read_checkpoint(last))
    changed = [f for f in ARCHITECTURE_FIELDS if f in old_cfg and old_cfg[f] != getattr(cfg, f)]
    if changed:
        diff = ", ".join(f"{f}: {old_cfg[f]} -> {getattr(cfg, f)}" for f in changed)
        raise I2LError(
            f"cannot resume {last}: the model differs from the checkpoint's ({diff}); resume with the same "
            "preset, or start a new run with another --run-name"
        )
    old_vocab = Vocab.from_dict(old_vocab_dict)
    if old_vocab == vocab:
        result = Im2LatexModel(cfg, len(vocab)).load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise I2LError(
                f"cannot resume {last}: it was written by another version of the i2l model (missing "
                f"{result.missing_keys[:2]}, unexpected {result.unexpected_keys[:2]}); start a new run with another "
                "--run-name (or overwrite=True in Python), or use the i2l version that wrote it"
            )
    else:
        missing = [t for t in vocab.itos if t not in old_vocab][:5]
        raise I2LError(
            f"cannot resume {last}: the dataset at {cfg.data_path} has a different vocabulary ({len(vocab)} tokens) "
            f"from the checkpoint's ({len(old_vocab)} tokens; e.g. new tokens {missing}); resume with the data the "
            "run started on, or start a new run with another --run-name"
        )


def warm_start(model: Im2LatexModel, cfg: Config, vocab: Vocab, source: str) -> dict[str, int]:
    """Load the weights of ``source`` ("pretrained": the shipped model; else a .ckpt or .pt path) into ``model``.

    The network must have the same shape (:data:`ARCHITECTURE_FIELDS`); the vocabularies may differ: the rows of
    the embedding and the output layer are copied token by token, and new tokens keep their fresh
    initialisation. Returns ``{"tokens": copied, "new_tokens": n}``."""
    if source == PRETRAINED:
        from i2l.pretrained import read_pretrained

        ckpt, where = read_pretrained(), "the shipped model"
    else:
        ckpt, where = read_checkpoint(source), str(source)
    old_cfg, old_vocab_dict, state = checkpoint_parts(ckpt)
    changed = [f for f in ARCHITECTURE_FIELDS if f in old_cfg and old_cfg[f] != getattr(cfg, f)]
    if changed:
        diff = ", ".join(f"{f}: {old_cfg[f]} -> {getattr(cfg, f)}" for f in changed)
        raise I2LError(f"cannot warm-start from {where}: its network differs from this config's ({diff}); use "
                       "the preset it was trained with, or start without init_from")
    old_vocab = Vocab.from_dict(old_vocab_dict)
    rows = {"decoder.embedding.weight", "decoder.output.weight", "decoder.output.bias"}
    own = model.state_dict()
    merged = {k: v.float() if v.is_floating_point() else v for k, v in state.items() if k not in rows}
    shared = [(i, old_vocab.stoi[t]) for i, t in enumerate(vocab.itos) if t in old_vocab.stoi]
    new_idx = torch.tensor([i for i, _ in shared])
    old_idx = torch.tensor([j for _, j in shared])
    for key in rows:
        if key not in state:
            raise I2LError(f"cannot warm-start from {where}: it has no {key}; it was written by another i2l")
        tensor = own[key].clone()
        tensor[new_idx] = state[key].float()[old_idx]
        merged[key] = tensor
    result = model.load_state_dict(merged, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise I2LError(f"cannot warm-start from {where}: it was written by another version of the i2l model "
                       f"(missing {result.missing_keys[:2]}, unexpected {result.unexpected_keys[:2]})")
    return {"tokens": len(shared), "new_tokens": len(vocab) - len(shared)}


#: In a run folder: what the run was warm-started from (:func:`warm_start_origin`), so that the training a model had
#: before the run is counted with it (``benchmarks/reference.py``).
WARM_START_FILE = "warm_start.json"


def training_record(checkpoint: str | Path) -> dict[str, Any]:
    """The training a run's checkpoint had: steps and hours (Lightning's Timer) of its run, plus those of the model
    the run was warm-started from (its ``warm_start.json``), with ``warm_start_from`` and ``this_run`` then."""
    ckpt = read_checkpoint(checkpoint)
    timer = next((v for k, v in ckpt.get("callbacks", {}).items() if str(k).startswith("Timer")), {})
    seconds = timer.get("time_elapsed", {}).get("train")
    cfg = ckpt.get("hyper_parameters", {}).get("config", {})
    info: dict[str, Any] = {"steps": int(ckpt.get("global_step", 0)), "epochs": int(ckpt.get("epoch", 0)),
                            "train_hours": None if seconds is None else round(seconds / 3600, 2),
                            "preset": cfg.get("name"), "batch_size": cfg.get("batch_size"),
                            "data": cfg.get("data_dir")}
    origin = Path(checkpoint).resolve().parent.parent / WARM_START_FILE
    if origin.is_file():
        before = json.loads(origin.read_text())
        info["warm_start_from"] = before["from"]
        info["this_run"] = {"steps": info["steps"], "train_hours": info["train_hours"]}
        done = before.get("training", {})
        info["steps"] += int(done.get("steps", 0))
        if info["train_hours"] is not None and done.get("train_hours") is not None:
            info["train_hours"] = round(info["train_hours"] + float(done["train_hours"]), 2)
    return info


def warm_start_origin(source: str) -> dict[str, Any]:
    """What a warm start starts from, and the training it had: the shipped model's name and training (its card),
    or a checkpoint's path and :func:`training_record`."""
    if source == PRETRAINED:
        from i2l.pretrained import card

        info = card()
        return {"from": info["name"], "training": info.get("training", {})}
    path = Path(source).resolve()
    try:  # a path inside the project is recorded relative to it (it may be shipped in a card)
        name = str(path.relative_to(project_root()))
    except ValueError:
        name = str(path)
    if path.suffix == ".ckpt":
        record = training_record(path)
        # run_steps: where in its own run's log (metrics.csv) the checkpoint was, for run_log
        return {"from": name, "training": {k: record[k] for k in ("steps", "train_hours")},
                "run_steps": record.get("this_run", record)["steps"]}
    return {"from": name}


def run_log(checkpoint: str | Path) -> list[dict[str, str]]:
    """The training log of what ``checkpoint`` learnt, as rows of ``metrics.csv``, steps counted along the lineage.

    The rows of its run's ``metrics.csv``, less those a resume repeated (a stretch stopped after its last
    checkpoint logs steps that the next stretch logs again: the later rows are the lineage's); preceded, for a run
    warm-started from another run's checkpoint (``warm_start.json`` with ``run_steps``), by that run's log up to
    the branch, this run's steps then counted on from there. An origin whose log is gone starts the log.
    A checkpoint outside a run folder raises :class:`I2LError` (:func:`i2l.pretrained.training_log`)."""
    from i2l.pretrained import training_log

    log = training_log(checkpoint)
    rows = _lineage_rows(log)
    origin_file = log.parent / WARM_START_FILE
    if not origin_file.is_file():
        return rows
    origin = json.loads(origin_file.read_text())
    if "run_steps" not in origin:
        return rows
    source = Path(origin["from"])
    try:
        earlier = run_log(source if source.is_absolute() else project_root() / source)
    except I2LError:  # the origin's run folder is gone
        return rows
    branch = int(origin["run_steps"])
    before = [r for r in earlier if _step(r) is not None and _step(r) < branch]
    for r in rows:
        if _step(r) is not None:
            r["step"] = str(_step(r) + branch)
    return before + rows


def _step(row: dict[str, str]) -> int | None:
    return int(float(row["step"])) if row.get("step") not in (None, "") else None


def _lineage_rows(path: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = _step(row)
            if step is not None and rows and (_step(rows[-1]) or 0) > step:  # a resume: drop what it repeats
                while rows and (_step(rows[-1]) is None or _step(rows[-1]) >= step):
                    rows.pop()
            rows.append(row)
    return rows


def write_run_log(checkpoint: str | Path, path: str | Path) -> Path:
    """:func:`run_log` of ``checkpoint`` written as a CSV at ``path`` (columns of every log in the lineage)."""
    rows = run_log(checkpoint)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _oom_message(cfg: Config, exc: BaseException) -> str:
    return (
        f"out of GPU memory with batch_size={cfg.batch_size}, max_len={cfg.max_len}, precision "
        f"{choose_precision(cfg)} ({str(exc).splitlines()[0][:160]}). Lower the batch size (--batch-size "
        f"{max(1, cfg.batch_size // 2)}), or lower max_len, or use a GPU with more memory; then continue this run "
        "with --resume (last.ckpt is intact)."
    )


# ---------------------------------------------------------------------------------- fit
def fit(
    cfg: Config, resume: bool | str = False, overwrite: bool = False, progress_bar: bool = True,
    extra_callbacks: list[Callback] | None = None, **trainer_overrides: Any,
) -> FitResult:
    """Train ``cfg`` into ``cfg.run_dir``; ``resume=True`` continues from ``last.ckpt``, ``"auto"`` when it exists.

    ``overwrite=True`` starts afresh in a run folder that holds a previous run: the old folder is moved to
    ``<run>.previous`` and deleted only once the new run has finished (put back if it fails).
    ``extra_callbacks`` are added to the standard ones; ``trainer_overrides`` go to ``L.Trainer``.
    """
    if overwrite and resume:
        raise I2LError("resume and overwrite exclude each other: resume continues the run, overwrite replaces it")
    if overwrite and rank_zero_only.rank == 0 and cfg.run_dir.exists():
        backup = cfg.run_dir.with_name(cfg.run_dir.name + ".previous")
        if backup.exists():
            shutil.rmtree(backup)
        cfg.run_dir.rename(backup)
        try:
            result = fit(cfg, progress_bar=progress_bar, extra_callbacks=extra_callbacks, **trainer_overrides)
        except BaseException:
            shutil.rmtree(cfg.run_dir, ignore_errors=True)
            backup.rename(cfg.run_dir)
            raise
        shutil.rmtree(backup, ignore_errors=True)
        return result
    ckpt_dir = checkpoint_dir(cfg)
    last = ckpt_dir / "last.ckpt"
    if resume == "auto":
        resume = last.is_file()
    if resume and not last.is_file():
        raise I2LError(f"nothing to resume: {last} does not exist; start the run without --resume")
    existing = sorted(ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    if not resume and existing:
        raise I2LError(
            f"{cfg.run_dir} already holds checkpoints ({', '.join(p.name for p in existing)}); continue that run "
            "with --resume (resume=True), or start a new one with another --run-name (run_name=...)"
        )
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = make_datamodule(cfg)
    vocab = dm.vocab
    if resume:
        _check_resume(cfg, last, vocab)
    if rank_zero_only.rank == 0:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(cfg.run_dir / "config.json", cfg.to_json())
        vocab.save(cfg.run_dir / "vocab.json")

    lit = LitIm2Latex(cfg.to_dict(), vocab.to_dict())
    if cfg.init_from and not resume:
        copied = warm_start(lit.model, cfg, vocab, cfg.init_from)
        print(f"warm start from {cfg.init_from}: {copied['tokens']} tokens kept, {copied['new_tokens']} new")
        if rank_zero_only.rank == 0:
            _write_atomic(cfg.run_dir / WARM_START_FILE, json.dumps(warm_start_origin(cfg.init_from), indent=2))
    if cfg.compile:
        lit.compile_model()
    trainer = make_trainer(cfg, resume=bool(resume), progress_bar=progress_bar, extra_callbacks=extra_callbacks,
                           **trainer_overrides)
    try:
        trainer.fit(lit, datamodule=dm, ckpt_path=str(last) if resume else None)
    except torch.cuda.OutOfMemoryError as exc:
        raise I2LError(_oom_message(cfg, exc)) from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise I2LError(_oom_message(cfg, exc)) from exc
        raise
    ckpt_cb = trainer.checkpoint_callback
    best = Path(ckpt_cb.best_model_path) if ckpt_cb is not None and ckpt_cb.best_model_path else None
    return FitResult(
        best_checkpoint=best if best is not None and best.is_file() else None,
        last_checkpoint=last if last.is_file() else None,
        metrics_csv=metrics_csv_path(cfg),
        run_dir=cfg.run_dir,
        metrics={k: float(v) for k, v in trainer.callback_metrics.items()},
        epochs=trainer.current_epoch,
        global_step=trainer.global_step,
    )


def time_steps(cfg: Config, batches: list[dict], vocab_size: int, device: str = "cpu") -> float:
    """Training images per second of ``cfg``'s model over ``batches``: forward, backward and an AdamW step each,
    with the precision :func:`choose_precision` picks on a GPU (fp32 on the CPU); one untimed warm-up step first."""
    vocab = Vocab([f"t{i}" for i in range(vocab_size - 4)])
    lit = LitIm2Latex(cfg.to_dict(), vocab.to_dict()).to(device).train()
    opt = torch.optim.AdamW(lit.parameters(), lr=cfg.lr)
    precision = choose_precision(cfg) if device == "cuda" else "32-true"
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(enabled=dtype is torch.float16)

    def step(batch: dict) -> None:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss, _ = lit.loss(batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    if len(batches) < 2:
        raise I2LError("time_steps needs at least two batches: one to warm up, one to time")
    step(batches[0])
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    return sum(b["images"].size(0) for b in batches[1:]) / (time.perf_counter() - t0)


def require_gpu(cfg: Config) -> str:
    """The GPU's name; outside smoke mode, a clear :class:`I2LError` when there is none (a multi-epoch recipe
    such as ``seed`` takes days on a CPU). Smoke runs are CPU-sized and pass."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    if cfg.smoke:
        return "none (smoke mode: the smoke preset trains on the CPU)"
    raise I2LError(
        f"no GPU: the {cfg.name} preset trains {cfg.max_epochs} epochs, hours on a GPU and days on a CPU. On Colab "
        "choose Runtime > Change runtime type > T4 GPU and run the notebook again; on a CPU, train the cpu preset "
        "instead (setup('cpu'), minutes on synthetic formulas), or run it in smoke mode (I2L_SMOKE=1)"
    )


def estimate_fit_hours(cfg: Config, dm: Any, steps: int = 20) -> dict[str, float]:
    """Time ``steps`` training steps of ``cfg`` on this machine's device, on ``dm``'s own training batches, and
    extrapolate: ``{"images_per_s", "steps_per_epoch", "epoch_minutes", "hours"}`` for ``cfg.max_epochs`` epochs
    (validation not included)."""
    device = "cuda" if torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda") else "cpu"
    batches: list[dict] = []
    while len(batches) < steps + 1:
        for batch in dm.train_dataloader():
            batches.append(batch)
            if len(batches) == steps + 1:
                break
    images_per_s = time_steps(cfg, batches, len(dm.vocab), device=device)
    steps_per_epoch = len(dm.train_dataloader())
    epoch_s = len(dm.train_set) / images_per_s
    return {"images_per_s": images_per_s, "steps_per_epoch": float(steps_per_epoch), "epoch_minutes": epoch_s / 60,
            "hours": epoch_s * cfg.max_epochs / 3600}


def find_checkpoint(cfg: Config, train_if_missing: bool = True) -> Path:
    """The checkpoint of ``cfg``'s run (``cfg.run_dir/checkpoints/best.ckpt``, else ``last.ckpt``), as notebook
    04 writes it. When there is none and ``train_if_missing``, it says so and trains ``cfg`` first, with a
    progress bar (seconds with the smoke preset). In smoke mode a checkpoint that no longer loads (written by an
    older version of the model) is replaced the same way, and said so."""
    folder = checkpoint_dir(cfg)
    found = next((folder / n for n in ("best.ckpt", "last.ckpt") if (folder / n).is_file()), None)
    if found is not None:
        if not cfg.smoke:
            return found
        try:
            load_checkpoint(found)
            return found
        except I2LError as exc:
            print(f"{exc}\nThis is the smoke run's checkpoint: training the smoke preset again.")
    if not train_if_missing:
        raise I2LError(f"no checkpoint in {folder}: run notebook 04 or `i2l train --preset {cfg.name}` first")
    if found is None:
        budget = f", at most {cfg.max_time_minutes:g} minutes" if cfg.max_time_minutes else ""
        print(f"No checkpoint in {folder}: training the {cfg.name} preset first ({cfg.max_epochs} epochs{budget}).")
    result = fit(cfg, overwrite=found is not None, progress_bar=True)
    ckpt = result.best_checkpoint or result.last_checkpoint
    if ckpt is None:
        raise I2LError(f"training {cfg.name} wrote no checkpoint in {folder}; see the training log above")
    print(f"Trained: {ckpt}")
    return Path(ckpt)


__all__ = [
    "FitResult", "fit", "TimeBudgetSchedule", "choose_precision", "pick_cpu_threads", "make_trainer", "make_callbacks", "make_loggers", "make_datamodule",
    "find_checkpoint", "find_data", "checkpoint_dir", "metrics_csv_path", "monitored_metric", "AtomicCheckpointIO",
    "ResumableCSVLogger", "PeriodicCheckpoint", "warm_start", "time_steps", "require_gpu", "estimate_fit_hours",
    "WARM_START_FILE", "warm_start_origin", "training_record", "run_log", "write_run_log",
]
