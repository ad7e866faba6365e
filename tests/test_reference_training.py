"""Tests of the reference-training features: the grammar's fixed vocabulary, sharded synthetic sets, the length
curriculum, the new augmentations, the rsqrt schedule, warm starts, periodic checkpoints and the train flags."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import FORMULAS, TRAIN_FORMULAS, make_checkpoint
from lightning.pytorch.callbacks import Callback
from PIL import Image, ImageDraw

import i2l.train as train_module
from i2l import cli
from i2l.checkpoint import load_checkpoint, read_checkpoint, save_weights
from i2l.config import PRESETS, Config, get_config
from i2l.data import synth
from i2l.data.dataset import (
    BucketBatchSampler,
    Im2LatexDataModule,
    RandomJPEG,
    RandomPaper,
    RandomStroke,
    train_transform,
    vocabulary,
)
from i2l.data.grammar import RESERVED_TOKENS, FormulaGenerator, grammar_tokens
from i2l.data.im2latex import load_split
from i2l.data.synth import ensure_dataset, make_shards, shard_dirs
from i2l.errors import I2LError
from i2l.lit import make_scheduler, rsqrt_with_warmup
from i2l.model import Im2LatexModel
from i2l.tokenizer import Vocab
from i2l.train import (
    WARM_START_FILE,
    PeriodicCheckpoint,
    find_data,
    fit,
    make_trainer,
    run_log,
    training_record,
    warm_start,
    warm_start_origin,
    write_run_log,
)

EPS = 1e-5
SHARD_OPTIONS = dict(level="basic", max_len=10, backend="auto", progress=False)  # a few short formulas: < 1 s


# ============================================================================ helpers
def formulas_of(folder: Path) -> list[str]:
    return (folder / "formulas.norm.lst").read_text().splitlines()


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: (mtime in ns, contents)."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def make_length_dataset(root: Path, lengths: list[int]) -> Path:
    """A processed-layout folder whose training formulas have the given token counts (two validation ones)."""
    images = root / "images_processed"
    images.mkdir(parents=True)
    formulas, lines = [], {"train": [], "validate": [], "test": []}
    for k, n in enumerate(lengths + [3, 5]):
        tokens = (["x", "+", "y", "-"] * n)[:n]
        formulas.append(" ".join(tokens))
        w, h = 40 + 8 * n, 32 + 8 * (k % 2)
        img = Image.new("L", (w, h), 255)
        ImageDraw.Draw(img).rectangle((4, 4, w - 4, h // 2), fill=0)
        img.save(images / f"l{k:03d}.png")
        lines["train" if k < len(lengths) else "validate"].append(f"l{k:03d}.png {k}")
    (root / "formulas.norm.lst").write_text("\n".join(formulas) + "\n")
    for split, ls in lines.items():
        (root / f"{split}_filter.lst").write_text("\n".join(ls) + ("\n" if ls else ""))
    return root


def ink_image(h: int = 32, w: int = 64) -> torch.Tensor:
    """A white (1, h, w) float image with a black bar and a grey one."""
    img = torch.ones(1, h, w)
    img[:, 10:20, 8:30] = 0.0
    img[:, 12:16, 40:56] = 0.5
    return img


# ============================================================================ 1. grammar tokens
def test_grammar_tokens_are_sorted_unique_and_cover_every_generated_formula():
    tokens = grammar_tokens()
    assert tokens == sorted(tokens) and len(tokens) == len(set(tokens))
    assert set(RESERVED_TOKENS) <= set(tokens)
    assert not {"<pad>", "<s>", "</s>", "<unk>"} & set(tokens)
    known = set(tokens)
    for kw in (dict(level="full"), dict(level="basic"), dict(level="full", mean_len=58, std_len=28, max_len=150),
               dict(level="basic", mean_len=58, std_len=28, max_len=150)):
        formulas = FormulaGenerator(seed=11, **kw).generate(1500)
        missing = {t for f in formulas for t in f.split()} - known
        assert not missing, (kw, sorted(missing)[:10])
    assert grammar_tokens() == tokens  # fixed: the same list at every call


# ============================================================================ 2. shards
def test_make_shards_names_seeds_and_keeps_complete_shards(tmp_path, monkeypatch):
    out = tmp_path / "synth-shards"
    calls = []
    real = synth.make_dataset
    monkeypatch.setattr(synth, "make_dataset", lambda path, **kw: calls.append((Path(path).name, kw)) or real(path, **kw))
    assert make_shards(out, n=4, shard_size=2, seed=7, **SHARD_OPTIONS) == out
    assert sorted(p.name for p in out.iterdir()) == ["shard-000", "shard-001"]
    assert [(name, kw["seed"], kw["n"]) for name, kw in calls] == [("shard-000", 7, 2), ("shard-001", 8, 2)]
    for k in range(2):
        shard = out / f"shard-{k:03d}"
        report = json.loads((shard / "synth_report.json").read_text())
        assert report["seed"] == 7 + k and report["level"] == "basic" and report["rendered"] == 2
        assert formulas_of(shard) == FormulaGenerator(seed=7 + k, max_len=10, level="basic").generate(2)
    assert formulas_of(out / "shard-000") != formulas_of(out / "shard-001")

    before = {k: snapshot(out / f"shard-{k:03d}") for k in range(2)}
    (out / "shard-002").mkdir()
    (out / "shard-002" / "junk.txt").write_text("an interrupted shard")  # incomplete: rendered again
    calls.clear()
    make_shards(out, n=7, shard_size=2, seed=7, **SHARD_OPTIONS)
    assert [(name, kw["seed"], kw["n"]) for name, kw in calls] == [("shard-002", 9, 2), ("shard-003", 10, 1)]
    assert {k: snapshot(out / f"shard-{k:03d}") for k in range(2)} == before  # untouched, mtimes included
    assert not (out / "shard-002" / "junk.txt").exists() and len(formulas_of(out / "shard-002")) == 2
    assert len(formulas_of(out / "shard-003")) == 1
    calls.clear()
    make_shards(out, n=7, shard_size=2, seed=7, **SHARD_OPTIONS)
    assert calls == []  # all complete: nothing rendered

    with pytest.raises(I2LError, match="at least 1"):
        make_shards(tmp_path / "bad", n=0, shard_size=2)
    with pytest.raises(I2LError, match="at least 1"):
        make_shards(tmp_path / "bad", n=4, shard_size=0)


def test_shard_dirs(tmp_path):
    out = make_shards(tmp_path / "set", n=4, shard_size=2, seed=1, **SHARD_OPTIONS)
    (out / "shard-005").mkdir()  # incomplete
    (out / "shard-009.txt").write_text("a file")
    (out / "other").mkdir()
    (out / "other" / "formulas.norm.lst").write_text("x\n")  # a dataset, but not named as a shard
    assert shard_dirs(out) == [out / "shard-000", out / "shard-001"]
    assert shard_dirs(str(out / "shard-001")) == [out / "shard-001"]  # a plain dataset: itself
    assert shard_dirs(tmp_path / "missing") == []
    (tmp_path / "empty").mkdir()
    assert shard_dirs(tmp_path / "empty") == []
    assert shard_dirs(out / "shard-009.txt") == []


def test_ensure_dataset_renders_the_missing_shards_of_a_config(tmp_path, monkeypatch):
    calls = []
    real = synth.make_shards
    monkeypatch.setattr(synth, "make_shards", lambda *a, **k: calls.append(k) or real(*a, **k))
    cfg = get_config("smoke", data_dir=str(tmp_path / "synth-sharded"), synth_size=4, synth_shard_size=2,
                     synth_level="basic", synth_seed=3, max_len=10)
    path = ensure_dataset(cfg)
    assert path == tmp_path / "synth-sharded" and len(shard_dirs(path)) == 2
    assert calls[0]["seed"] == 3 and calls[0]["shard_size"] == 2 and calls[0]["level"] == "basic"
    assert [json.loads((s / "synth_report.json").read_text())["seed"] for s in shard_dirs(path)] == [3, 4]
    assert ensure_dataset(cfg) == path and len(calls) == 1  # complete: not rendered again
    assert find_data(cfg) == path
    ensure_dataset(cfg.replace(synth_size=5))  # a larger set adds a shard
    assert len(shard_dirs(path)) == 3 and len(calls) == 2


def test_find_data_accepts_a_folder_of_shards_without_shard_settings(tmp_path):
    out = make_shards(tmp_path / "my-shards", n=4, shard_size=2, seed=1, **SHARD_OPTIONS)
    assert find_data(get_config("smoke", data_dir=str(out))) == out
    before = (out / "shard-001" / "formulas.norm.lst").read_text()
    make_shards(out, n=5, shard_size=2, seed=1, **SHARD_OPTIONS)  # the short last shard grows, the rest stays
    assert [len((s / "formulas.norm.lst").read_text().splitlines()) for s in shard_dirs(out)] == [2, 2, 1]
    assert (out / "shard-001" / "formulas.norm.lst").read_text() == before
    make_shards(out, n=6, shard_size=2, seed=1, **SHARD_OPTIONS)
    assert [len((s / "formulas.norm.lst").read_text().splitlines()) for s in shard_dirs(out)] == [2, 2, 2]


# ============================================================================ 3. data module, vocabulary, curriculum
@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_shards(tmp_path_factory.mktemp("shards") / "set", n=16, shard_size=8, seed=21, **SHARD_OPTIONS)


def test_vocabulary_choices():
    grammar = vocabulary(get_config("smoke", vocab="grammar"), ["\\notagrammartoken q"] * 3)
    assert grammar == Vocab(grammar_tokens(), min_freq=1) and "\\notagrammartoken" not in grammar
    formulas = ["x + 1", "x - 2", "y"]
    data = vocabulary(get_config("smoke", vocab="data", min_freq=2), formulas)
    assert data == Vocab.build(formulas, min_freq=2) and "x" in data and "y" not in data
    assert "y" in vocabulary(get_config("smoke", vocab="data", min_freq=1), formulas)
    with pytest.raises(I2LError, match="'grammar'"):
        vocabulary(get_config("smoke", vocab="letters"), formulas)


def test_datamodule_reads_every_shard(shards):
    cfg = get_config("smoke", data_dir=str(shards), max_len=60, min_freq=1, limit_val=None, limit_test=None)
    dm = Im2LatexDataModule(cfg)
    dm.setup()
    parts = shard_dirs(shards)
    assert len(parts) == 2
    for split, ds in (("train", dm.train_set), ("validate", dm.val_set), ("test", dm.test_set)):
        expected = [s for part in parts for s in load_split(part, split)]
        assert [s.image_path for s in ds.samples] == [s.image_path for s in expected]
        assert [s.formula for s in ds.samples] == [s.formula for s in expected]
        assert dm.reports[split].loaded == len(expected)
    assert len(dm.train_set) == 12 and {p.parent.parent for p in (s.image_path for s in dm.train_set.samples)} \
        == set(parts)
    assert dm.vocab == Vocab.build((s.tokens for s in dm.train_set.samples), min_freq=1)
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[0] >= 1

    grammar = Im2LatexDataModule(cfg.replace(vocab="grammar"))
    grammar.setup()
    assert grammar.vocab == Vocab(grammar_tokens(), min_freq=1)
    assert grammar.val_set.unknown_report()["unknown_tokens"] == 0


def test_max_len_at_follows_the_curriculum():
    cfg = Config(max_len=150, curriculum=((2, 80), (0, 40), (5, 200)))  # unsorted, last stage beyond max_len
    assert [cfg.max_len_at(e) for e in range(7)] == [40, 40, 80, 80, 80, 150, 150]
    assert Config(max_len=60).max_len_at(3) == 60
    late = Config(max_len=60, curriculum=((1, 20),))
    assert (late.max_len_at(0), late.max_len_at(1)) == (60, 20)


def test_curriculum_indices_keep_only_short_formulas(tmp_path):
    lengths = [2, 3, 4, 6, 8, 10, 12, 3, 9, 5]
    data = make_length_dataset(tmp_path / "lengths", lengths)
    cfg = get_config("smoke", data_dir=str(data), max_len=12, min_freq=1, batch_size=2,
                     curriculum=((0, 4), (1, 9), (2, 12)))
    dm = Im2LatexDataModule(cfg)
    with pytest.raises(I2LError, match="setup"):
        dm.curriculum_indices(0)
    dm.setup()
    n_tokens = [len(s.tokens) for s in dm.train_set.samples]
    assert sorted(n_tokens) == sorted(lengths)
    for epoch, cap in ((0, 4), (1, 9)):
        kept = dm.curriculum_indices(epoch)
        assert kept == [i for i, n in enumerate(n_tokens) if n <= cap] and 0 < len(kept) < len(lengths)
        dm.trainer = SimpleNamespace(current_epoch=epoch)  # what Lightning sets; train_dataloader reads it
        seen = [i for batch in dm.train_dataloader().batch_sampler for i in batch]
        assert sorted(seen) == kept
    assert dm.curriculum_indices(2) is None and dm.curriculum_indices(9) is None  # the full max_len
    dm.trainer = SimpleNamespace(current_epoch=2)
    assert sorted(i for b in dm.train_dataloader().batch_sampler for i in b) == list(range(len(lengths)))

    none_left = Im2LatexDataModule(cfg.replace(curriculum=((0, 1),)))
    none_left.setup()
    with pytest.raises(I2LError, match="epoch 0"):
        none_left.curriculum_indices(0)


def test_bucket_sampler_yields_only_the_given_indices():
    keys = [(32, 64), (32, 96), (32, 64), (40, 64), (32, 96), (40, 64), (32, 64), (32, 64)]
    indices = [0, 2, 3, 6, 7]
    for shuffle in (True, False):
        sampler = BucketBatchSampler(keys, batch_size=2, shuffle=shuffle, seed=3, indices=indices)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == indices
        assert all(len({keys[i] for i in b}) == 1 for b in batches)
        assert len(batches) == len(sampler)
    everything = BucketBatchSampler(keys, batch_size=2, shuffle=False)
    assert sorted(i for b in everything for i in b) == list(range(len(keys)))


# ============================================================================ 3b. augmentations
def check_image(out: torch.Tensor, shape=None) -> None:
    assert out.dtype == torch.float32
    if shape is not None:
        assert out.shape == shape
    assert float(out.min()) >= -EPS and float(out.max()) <= 1 + EPS


def test_random_stroke_makes_strokes_bolder_or_thinner():
    img = ink_image()
    torch.manual_seed(0)
    directions = set()
    for _ in range(20):
        out = RandomStroke(0.8)(img)
        check_image(out, img.shape)
        assert not torch.equal(out, img)
        bolder, thinner = bool((out <= img + EPS).all()), bool((out >= img - EPS).all())
        assert bolder != thinner  # one direction per call
        directions.add("bolder" if bolder else "thinner")
    assert directions == {"bolder", "thinner"}
    batch = torch.stack([img, img])  # (B, 1, H, W) works too
    check_image(RandomStroke(0.8)(batch), batch.shape)
    assert torch.equal(RandomStroke(0.0)(img), img)
    white = torch.ones(1, 16, 16)
    assert torch.equal(RandomStroke(0.8)(white), white)  # no ink: nothing to change


def test_random_paper_maps_white_and_black_into_the_ranges():
    img = ink_image()
    torch.manual_seed(1)
    for paper, ink in (((0.82, 1.0), (0.0, 0.3)), ((0.9, 0.95), (0.1, 0.2))):
        transform = RandomPaper(paper=paper, ink=ink)
        his, los = set(), set()
        for _ in range(10):
            out = transform(img.clone())
            check_image(out, img.shape)
            hi, lo = float(out[0, 0, 0]), float(out[0, 12, 10])
            assert paper[0] - EPS <= hi <= min(1.0, paper[1]) + EPS
            assert max(0.0, ink[0]) - EPS <= lo <= ink[1] + EPS
            assert bool((out <= hi + EPS).all()) and bool((out >= lo - EPS).all())
            his.add(round(hi, 6))
            los.add(round(lo, 6))
        assert len(his) > 1 and len(los) > 1  # drawn at random
    out = RandomPaper(paper=(1.0, 1.3), ink=(-0.2, 0.0))(img.clone())  # beyond [0, 1]: clamped
    check_image(out, img.shape)


def test_random_jpeg_keeps_an_8_bit_image_in_range():
    img = ink_image(48, 96)
    torch.manual_seed(2)
    for _ in range(5):
        out = RandomJPEG((30, 60))(img)
        check_image(out, img.shape)
        assert torch.allclose(out * 255, (out * 255).round(), atol=1e-3)  # 8-bit values
        assert float((out - img).abs().mean()) < 0.1  # still the same picture
    check_image(RandomJPEG()(torch.rand(1, 32, 32) * 1.5 - 0.2), (1, 32, 32))  # out-of-range input is clamped


def test_train_transform_keeps_dtype_and_range():
    torch.manual_seed(3)
    transform = train_transform()
    names = {type(t.transforms[0]).__name__ for t in transform.transforms if hasattr(t, "transforms")}
    assert {"RandomStroke", "RandomPaper", "RandomJPEG"} <= names
    for k in range(25):
        img = Image.new("L", (120 + 8 * k, 40), 255)
        ImageDraw.Draw(img).text((6, 12), f"x^{k} + y", fill=0)
        out = transform(img)
        check_image(out)
        assert out.dim() == 3 and out.shape[0] == 1


# ============================================================================ 4. config
def test_reference_preset_round_trips_with_its_curriculum(tmp_path):
    cfg = PRESETS["reference"]
    assert cfg.curriculum and all(isinstance(stage, tuple) for stage in cfg.curriculum)
    assert json.loads(cfg.to_json())["curriculum"] == [list(stage) for stage in cfg.curriculum]
    for again in (Config.from_json(cfg.to_json()), Config.from_yaml(cfg.to_yaml()),
                  Config.load(cfg.save(tmp_path / "ref.json")), Config.load(cfg.save(tmp_path / "ref.yaml"))):
        assert again == cfg
        assert isinstance(again.curriculum, tuple) and all(isinstance(s, tuple) for s in again.curriculum)
    assert cfg.vocab == "grammar" and cfg.schedule == "rsqrt" and cfg.max_len_at(10**6) == cfg.max_len
    lists = Config.from_dict({"curriculum": [[0, 40], [1, 80]], "milestones": [3]})
    assert lists.curriculum == ((0, 40), (1, 80)) and isinstance(lists.curriculum[0], tuple)
    assert lists.max_len_at(0) == 40


# ============================================================================ 5. rsqrt schedule
def test_rsqrt_with_warmup_shape():
    warmup = 10
    factors = [rsqrt_with_warmup(s, warmup) for s in range(200)]
    assert factors[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert factors[warmup - 1] == pytest.approx(1.0)
    for s in range(warmup, 200):
        assert factors[s] == pytest.approx(math.sqrt(warmup / (s + 1)))
    after = factors[warmup - 1:]
    assert all(a > b for a, b in zip(after, after[1:]))  # decreasing after the warm-up, never zero
    assert max(factors) == pytest.approx(1.0) and min(factors) > 0
    assert rsqrt_with_warmup(0, 0) == pytest.approx(1.0) and rsqrt_with_warmup(3, 0) == pytest.approx(0.5)


def test_make_scheduler_rsqrt_and_unknown_schedule():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler, interval = make_scheduler(optimizer, get_config("smoke", schedule="rsqrt", warmup_steps=4), 0)
    assert interval == "step"
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1 * rsqrt_with_warmup(s, 4) for s in range(12)])
    with pytest.raises(I2LError, match="rsqrt"):
        make_scheduler(torch.optim.SGD([param], lr=0.1), get_config("smoke", schedule="linear"), 10)


# ============================================================================ 6. warm start, checkpoints, trainer
NEW_FORMULAS = ["x ^ { 2 } + \\gamma", "\\frac { a } { c } \\omega", "y = b _ { i }"]


@pytest.mark.parametrize("kind", ["ckpt", "pt"])
def test_warm_start_copies_shared_token_rows(tmp_path, kind, one_thread):
    source = make_checkpoint(tmp_path / "src.ckpt", formulas=FORMULAS, seed=1, max_len=12)
    old_model, old_vocab, old_cfg = load_checkpoint(source)
    if kind == "pt":
        source = save_weights(old_model, old_vocab, old_cfg, tmp_path / "src.pt", dtype=torch.float32)
    old = old_model.state_dict()

    cfg = get_config("smoke", max_len=20)  # max_len is not part of the network
    vocab = Vocab.build(NEW_FORMULAS, min_freq=1)
    shared = [t for t in vocab.itos if t in old_vocab.stoi]
    new = [t for t in vocab.itos if t not in old_vocab.stoi]
    assert len(shared) > 4 and new  # specials and some tokens shared, some tokens new
    assert any(vocab.stoi[t] != old_vocab.stoi[t] for t in shared)  # at other positions
    torch.manual_seed(5)
    model = Im2LatexModel(cfg, len(vocab))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}

    assert warm_start(model, cfg, vocab, str(source)) == {"tokens": len(shared), "new_tokens": len(new)}
    state = model.state_dict()
    rows = ("decoder.embedding.weight", "decoder.output.weight", "decoder.output.bias")
    for key in rows:
        assert state[key].shape[0] == len(vocab)
        for t in shared:
            assert torch.equal(state[key][vocab.stoi[t]], old[key][old_vocab.stoi[t]]), (key, t)
        for t in new:
            assert torch.equal(state[key][vocab.stoi[t]], fresh[key][vocab.stoi[t]]), (key, t)
    others = [k for k in state if k not in rows]
    assert others
    for key in others:
        assert torch.equal(state[key], old[key]), key
    assert any(not torch.equal(fresh[k], old[k]) for k in others if fresh[k].is_floating_point())


def test_warm_start_refuses_another_architecture(tmp_path):
    source = make_checkpoint(tmp_path / "src.ckpt", formulas=FORMULAS)
    vocab = Vocab.build(FORMULAS, min_freq=1)
    cfg = get_config("smoke", d_model=48, max_len=12)
    with pytest.raises(I2LError, match="d_model: 32 -> 48"):
        warm_start(Im2LatexModel(cfg, len(vocab)), cfg, vocab, str(source))
    cfg = get_config("smoke", num_layers=2, max_len=12)
    with pytest.raises(I2LError, match="num_layers"):
        warm_start(Im2LatexModel(cfg, len(vocab)), cfg, vocab, str(source))


def test_make_trainer_curriculum_val_interval_and_periodic_checkpoint(tmp_path):
    base = get_config("smoke", out_dir=str(tmp_path), run_name="t", accelerator="cpu", devices=1)
    plain = make_trainer(base, progress_bar=False)
    assert plain.reload_dataloaders_every_n_epochs == 0
    assert plain.check_val_every_n_epoch == 1 and plain.val_check_interval == 1.0
    assert not any(isinstance(c, PeriodicCheckpoint) for c in plain.callbacks)

    cfg = base.replace(curriculum=((0, 20), (1, 60)), val_check_interval=7, checkpoint_every_minutes=2.5)
    trainer = make_trainer(cfg, progress_bar=False)
    assert trainer.reload_dataloaders_every_n_epochs == 1
    assert trainer.val_check_interval == 7 and trainer.check_val_every_n_epoch is None
    periodic = [c for c in trainer.callbacks if isinstance(c, PeriodicCheckpoint)]
    assert len(periodic) == 1
    assert periodic[0].path == train_module.checkpoint_dir(cfg) / "last.ckpt" and periodic[0].seconds == 150.0


class Recorder(Callback):
    """What a run looked like from inside: the embedding at the start, each batch's formulas and last.ckpt."""

    def __init__(self, last: Path) -> None:
        self.last, self.batches, self.embedding = last, [], None

    def on_train_start(self, trainer, pl_module):
        self.embedding = pl_module.model.decoder.embedding.weight.detach().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches.append((trainer.current_epoch, list(batch["formulas"]), self.last.is_file()))


