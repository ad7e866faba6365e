"""Tests of i2l.data.dataset: tensors and white padding, bucketing, augmentation, DataModule filters and limits."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2 as v2
from PIL import Image, ImageDraw

from i2l.config import get_config
from i2l.data.dataset import (
    BucketBatchSampler,
    Im2LatexDataModule,
    Im2LatexDataset,
    collate,
    eval_transform,
    padding_fraction,
    train_transform,
)
from i2l.data.im2latex import load_split
from i2l.errors import I2LError
from i2l.tokenizer import Vocab

SIZES = [(40, 200), (50, 320), (40, 160), (100, 500), (50, 200)]  # (H, W), like the processed buckets


def make_dataset(root: Path, n: int = 30, long_every: int = 0) -> Path:
    """A processed-layout folder with n formulas per split; every ``long_every``-th formula is 200 tokens."""
    (root / "images_processed").mkdir(parents=True)
    formulas, lines = [], {"train": [], "validate": [], "test": []}
    for k in range(3 * n):
        split = ("train", "validate", "test")[k // n]
        tokens = ["x", "_", "{", str(k % 10), "}", "+", "y"]
        if long_every and k % long_every == 0:
            tokens = tokens + ["z"] * 200
        formulas.append(" ".join(tokens))
        h, w = SIZES[k % len(SIZES)]
        img = Image.new("RGB", (w, h), "white")
        ImageDraw.Draw(img).rectangle((4, 4, w // 2, h // 2), fill="black")
        img.save(root / "images_processed" / f"i{k}.png")
        lines[split].append(f"i{k}.png {k}")
    (root / "formulas.norm.lst").write_text("\n".join(formulas) + "\n")
    for split, ls in lines.items():
        (root / f"{split}_filter.lst").write_text("\n".join(ls) + "\n")
    return root


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    return make_dataset(tmp_path / "ds", long_every=7)


def test_item_is_a_white_background_tensor(data_dir):
    samples = load_split(data_dir, "train")
    ds = Im2LatexDataset(samples, Vocab.build(s.tokens for s in samples))
    item = ds[0]
    image = item["image"]
    assert image.dtype == torch.float32 and image.shape == (1, 40, 200)
    assert image.max() == 1.0 and image.min() == 0.0 and image[0, -1, -1] == 1.0  # white = 1.0, ink dark
    assert item["tokens"][0] == 1 and item["tokens"][-1] == 2
    assert item["formula"] == samples[0].formula and item["name"] == "i0.png"
    assert ds.sizes[:3] == [(40, 200), (50, 320), (40, 160)]
    assert torch.equal(ds[0]["image"], ds[0]["image"])  # evaluation transform is deterministic
    assert pickle.loads(pickle.dumps(ds))[1]["name"] == "i1.png"  # picklable for worker processes


def test_collate_pads_white_to_multiples_of_16():
    items = [
        {"image": torch.zeros(1, 20, 30), "tokens": torch.tensor([1, 5, 2]), "formula": "a", "name": "a.png"},
        {"image": torch.zeros(1, 40, 50), "tokens": torch.tensor([1, 5, 6, 7, 2]), "formula": "b c d",
         "name": "b.png"},
    ]
    batch = collate(items)
    images = batch["images"]
    assert images.shape == (2, 1, 48, 64)
    assert images[0, 0, :20, :30].eq(0).all() and images[0, 0, 20:].eq(1).all() and images[0, 0, :, 30:].eq(1).all()
    assert images[1, 0, :40, :50].eq(0).all() and images[1, 0, 40:].eq(1).all()
    assert batch["sizes"].tolist() == [[20, 30], [40, 50]]
    assert batch["tokens"].tolist() == [[1, 5, 2, 0, 0], [1, 5, 6, 7, 2]]
    assert batch["formulas"] == ["a", "b c d"] and batch["names"] == ["a.png", "b.png"]


def test_bucket_sampler_groups_sizes_and_is_deterministic():
    keys = [SIZES[i % 5] for i in range(103)]
    sampler = BucketBatchSampler(keys, batch_size=4, seed=3)
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(103))
    assert all(len({keys[i] for i in b}) == 1 for b in epoch0)
    assert all(len(b) <= 4 for b in epoch0) and len(sampler) == len(epoch0)
    again = BucketBatchSampler(keys, batch_size=4, seed=3)
    again.set_epoch(0)
    assert list(again) == epoch0
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    auto = BucketBatchSampler(keys, batch_size=4, seed=3)
    assert list(auto) != list(auto)  # without set_epoch each pass reshuffles
    fixed = BucketBatchSampler(keys, batch_size=4, shuffle=False)
    assert list(fixed) == list(fixed)
    assert all(len(b) == 4 for b in BucketBatchSampler(keys, batch_size=4, drop_last=True))


def test_bucket_sampler_splits_across_ranks():
    keys = [SIZES[i % 5] for i in range(100)]
    parts = [list(BucketBatchSampler(keys, 4, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) > 0
    assert not {i for b in parts[0] for i in b} & {i for b in parts[1] for i in b}
    evals = [list(BucketBatchSampler(keys, 8, shuffle=False, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(i for part in evals for b in part for i in b) == list(range(100))  # evaluation loses nothing
    with pytest.raises(I2LError, match="use_distributed_sampler=False"):
        BucketBatchSampler(torch.utils.data.SequentialSampler(range(10)), 4)


def test_bucketing_cuts_padding():
    sizes = [SIZES[i % 5] for i in range(200)]
    bucketed = list(BucketBatchSampler(sizes, batch_size=8, seed=0))
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(200, generator=generator).tolist()
    random_batches = [order[k: k + 8] for k in range(0, 200, 8)]
    assert padding_fraction(bucketed, sizes) < 0.5 * padding_fraction(random_batches, sizes)


def test_train_augmentation_keeps_white_background():
    img = Image.new("L", (200, 40), 255)
    ImageDraw.Draw(img).rectangle((20, 10, 120, 30), fill=0)
    affine = next(t for r in train_transform().transforms if isinstance(r, v2.RandomApply)
                  for t in r.transforms if isinstance(t, v2.RandomAffine))
    white = torch.ones(1, 40, 200)
    torch.manual_seed(0)
    assert all(affine(white).eq(1.0).all() for _ in range(5))  # fill is white, never black
    torch.manual_seed(0)
    outs = [train_transform()(img) for _ in range(8)]
    assert all(o.dtype == torch.float32 and o.shape[0] == 1 and 0 <= o.min() and o.max() <= 1 for o in outs)
    # the top row stays paper: white, or off-white where RandomPaper drew a paper level (at least 0.82)
    assert all(o[0, 0, :].mean() > 0.8 for o in outs)
    base = eval_transform()(img)
    assert any(o.shape != base.shape or not torch.equal(o, base) for o in outs)


def test_datamodule_filters_limits_and_batches(data_dir):
    cfg = get_config("smoke", max_len=60, batch_size=4, eval_batch_size=8, limit_val=None, limit_test=None,
                     augment=False)
    dm = Im2LatexDataModule(cfg, data_dir=data_dir)
    dm.setup()
    long_train = sum(1 for k in range(30) if k % 7 == 0)
    assert len(dm.train_set) == 30 - long_train and dm.filtered["train"] == long_train
    assert all(len(s.tokens) <= 60 for s in dm.train_set.samples + dm.val_set.samples)
    assert len(dm.test_set) == 30  # the test split is never length-filtered
    assert "z" not in dm.vocab  # built from the (filtered) training formulas, min_freq 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[0] <= 4 and batch["images"].shape[-1] % 16 == 0
    assert len({tuple(s) for s in batch["sizes"].tolist()}) == 1  # one size per batch
    names = [b["names"] for b in dm.train_dataloader()]
    dm2 = Im2LatexDataModule(cfg, data_dir=data_dir)
    dm2.setup()
    assert [b["names"] for b in dm2.train_dataloader()] == names  # same seed, same batches
    assert sum(len(b["names"]) for b in dm.test_dataloader()) == 30

    limited = Im2LatexDataModule(cfg.replace(limit_train=5, limit_val=3, limit_test=2), vocab=dm.vocab,
                                 data_dir=data_dir)
    limited.setup()
    assert (len(limited.train_set), len(limited.val_set), len(limited.test_set)) == (5, 3, 2)
    assert limited.vocab is dm.vocab


def test_datamodule_worker_processes(data_dir):
    cfg = get_config("smoke", batch_size=4, num_workers=1, augment=True, limit_val=None)
    dm = Im2LatexDataModule(cfg, data_dir=data_dir)
    dm.setup()
    total = sum(len(b["names"]) for b in dm.train_dataloader())
    assert total == len(dm.train_set)


def test_unreadable_image_is_skipped_with_a_warning(data_dir, caplog):
    (data_dir / "images_processed" / "i1.png").write_bytes(b"\x89PNG broken")
    samples = load_split(data_dir, "train")
    ds = Im2LatexDataset(samples, Vocab.build(s.tokens for s in samples))
    with caplog.at_level(logging.WARNING):
        item = ds[1]
    assert item["name"] == "i2.png" and ds.bad_images == {str(data_dir / "images_processed" / "i1.png")}
    assert "i1.png" in caplog.text and "unreadable" in caplog.text


def test_unknown_tokens_are_reported(data_dir, caplog):
    cfg = get_config("smoke", max_len=300, limit_val=None)
    vocab = Vocab.build(["x _ { 1 } + y"] * 2)
    with caplog.at_level(logging.WARNING):
        dm = Im2LatexDataModule(cfg, vocab=vocab, data_dir=data_dir)
        dm.setup()
    report = dm.val_set.unknown_report()
    assert report["unknown_tokens"] > 0 and "line 31" in report["examples"][0]
    assert "outside the vocabulary" in caplog.text and "formulas.norm.lst line 31 (i30.png)" in caplog.text


def test_missing_test_split_is_a_clear_error(data_dir):
    (data_dir / "test_filter.lst").unlink()
    dm = Im2LatexDataModule(get_config("smoke"), data_dir=data_dir)
    dm.setup()
    with pytest.raises(I2LError, match="no test split"):
        dm.test_dataloader()


# ---------------------------------------------------------------------------------------------- real data
def test_datamodule_on_real_sample(shared_data):
    root = shared_data / "im2latex" / "sample" / "processed"
    cfg = get_config("smoke", max_len=150, batch_size=8, limit_val=None)
    dm = Im2LatexDataModule(cfg, data_dir=root)
    dm.setup()
    assert len(dm.train_set) == 897 and len(dm.val_set) == 85 and dm.test_set is None
    assert 200 < len(dm.vocab) < 1000
    batch = next(iter(dm.train_dataloader()))
    H, W = batch["sizes"][0].tolist()
    assert (W, H) in {(200, 40), (320, 40), (280, 50), (400, 50), (500, 100), (120, 50), (160, 40), (200, 50),
                      (240, 40), (240, 50), (280, 40), (320, 50), (360, 40), (360, 50), (360, 60), (360, 100),
                      (400, 160)}
    assert batch["images"][:, :, H:, :].eq(1.0).all() and batch["images"][:, :, :, W:].eq(1.0).all()
    sizes = dm.train_set.sizes
    assert padding_fraction(list(dm.train_dataloader().batch_sampler), sizes) < 0.25


def test_raw_sample_gives_the_same_tensors(shared_data):
    sample = shared_data / "im2latex" / "sample"
    processed = load_split(sample / "processed", "validate")[:3]
    by_name = {s.name: s for s in load_split(sample / "raw", "validate")}
    raw = [by_name[s.name] for s in processed]
    vocab = Vocab.build([])
    a, b = Im2LatexDataset(processed, vocab), Im2LatexDataset(raw, vocab)
    assert a.bucket_keys == a.sizes and b.bucket_keys == [len(t) // 10 for t in b.token_ids]  # no page processing
    for i in range(3):
        assert a[i]["image"].shape == b[i]["image"].shape
        assert (a[i]["image"] - b[i]["image"]).abs().max() <= 1 / 255 + 1e-6


def test_datamodule_reads_the_raw_layout(shared_data):
    cfg = get_config("smoke", max_len=150, batch_size=4, limit_train=12, limit_val=4)
    dm = Im2LatexDataModule(cfg, data_dir=shared_data / "im2latex" / "sample" / "raw")
    dm.setup()
    assert len(dm.train_set) == 12 and dm.train_set.samples[0].layout == "raw"
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[-1] % 16 == 0 and batch["images"].shape[-1] <= 512  # processed pages, not A4
    assert batch["tokens"][:, 0].eq(1).all()
