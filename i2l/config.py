"""One typed configuration for data, model and training, with named presets and the smoke switch.

Presets:
- ``smoke``: CI and notebooks in smoke mode, seconds on a CPU.
- ``cpu``: a laptop, minutes on a CPU (``make demo``).
- ``seed``: the original project's model (d_model 128, ff 256, 4 heads, 2 layers, ~3.3M parameters).
- ``base``: a larger model for the best accuracy on a GPU.
- ``reference``: the shipped model, trained from nothing on a CPU in resumed stretches (``i2l/weights``).

Change a preset with :func:`dataclasses.replace` or :meth:`Config.replace`; a config round-trips through
JSON and YAML so that every checkpoint carries the one it was trained with.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

SMOKE_ENV = "I2L_SMOKE"


def smoke_mode() -> bool:
    """True when ``I2L_SMOKE`` is set to a true value, or when ``CI`` is set (the one place this is read)."""
    value = os.environ.get(SMOKE_ENV)
    if value is not None:
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(os.environ.get("CI"))


def project_root() -> Path:
    """The folder that holds ``data/``, ``runs/`` and ``figures/``.

    ``I2L_HOME`` if set; else the repository when the package is installed from a checkout
    (editable install); else the current directory.
    """
    if os.environ.get("I2L_HOME"):
        return Path(os.environ["I2L_HOME"]).expanduser().resolve()
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists() and (repo / "i2l").is_dir():
        return repo
    return Path.cwd()


#: Overrides where :func:`shared_data` looks (a folder; a path that does not exist means none).
SHARED_ENV = "I2L_SHARED_DATA"


def shared_data() -> Path:
    """The real Im2Latex-100K files kept beside the repository for tests and measurement only
    (``../shared/data/im2latex``; never trained on, never committed), or ``$I2L_SHARED_DATA``. It may not
    exist: a user's clone has none."""
    if os.environ.get(SHARED_ENV):
        return Path(os.environ[SHARED_ENV]).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "im2latex"


#: The dataset's split names, in the order of the official lists (Im2Latex-100K and the synthetic sets).
SPLITS = ("train", "validate", "test")
#: The source name of the shipped model wherever a door takes a checkpoint (``Predictor.load``, ``--checkpoint``,
#: ``Config.init_from``).
PRETRAINED = "pretrained"
#: The widest beam any door accepts (CLI, web API, widgets): wider beams cost time and rarely read better.
MAX_BEAM = 10