def test_fit_with_curriculum_warm_start_and_periodic_checkpoints(tiny_data, tmp_path, one_thread, capsys):
    source = make_checkpoint(tmp_path / "src.ckpt", formulas=FORMULAS, seed=2, max_len=12)
    old_model, old_vocab, _ = load_checkpoint(source)
    cfg = get_config("smoke", data_dir=str(tiny_data), out_dir=str(tmp_path / "runs"), run_name="ref",
                     max_epochs=2, accelerator="cpu", devices=1, max_len=20, val_decode_samples=2,
                     curriculum=((0, 3), (1, 20)), checkpoint_every_minutes=1e-4, init_from=str(source))
    last = train_module.checkpoint_dir(cfg) / "last.ckpt"
    recorder = Recorder(last)
    result = fit(cfg, progress_bar=False, extra_callbacks=[recorder])
    assert "warm start from" in capsys.readouterr().out
    origin = json.loads((cfg.run_dir / WARM_START_FILE).read_text())
    assert origin["from"] == str(source.resolve())
    assert origin["training"]["steps"] == read_checkpoint(source)["global_step"]
    assert origin["run_steps"] == read_checkpoint(source)["global_step"]  # where the branch left its run's log

    # the curriculum: epoch 0 sees only formulas of <= 3 tokens, epoch 1 (reloaded) all of them
    by_epoch = {e: [f for ep, fs, _ in recorder.batches if ep == e for f in fs] for e in (0, 1)}
    assert by_epoch[0] and all(len(f.split()) <= 3 for f in by_epoch[0])
    assert sorted(by_epoch[0]) == sorted(f for f in TRAIN_FORMULAS if len(f.split()) <= 3)
    assert sorted(by_epoch[1]) == sorted(TRAIN_FORMULAS)
    # the periodic checkpoint: last.ckpt exists before the first epoch's end (ModelCheckpoint writes it only then)
    first_epoch = [exists for ep, _, exists in recorder.batches if ep == 0]
    assert first_epoch[-1] and any(first_epoch)
    assert result.last_checkpoint == last and read_checkpoint(last)["global_step"] == result.global_step
    # what the model had before the warm start counts with it
    record = training_record(last)
    assert record["this_run"]["steps"] == result.global_step and record["warm_start_from"] == str(source.resolve())
    assert record["steps"] == result.global_step + origin["training"]["steps"]
    assert sorted(p.name for p in last.parent.glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]  # no last-v1.ckpt
    # the warm start: shared token rows came from the source at the start of training
    vocab = Vocab.from_dict(read_checkpoint(last)["hyper_parameters"]["vocab"])
    old_emb = old_model.decoder.embedding.weight
    shared = [t for t in vocab.itos if t in old_vocab.stoi]
    assert len(shared) > 4
    for t in shared:
        assert torch.equal(recorder.embedding[vocab.stoi[t]], old_emb[old_vocab.stoi[t]]), t


