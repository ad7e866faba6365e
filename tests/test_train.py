"""Tests for i2l.train: precision choice, a short smoke run, resuming, refusals with clear errors, DDP on CPUs."""

from __future__ import annotations

import csv
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Timer

import i2l.train as train_module
from i2l.checkpoint import load_checkpoint, read_checkpoint
from i2l.config import get_config
from i2l.errors import I2LError
from i2l.lit import LitIm2Latex
from i2l.train import (
    AtomicCheckpointIO,
    TimeBudgetSchedule,
    choose_precision,
    find_checkpoint,
    fit,
    make_callbacks,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic dataset in the processed layout (generated once for this module)."""
    from i2l.data.synth import make_dataset

    return Path(make_dataset(tmp_path_factory.mktemp("data") / "synth-train", n=120, seed=3, progress=False))


def small_cfg(synth_dir: Path, out: Path, **kw):
    base = dict(data_dir=str(synth_dir), out_dir=str(out), run_name="t", limit_train_batches=2,
                limit_val_batches=1, val_decode_samples=4, max_epochs=1, log_every_n_steps=1, num_workers=0)
    return get_config("smoke", **{**base, **kw})


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(synth_dir, tmp_path_factory):
    """One short smoke run, then a resumed second epoch: (cfg, first result, rows after epoch 1, resumed result)."""
    cfg = small_cfg(synth_dir, tmp_path_factory.mktemp("runs"))
    first = fit(cfg, progress_bar=False)
    rows_first = read_csv(first.metrics_csv)
    first.epoch_in_checkpoint = read_checkpoint(first.last_checkpoint)["epoch"]
    resumed = fit(cfg.replace(max_epochs=2), resume=True, progress_bar=False)
    return cfg, first, rows_first, resumed


def test_precision_follows_the_device(monkeypatch):
    cfg = get_config("smoke")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_precision(cfg) == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert choose_precision(cfg) == "16-mixed"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    assert choose_precision(cfg) == "bf16-mixed"
    assert choose_precision(cfg.replace(accelerator="cpu")) == "32-true"
    assert choose_precision(cfg.replace(precision="16-mixed")) == "16-mixed"


def test_short_run_writes_checkpoints_and_metrics(trained):
    cfg, first, rows, _ = trained
    ckpt_dir = cfg.run_dir / "checkpoints"
    assert first.last_checkpoint == ckpt_dir / "last.ckpt" and first.last_checkpoint.is_file()
    assert first.best_checkpoint == ckpt_dir / "best.ckpt" and first.best_checkpoint.is_file()
    assert first.metrics_csv == cfg.run_dir / "metrics.csv"
    assert not list(ckpt_dir.glob("*.tmp"))  # atomic writes leave no temporary file
    columns = set(rows[0])
    assert {"train_loss", "val_loss", "val_bleu", "val_exact_match", "val_edit_accuracy", "step", "epoch"} <= columns
    assert any(c.startswith("lr-") for c in columns)
    assert (cfg.run_dir / "config.json").is_file() and (cfg.run_dir / "vocab.json").is_file()
    assert first.epochs == 1 and first.global_step == 2


def test_checkpoint_loads_with_nothing_else(trained):
    cfg, first, _, _ = trained
    model, vocab, loaded_cfg = load_checkpoint(first.best_checkpoint)
    assert loaded_cfg.d_model == cfg.d_model and loaded_cfg.run_name == "t"
    hp = read_checkpoint(first.last_checkpoint)["hyper_parameters"]
    assert set(hp) == {"config", "vocab"} and hp["vocab"] == vocab.to_dict()
    images = torch.ones(1, 1, 32, 64)
    tokens = torch.tensor([[vocab.bos_id]])
    with torch.no_grad():
        assert model(images, tokens).shape == (1, 1, len(vocab))


def test_the_time_budget_schedule_travels_with_the_checkpoint(trained):
    cfg, first, _, _ = trained
    ckpt = read_checkpoint(first.last_checkpoint)
    assert "schedule_steps" in ckpt and ckpt["schedule_steps"] is None  # written by fit; that run had no budget
    lit = LitIm2Latex(ckpt["hyper_parameters"]["config"], ckpt["hyper_parameters"]["vocab"])
    lit.schedule_steps = 123
    saved: dict = {}
    lit.on_save_checkpoint(saved)
    lit.schedule_steps = None
    lit.on_load_checkpoint(saved)
    assert lit.schedule_steps == 123


def test_resume_continues_the_same_run(trained):
    cfg, first, rows_first, resumed = trained
    assert resumed.epochs == 2 and resumed.global_step == 2 * first.global_step  # continued, not restarted
    ckpt = read_checkpoint(resumed.last_checkpoint)
    assert ckpt["epoch"] > first.epoch_in_checkpoint and ckpt["global_step"] == 2 * first.global_step
    assert ckpt["lr_schedulers"] and ckpt["optimizer_states"]
    rows = read_csv(resumed.metrics_csv)  # the same metrics.csv, appended
    assert len(rows) > len(rows_first)
    assert [r["step"] for r in rows[: len(rows_first)]] == [r["step"] for r in rows_first]
    epochs = {int(float(r["epoch"])) for r in rows if r.get("epoch")}
    assert epochs == {0, 1}


def test_fresh_run_refuses_to_overwrite_checkpoints(trained):
    cfg, first, _, _ = trained
    before = first.last_checkpoint.read_bytes()
    with pytest.raises(I2LError, match="--resume"):
        fit(cfg, progress_bar=False)
    assert first.last_checkpoint.read_bytes() == before


def test_resume_without_checkpoint_is_a_clear_error(synth_dir, tmp_path):
    with pytest.raises(I2LError, match="nothing to resume"):
        fit(small_cfg(synth_dir, tmp_path), resume=True)


def test_resume_with_another_vocabulary_is_refused(trained, tmp_path):
    cfg, first, _, _ = trained
    other = tmp_path / "synth-other"
    shutil.copytree(cfg.data_path, other)
    name = "formulas.norm.lst" if (other / "formulas.norm.lst").exists() else "im2latex_formulas.norm.lst"
    lines = (other / name).read_text().split("\n")
    (other / name).write_text("\n".join(f"{line} \\newtoken" if line else line for line in lines))
    with pytest.raises(I2LError, match="different vocabulary"):
        fit(cfg.replace(data_dir=str(other), max_epochs=3), resume=True)


def test_resume_with_another_model_is_refused(trained):
    cfg, _, _, _ = trained
    with pytest.raises(I2LError, match="d_model"):
        fit(cfg.replace(d_model=48, max_epochs=3), resume=True)


def test_no_data_is_a_clear_error(tmp_path):
    with pytest.raises(I2LError, match="no dataset"):
        fit(get_config("smoke", data_dir=str(tmp_path / "nowhere"), out_dir=str(tmp_path)))


def test_out_of_memory_is_a_clear_error(synth_dir, tmp_path, monkeypatch):
    import lightning as L

    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(L.Trainer, "fit", boom)
    with pytest.raises(I2LError, match="--batch-size 4"):
        fit(small_cfg(synth_dir, tmp_path))


def test_a_time_budget_moves_the_end_of_the_cosine_schedule(monkeypatch):
    cfg = get_config("smoke", schedule="cosine", max_time_minutes=5.0)
    assert any(isinstance(c, TimeBudgetSchedule) for c in make_callbacks(cfg, progress_bar=False))
    for other in (cfg.replace(max_time_minutes=None), cfg.replace(schedule="multistep")):
        assert not any(isinstance(c, TimeBudgetSchedule) for c in make_callbacks(other, progress_bar=False))

    class ClockTimer(Timer):  # Lightning's Timer, with the remaining time set by the test
        remaining: float | None = 100.0

        def time_remaining(self, stage: str = "train") -> float | None:
            return self.remaining

    clock = [1000.0]
    monkeypatch.setattr(train_module.time, "monotonic", lambda: clock[0])
    timer, module = ClockTimer(duration=timedelta(seconds=100)), SimpleNamespace(schedule_steps=None)
    broadcasts = []
    strategy = SimpleNamespace(broadcast=lambda obj, src=0: broadcasts.append(src) or obj)
    trainer = SimpleNamespace(callbacks=[timer], global_step=40, strategy=strategy)  # resumed: 40 steps before
    callback = TimeBudgetSchedule(every=10)
    callback.on_train_start(trainer, module)
    clock[0], trainer.global_step, timer.remaining = 1005.0, 45, 95.0
    callback.on_train_batch_end(trainer, module, None, None, 0)
    assert module.schedule_steps is None  # not a multiple of `every`, and too early to measure
    clock[0], trainer.global_step, timer.remaining = 1010.0, 60, 90.0  # 20 steps in 10 s: 2 steps/s
    callback.on_train_batch_end(trainer, module, None, None, 0)
    assert module.schedule_steps == 60 + 180  # the step at which the 90 s left run out
    clock[0], trainer.global_step, timer.remaining = 1040.0, 70, 60.0  # slower now (validation): 0.75 step/s
    callback.on_train_batch_end(trainer, module, None, None, 0)
    assert module.schedule_steps == 70 + 45
    timer.remaining, trainer.global_step = 0.0, 80
    callback.on_train_batch_end(trainer, module, None, None, 0)
    assert module.schedule_steps == 81  # time is up: the schedule ends now
    assert broadcasts == [0, 0, 0]  # every estimate came from rank 0


def test_atomic_checkpoint_io_keeps_the_old_file_on_failure(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"a": torch.ones(2)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        io.save_checkpoint({"a": lambda: None}, path)  # cannot be pickled
    assert torch.equal(torch.load(path)["a"], torch.ones(2))


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(synth_dir, tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(f"""
        import os
        import torch
        torch.set_num_threads(1)
        from i2l.config import get_config
        from i2l.train import fit
        cfg = get_config("smoke", data_dir={str(synth_dir)!r}, out_dir={str(tmp_path)!r}, run_name="ddp",
                         accelerator="cpu", devices=2, strategy="ddp", limit_train_batches=2, limit_val_batches=1,
                         val_decode_samples=2, max_epochs=1, log_every_n_steps=1)
        r = fit(cfg, progress_bar=False)
        rank = os.environ.get("LOCAL_RANK", "0")
        with open(f"result-{{rank}}.txt", "w") as out:  # one file per process: their stdout interleaves
            out.write(f"{{rank}} {{r.global_step}} {{r.last_checkpoint}}")
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [p.read_text().split() for p in sorted(tmp_path.glob("result-*.txt"))]
    assert len(results) == 2, proc.stdout[-2000:]  # one result per process
    assert [r[0] for r in results] == ["0", "1"] and all(r[1] == "2" for r in results)
    assert (tmp_path / "ddp" / "checkpoints" / "last.ckpt").is_file()
    model, vocab, cfg = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.ckpt")
    assert cfg.devices == 2 and len(vocab) > 4


def test_overwrite_puts_the_previous_run_back_when_training_fails(trained, monkeypatch):
    import lightning as L

    cfg, first, _, _ = trained
    before = first.last_checkpoint.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(L.Trainer, "fit", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        fit(cfg, overwrite=True, progress_bar=False)
    assert first.last_checkpoint.read_bytes() == before
    assert not cfg.run_dir.with_name(cfg.run_dir.name + ".previous").exists()
    with pytest.raises(I2LError, match="exclude"):
        fit(cfg, overwrite=True, resume=True)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="no /proc/stat (not Linux): busy_cores uses the load average")
def test_busy_cores_sees_a_process_that_keeps_a_core_busy():
    from i2l.train import busy_cores

    idle = busy_cores(0.3)
    assert idle is not None and 0.0 <= idle <= (os.cpu_count() or 1)
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 20\nwhile time.time() < t: pass"])
    try:
        time.sleep(0.5)
        assert busy_cores(0.5) >= 0.7  # one core spinning, whatever else runs
    finally:
        spinner.kill()
        spinner.wait()


def test_pick_cpu_threads_uses_one_thread_on_a_busy_cpu(monkeypatch):
    from i2l.train import pick_cpu_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(train_module, "busy_cores", lambda: 64.0)
        assert pick_cpu_threads(verbose=False) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(train_module, "busy_cores", lambda: 0.0)
        torch.set_num_threads(before)
        assert pick_cpu_threads(verbose=False) == before
        assert pick_cpu_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_find_checkpoint(tiny_checkpoint, tiny_data, tmp_path):
    cfg = get_config("smoke", data_dir=str(tiny_data), out_dir=str(tmp_path), run_name="r", max_epochs=1,
                     accelerator="cpu", devices=1, max_len=20)
    with pytest.raises(I2LError, match="no checkpoint"):
        find_checkpoint(cfg, train_if_missing=False)
    folder = cfg.run_dir / "checkpoints"
    folder.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, folder / "last.ckpt")
    assert find_checkpoint(cfg) == folder / "last.ckpt"  # notebook 04's checkpoint is used as it is
    (folder / "best.ckpt").write_bytes(b"stale")  # smoke mode: an unloadable checkpoint is trained again
    ckpt = find_checkpoint(cfg)
    assert ckpt.is_file() and load_checkpoint(ckpt)[1] is not None