@dataclass(frozen=True)
class Config:
    """Everything a run needs; field groups: data, model, optimisation, trainer, decoding."""

    name: str = "cpu"
    smoke: bool = False
    # --- data ---
    data_dir: str = "data/synth"  # relative paths are resolved against project_root()
    synth_size: int = 4000  # formulas generated when data_dir is the synthetic set and missing
    synth_level: str = "full"  # generator level of that set: "full" (Im2Latex-like) or "basic" (i2l.data.grammar)
    synth_mean_len: float | None = None  # target formula length of the generator (None: the level's default)
    synth_std_len: float | None = None
    synth_shard_size: int | None = None  # render the set as shards of this many formulas (data_dir/shard-000 ...)
    synth_seed: int = 0  # generator seed (shard k uses synth_seed + k)
    max_len: int = 150  # maximum formula length in tokens (without start/end)
    min_freq: int = 2  # vocabulary: minimum token frequency in the training formulas
    vocab: str = "data"  # "data": built from the training formulas; "grammar": every token the generator writes
    curriculum: tuple[tuple[int, int], ...] = ()  # (epoch, max_len): from that epoch on, train on <= max_len tokens
    batch_size: int = 16
    eval_batch_size: int = 32
    num_workers: int = 0
    pin_memory: bool = False
    augment: bool = True
    limit_train: int | None = None  # use only the first N training samples
    limit_val: int | None = None
    limit_test: int | None = None
    # --- model ---
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    dim_feedforward: int = 256
    dropout: float = 0.1
    norm_first: bool = True
    pretrained_backbone: bool = False
    # --- optimisation ---
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "multistep"  # "multistep" (lr * gamma after each milestone), "cosine" (warm-up + cosine) or
    # "rsqrt" (warm-up + inverse square root: no fixed end, for a run resumed over many sessions)
    milestones: tuple[int, ...] = (10,)
    gamma: float = 0.5
    warmup_steps: int = 0
    label_smoothing: float = 0.0
    grad_clip: float = 1.0
    # --- trainer ---
    max_epochs: int = 15
    max_time_minutes: float | None = None  # stop training after this wall time
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    precision: str = "auto"  # "auto": bf16-mixed on compute capability >= 8, 16-mixed on older GPUs, 32 on CPU
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    compile: bool = False
    init_from: str | None = None  # warm start: "pretrained" (the shipped model) or a .ckpt/.pt path
    val_check_interval: int | None = None  # validate every N training steps (None: after every epoch)
    checkpoint_every_minutes: float | None = None  # also write last.ckpt every N minutes of training
    seed: int = 1234
    deterministic: bool = False
    out_dir: str = "runs"
    run_name: str | None = None  # default: the preset name
    val_decode_samples: int = 64  # validation images decoded for BLEU / exact match each epoch
    log_every_n_steps: int = 10
    # --- decoding ---
    beam_size: int = 1
    length_penalty: float = 1.0

    # ------------------------------------------------------------------ helpers
    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (same as :func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dictionary."""
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["curriculum"] = [list(stage) for stage in self.curriculum]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Inverse of :meth:`to_dict`; unknown keys raise a clear error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown config field(s) {unknown}; known fields: {sorted(known)}")
        d = dict(d)
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        if "curriculum" in d:
            d["curriculum"] = tuple(tuple(int(v) for v in stage) for stage in d["curriculum"])
        return cls(**d)

    def with_settings(self, settings: list[str] | tuple[str, ...]) -> Config:
        """A copy with ``FIELD=VALUE`` settings applied, the values read as YAML (``lr=3e-4``,
        ``curriculum=[]``, ``augment=false``), as the command line's ``--set`` takes them; an unknown field or a
        malformed setting raises a ``ValueError`` that names it."""
        import yaml

        changes: dict[str, Any] = {}
        for item in settings:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"setting {item!r}: expected FIELD=VALUE, e.g. lr=3e-4")
            value = yaml.safe_load(text)
            if isinstance(value, str):  # YAML 1.1 reads 3e-4 as a string
                try:
                    value = float(value)
                except ValueError:
                    pass
            changes[key.strip()] = value
        return Config.from_dict({**self.to_dict(), **changes})

    def max_len_at(self, epoch: int) -> int:
        """The longest training formula (tokens) at ``epoch``: the curriculum's stage, else ``max_len``."""
        cap = self.max_len
        for start, length in sorted(self.curriculum):
            if epoch >= start:
                cap = length
        return min(cap, self.max_len)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str) -> Config:
        import yaml

        return cls.from_dict(yaml.safe_load(text))

    def save(self, path: str | Path) -> Path:
        """Write JSON or YAML (by suffix) atomically."""
        path = Path(path)
        text = self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Config:
        path = Path(path)
        text = path.read_text()
        return cls.from_yaml(text) if path.suffix in (".yaml", ".yml") else cls.from_json(text)

    # ------------------------------------------------------------------ paths
    def resolve(self, p: str | Path) -> Path:
        """A path from the config, made absolute against :func:`project_root`."""
        p = Path(p).expanduser()
        return p if p.is_absolute() else project_root() / p

    @property
    def data_path(self) -> Path:
        return self.resolve(self.data_dir)

    @property
    def run_dir(self) -> Path:
        return self.resolve(self.out_dir) / (self.run_name or self.name)


