"""Shared fixtures and helpers: the real Im2Latex-100K files in ../shared (skipped with a reason when absent), a tiny
dataset drawn with PIL's font and a checkpoint trained on it, and the real save path for checkpoints."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from i2l.config import shared_data

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = shared_data().parent  # ../shared/data beside the repository (or $I2L_SHARED_DATA/..)

# made-up formulas (never real ones) over a tiny alphabet
TRAIN_FORMULAS = [f"{a} {op} {b}" for a in "xyab" for op in "+-=" for b in "123"][:36] + ["x ^ { 2 }"] * 4
VAL_FORMULAS = ["x + 1", "a - 2", "y = 3", "b + \\zeta", "x ^ { 2 }", "a = 1"]  # "\zeta": not in the vocab


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, the real Im2Latex-100K sample, splits and formulas (not part of the project)."""
    if not (SHARED_DATA / "im2latex").is_dir():
        pytest.skip(f"real Im2Latex-100K files not found at {SHARED_DATA} (only present on the team's machines)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is faster and steadier than two on a shared CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def save_lightning_checkpoint(lit, path: Path) -> Path:
    """Write ``lit`` (a LitIm2Latex) as ``i2l train`` does: through a Lightning Trainer's save_checkpoint."""
    import lightning as L

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.strategy.connect(lit)
    trainer.save_checkpoint(path)
    return Path(path)


@pytest.fixture()
def save_checkpoint():
    """The function that writes a LitIm2Latex to a .ckpt through Lightning (the real save path)."""
    return save_lightning_checkpoint


def _draw(text: str) -> Image.Image:
    img = Image.new("L", (16 + 7 * len(text), 32), 255)
    ImageDraw.Draw(img).text((8, 10), text, fill=0)
    return img


def make_tiny_dataset(root: Path) -> Path:
    """A processed-layout folder: 40 train, 6 validate formulas drawn with PIL's font, one corrupt image."""
    images = root / "images_processed"
    images.mkdir(parents=True)
    formulas = TRAIN_FORMULAS + VAL_FORMULAS
    (root / "formulas.norm.lst").write_text("\n".join(formulas) + "\n")
    lines = {"train": [], "validate": []}
    for k, f in enumerate(formulas):
        split = "train" if k < len(TRAIN_FORMULAS) else "validate"
        _draw(f).save(images / f"f{k:03d}.png")
        lines[split].append(f"f{k:03d}.png {k}")
    (images / "f999.png").write_bytes(b"not a png at all")  # corrupt: load_split keeps it, reading fails
    lines["validate"].append(f"f999.png {len(TRAIN_FORMULAS)}")
    (root / "train_filter.lst").write_text("\n".join(lines["train"]) + "\n")
    (root / "validate_filter.lst").write_text("\n".join(lines["validate"]) + "\n")
    (root / "test_filter.lst").write_text("\n".join(lines["validate"]) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tinyset") / "data")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data, tmp_path_factory) -> Path:
    """One epoch of the smoke model on the tiny set (seconds on a CPU)."""
    from i2l.config import get_config
    from i2l.train import fit

    runs = tmp_path_factory.mktemp("runs")
    cfg = get_config("smoke", data_dir=str(tiny_data), out_dir=str(runs), run_name="tiny", max_epochs=1,
                     accelerator="cpu", devices=1, max_len=20)
    result = fit(cfg, progress_bar=False)
    ckpt = result.best_checkpoint or result.last_checkpoint
    assert ckpt is not None and Path(ckpt).is_file()
    return Path(ckpt)


# ----------------------------------------------------------------------------- tiny models and images
FORMULAS = ["x ^ { 2 } + y", r"\frac { a } { b }", r"\sqrt { x } = 1", "a _ { i } - b"]  # made up


def make_checkpoint(path: Path, formulas: list[str] | None = None, seed: int = 0, max_len: int = 12) -> Path:
    """A tiny untrained smoke model saved through Lightning, like ``i2l.train.fit`` saves checkpoints."""
    import torch

    from i2l.config import get_config
    from i2l.lit import LitIm2Latex
    from i2l.tokenizer import Vocab

    torch.manual_seed(seed)
    lit = LitIm2Latex(get_config("smoke", max_len=max_len), Vocab.build(formulas or FORMULAS, min_freq=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_lightning_checkpoint(lit, path)


def make_other_vocab_weights(checkpoint: Path, path: Path) -> Path:
    """A weights file whose vocabulary is not the one its model was trained with (a mismatched checkpoint)."""
    from i2l.checkpoint import load_checkpoint, save_weights
    from i2l.tokenizer import Vocab

    model, vocab, cfg = load_checkpoint(checkpoint)
    return save_weights(model, Vocab.build(list(vocab.itos[4:]) + ["\\alpha \\beta \\gamma"], min_freq=1), cfg, path)


def formula_image(text: str = "x+1", size: int = 28, width: int = 200) -> Image.Image:
    """A quick image of some text (PIL's default font), black on white."""
    from PIL import ImageFont

    img = Image.new("L", (width, size * 2), 255)
    font = ImageFont.load_default(size=size)
    ImageDraw.Draw(img).text((10, size // 3), text, fill=0, font=font)
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def page(box=(300, 200, 420, 240), size=(800, 600), mode="L") -> Image.Image:
    """A white page with a black rectangle of ink at ``box``."""
    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).rectangle(box, fill=0)
    return img.convert(mode)