def _write_log(path: Path, steps: list[int], start_loss: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["epoch,step,train_loss"] + [f"0,{s},{start_loss + i}" for i, s in enumerate(steps)]
    path.write_text("\n".join(lines) + "\n")


def test_run_log_follows_resumes_and_branches(tmp_path):
    main = tmp_path / "runs" / "main"
    # stretch 1 logged steps 0-9 after its last checkpoint at 6; the resume logs 6-9 again, then on to 11
    _write_log(main / "metrics.csv", list(range(10)) + list(range(6, 12)), start_loss=100.0)
    rows = run_log(main / "checkpoints" / "last.ckpt")
    assert [int(r["step"]) for r in rows] == list(range(12))
    assert [float(r["train_loss"]) for r in rows[6:]] == [110.0 + i for i in range(6)]  # the resumed stretch's rows

    branch = tmp_path / "runs" / "cooldown"
    _write_log(branch / "metrics.csv", [0, 1, 2], start_loss=0.0)
    (branch / WARM_START_FILE).write_text(json.dumps(
        {"from": str(main / "checkpoints" / "last.ckpt"), "training": {"steps": 108}, "run_steps": 8}))
    out = write_run_log(branch / "checkpoints" / "last.ckpt", tmp_path / "log.csv")
    with open(out, newline="") as f:
        got = [(int(r["step"]), float(r["train_loss"])) for r in csv.DictReader(f)]
    assert got == [(s, 100.0 + s) for s in range(6)] + [(6, 110.0), (7, 111.0), (8, 0.0), (9, 1.0), (10, 2.0)]

    # an origin recorded without run_steps (older runs), or whose log is gone, leaves the branch's log alone
    (branch / WARM_START_FILE).write_text(json.dumps({"from": str(main / "checkpoints" / "last.ckpt")}))
    assert [int(r["step"]) for r in run_log(branch / "checkpoints" / "last.ckpt")] == [0, 1, 2]
    (branch / WARM_START_FILE).write_text(json.dumps({"from": str(tmp_path / "gone" / "checkpoints" / "x.ckpt"),
                                                      "run_steps": 8}))
    assert [int(r["step"]) for r in run_log(branch / "checkpoints" / "last.ckpt")] == [0, 1, 2]


def test_periodic_checkpoint_waits_for_its_interval(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(train_module.time, "monotonic", lambda: clock[0])
    saved = []
    trainer = SimpleNamespace(save_checkpoint=lambda path: saved.append(path),
                              strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj))
    cb = PeriodicCheckpoint(tmp_path / "last.ckpt", minutes=0.5)
    cb.on_train_start(trainer, None)
    for t in (110.0, 129.0, 131.0, 150.0, 162.0):
        clock[0] = t
        cb.on_train_batch_end(trainer, None, None, None, 0)
    assert saved == [str(tmp_path / "last.ckpt")] * 2  # at 131 s and 162 s: every 30 s of training
    cb.on_train_end(trainer, None)
    assert len(saved) == 3  # and once more at the end, whenever it comes


# ============================================================================ 7. CLI
def test_train_accepts_threads_and_init_from(monkeypatch, tmp_path, capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--preset", "smoke", "--threads", "3", "--init-from", "pretrained"])
    assert args.threads == 3 and args.init_from == "pretrained"
    assert cli._train_config(args).init_from == "pretrained"
    args = parser.parse_args(["train", "--preset", "smoke", "--init-from", str(tmp_path / "a.ckpt")])
    assert args.threads is None and cli._train_config(args).init_from == str(tmp_path / "a.ckpt")
    assert cli._train_config(parser.parse_args(["train", "--preset", "smoke"])).init_from is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--threads", "many"])
    capsys.readouterr()

    seen = {}

    def fake_threads(threads=None, verbose=True):
        seen["threads"] = threads
        return threads or 1

    def fake_fit(cfg, resume=False):
        seen["cfg"] = cfg
        return SimpleNamespace(best_checkpoint=None, last_checkpoint=None, metrics_csv=tmp_path / "m.csv")

    monkeypatch.setattr(train_module, "pick_cpu_threads", fake_threads)
    monkeypatch.setattr(train_module, "fit", fake_fit)
    assert cli.main(["train", "--preset", "smoke", "--threads", "2", "--init-from", "x.ckpt",
                     "--out-dir", str(tmp_path)]) == 0
    assert seen["threads"] == 2 and seen["cfg"].init_from == "x.ckpt"


def test_warm_start_origin_of_the_shipped_model_is_its_card():
    from i2l.pretrained import card

    origin = warm_start_origin("pretrained")
    assert origin == {"from": card()["name"], "training": card()["training"]}