PRESETS: dict[str, Config] = {
    # Seconds on a CPU: CI and every notebook in smoke mode.
    "smoke": Config(
        name="smoke",
        smoke=True,
        data_dir="data/synth-smoke",
        synth_size=240,
        max_len=60,
        batch_size=8,
        eval_batch_size=16,
        d_model=32,
        num_heads=2,
        num_layers=1,
        dim_feedforward=64,
        dropout=0.0,
        max_epochs=1,
        limit_val=16,
        limit_test=16,
        val_decode_samples=8,
        log_every_n_steps=2,
        augment=False,
    ),
    # Minutes on a laptop CPU: `make demo` and the CPU learning benchmark.
    "cpu": Config(
        name="cpu",
        data_dir="data/synth-basic",
        synth_size=10000,  # ~300 basic formulas/s to render; with 9,600 the 15-minute benchmark began to overfit
        synth_level="basic",  # short formulas of common, visible symbols: a task a CPU can learn in minutes
        max_len=40,  # short formulas: small images
        batch_size=8,  # more updates per image seen: what counts when the budget is minutes
        d_model=128,
        num_heads=4,
        num_layers=2,
        dim_feedforward=256,
        dropout=0.0,  # a few epochs at most: no time to overfit
        norm_first=False,  # post-norm, as the original: validation loss 1.15 vs 1.28 pre-norm after 3,500 steps
        lr=1e-3,  # 2e-3 and 4e-3 learned more slowly in the first 2,000 steps (benchmarks/learn_cpu.py)
        schedule="cosine",  # ends when the time budget runs out (i2l.train.TimeBudgetSchedule)
        warmup_steps=100,
        max_epochs=30,
        max_time_minutes=8.0,  # exact transcriptions begin after about 5 minutes on 2 cores (learn_cpu.png)
        val_decode_samples=32,
        augment=False,  # synthetic test images are rendered like the training ones: no time spent on invariances
    ),
    # The original project's recipe, for comparison with its published numbers.
    "seed": Config(
        name="seed",
        data_dir="data/im2latex",
        d_model=128,
        num_heads=4,
        num_layers=2,
        dim_feedforward=256,
        dropout=0.3,
        norm_first=False,
        max_len=150,
        lr=1e-3,
        weight_decay=1e-4,
        schedule="multistep",
        milestones=(10,),
        gamma=0.5,
        batch_size=8,
        max_epochs=15,
        augment=False,
        num_workers=4,
        pin_memory=True,
    ),
    # The shipped reference model (i2l/weights/MODEL_CARD.md): trained from nothing on a 2-core CPU, one torch
    # thread, in resumed stretches; every choice is measured in the model card's recipe table.
    "reference": Config(
        name="reference",
        data_dir="data/synth-reference",
        synth_size=140000,  # hundreds of thousands in the end: shards are added between stretches
        synth_shard_size=20000,
        synth_level="full",
        # Target lengths that give the real distribution (mean 57.7, std 27.9 tokens) once the generator's
        # overshoot and the 500x160 filter have acted; 58/28 (shards 0-4) gave 65.2/23.4.
        synth_mean_len=46.0,
        synth_std_len=32.0,
        synth_seed=1000,
        max_len=150,
        vocab="grammar",  # fixed: the run keeps its vocabulary while the data grows
        curriculum=((0, 40), (1, 80), (2, 150)),
        batch_size=16,
        eval_batch_size=32,
        limit_val=256,
        val_decode_samples=96,
        d_model=256,
        num_heads=8,
        num_layers=3,
        dim_feedforward=1024,
        dropout=0.1,
        norm_first=True,
        lr=5e-4,
        weight_decay=1e-2,
        schedule="rsqrt",
        warmup_steps=1000,
        label_smoothing=0.1,
        max_epochs=1000,  # the time budget ends a stretch
        max_time_minutes=120.0,
        val_check_interval=1000,
        checkpoint_every_minutes=10.0,
        augment=True,
        precision="bf16-mixed",  # autocast on a CPU with AVX512-BF16: 1.77x the steps of fp32 (recipe_speed.py)
        beam_size=5,
    ),
    # Larger, for the best accuracy on a GPU (see notebooks/04_training.ipynb for the reasoning).
    "base": Config(
        name="base",
        data_dir="data/im2latex",
        d_model=256,
        num_heads=8,
        num_layers=3,
        dim_feedforward=1024,
        dropout=0.1,
        norm_first=True,
        max_len=150,
        lr=5e-4,
        weight_decay=1e-2,
        schedule="cosine",
        warmup_steps=1000,
        label_smoothing=0.1,
        batch_size=32,
        max_epochs=15,
        augment=True,
        num_workers=8,
        pin_memory=True,
        beam_size=5,
    ),
}


def get_config(preset: str | None = None, **overrides: Any) -> Config:
    """The named preset (default: ``smoke`` in smoke mode, else ``cpu``) with ``overrides`` applied."""
    if preset is None:
        preset = "smoke" if smoke_mode() else "cpu"
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset].replace(**overrides)


__all__ = ["Config", "PRESETS", "SPLITS", "MAX_BEAM", "PRETRAINED", "get_config", "smoke_mode", "project_root", "SMOKE_ENV",
           "SHARED_ENV", "shared_data"]
