"""Dataset, collate, a bucketing batch sampler and the LightningDataModule for the processed (or raw) layout.

An image tensor is float32 ``(1, H, W)`` with values pixel/255: 1.0 is the white background, ink is dark.
Batches are padded with white to a multiple of 16 (:func:`i2l.images.pad_images`) and grouped by image size
so that padding stays small.
Everything here is importable and picklable, so DataLoader worker processes can use it.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as v2
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from i2l.config import Config
from i2l.data.im2latex import LoadReport, Sample, find_layout, load_split_report, read_formulas, sample_image
from i2l.errors import I2LError
from i2l.images import pad_images, padded_side
from i2l.tokenizer import Vocab

log = logging.getLogger(__name__)


# ============================================================================ transforms
class RandomScale(torch.nn.Module):
    """Resize a ``(1, H, W)`` image by a random factor in ``[low, high]`` (scale jitter, aspect kept)."""

    def __init__(self, low: float = 0.85, high: float = 1.1, min_size: int = 8) -> None:
        super().__init__()
        self.low, self.high, self.min_size = low, high, min_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        factor = self.low + (self.high - self.low) * float(torch.rand(()))
        h, w = images.shape[-2:]
        size = [max(self.min_size, round(h * factor)), max(self.min_size, round(w * factor))]
        return v2.functional.resize(images, size, antialias=True).clamp_(0.0, 1.0)


class RandomStroke(torch.nn.Module):
    """Bolder or thinner strokes: the image blended with its 3x3 minimum (ink spreads) or maximum (ink shrinks)
    by a random weight up to ``amount``, as other fonts, renderers and scanners draw a formula."""

    def __init__(self, amount: float = 0.6) -> None:
        super().__init__()
        self.amount = amount

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        weight = self.amount * float(torch.rand(()))
        x = images.unsqueeze(0) if images.dim() == 3 else images
        if float(torch.rand(())) < 0.5:
            pooled = -F.max_pool2d(-x, 3, stride=1, padding=1)  # bolder: the darkest neighbour
        else:
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)  # thinner: the lightest neighbour
        out = torch.lerp(x, pooled, weight)
        return out.squeeze(0) if images.dim() == 3 else out


class RandomPaper(torch.nn.Module):
    """Off-white paper and grey ink: pixel values mapped from [0, 1] to [ink, paper], each drawn at random."""

    def __init__(self, paper: tuple[float, float] = (0.82, 1.0), ink: tuple[float, float] = (0.0, 0.3)) -> None:
        super().__init__()
        self.paper, self.ink = paper, ink

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hi = self.paper[0] + (self.paper[1] - self.paper[0]) * float(torch.rand(()))
        lo = self.ink[0] + (self.ink[1] - self.ink[0]) * float(torch.rand(()))
        return (lo + (hi - lo) * images).clamp_(0.0, 1.0)


class RandomJPEG(torch.nn.Module):
    """JPEG compression at a random quality in ``quality`` (:class:`torchvision.transforms.v2.JPEG` on the
    8-bit image), for photographed and re-encoded screenshots."""

    def __init__(self, quality: tuple[int, int] = (30, 95)) -> None:
        super().__init__()
        self.jpeg = v2.JPEG(quality=quality)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        eight_bit = (images.clamp(0.0, 1.0) * 255).round().to(torch.uint8)
        return self.jpeg(eight_bit).to(torch.float32) / 255


def eval_transform() -> v2.Compose:
    """Deterministic: PIL 'L' image -> float tensor (1, H, W) in [0, 1], white = 1.0."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def train_transform() -> v2.Compose:
    """Augmentation for real inputs: scale jitter (the spread of :func:`i2l.preprocess.stroke_width`'s scale
    estimate), a small affine with sub-pixel shifts (white fill), bolder and thinner strokes, blur, off-white
    paper, noise and JPEG; the values stay in [0, 1] with white = 1.0 as in :func:`eval_transform`."""
    return v2.Compose([
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomApply([RandomScale(0.85, 1.15)], p=0.5),
        v2.RandomApply([v2.RandomAffine(degrees=1.5, translate=(0.02, 0.04), scale=(0.95, 1.02),
                                        shear=(-4.0, 4.0), fill=1.0)], p=0.5),
        v2.RandomApply([RandomStroke(0.6)], p=0.3),
        v2.RandomApply([v2.GaussianBlur(kernel_size=3, sigma=(0.1, 0.7))], p=0.3),
        v2.RandomApply([RandomPaper()], p=0.2),
        v2.RandomApply([v2.GaussianNoise(mean=0.0, sigma=0.03, clip=True)], p=0.3),
        v2.RandomApply([RandomJPEG()], p=0.2),
    ])


# ============================================================================ dataset
class Im2LatexDataset(Dataset):
    """Samples as dicts: ``image`` (1, H, W) float (white = 1.0), ``tokens`` [BOS] + ids + [EOS], ``formula``, ``name``.

    An unreadable image is logged with its file name, counted in ``bad_images``, and replaced by the next
    readable sample so that one broken file does not stop a training run.
    """

    def __init__(self, samples: Sequence[Sample], vocab: Vocab, transform=None, split: str = "") -> None:
        self.samples = list(samples)
        self.vocab = vocab
        self.split = split
        self.transform = transform if transform is not None else eval_transform()
        self.token_ids = [vocab.encode(s.tokens) for s in self.samples]
        self.bad_images: set[str] = set()
        self._sizes: list[tuple[int, int]] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> dict:
        for attempt in range(len(self.samples)):
            i = (idx + attempt) % len(self.samples)
            sample = self.samples[i]
            try:
                img = sample_image(sample)
            except I2LError as exc:
                if str(sample.image_path) not in self.bad_images:  # shards repeat file names
                    self.bad_images.add(str(sample.image_path))
                    log.warning("%s; using the next sample instead", exc)
                continue
            return {
                "image": self.transform(img),  # (1, H, W)
                "tokens": torch.tensor(self.token_ids[i], dtype=torch.long),  # (T,)
                "formula": " ".join(sample.tokens),
                "name": sample.name,
            }
        raise I2LError(f"no readable image in the {self.split or 'dataset'} split ({len(self.samples)} samples)")

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(H, W) of every image (read from the PNG headers; raw pages are processed once)."""
        if self._sizes is None:
            sizes = []
            for s in self.samples:
                try:
                    if s.layout == "raw":
                        w, h = sample_image(s).size
                    else:
                        with Image.open(s.image_path) as img:
                            w, h = img.size
                except (OSError, I2LError):
                    w = h = 0
                sizes.append((h, w))
            self._sizes = sizes
        return self._sizes

    @property
    def bucket_keys(self) -> list:
        """Batch-grouping key per sample: the image size; for raw pages (size unknown until processed), the
        formula length in steps of 10 tokens, which tracks the image width."""
        if self.samples and all(s.layout == "raw" for s in self.samples) and self._sizes is None:
            return [len(t) // 10 for t in self.token_ids]
        return list(self.sizes)

    def unknown_report(self, max_examples: int = 5, formulas_file: str = "formula list") -> dict:
        """Tokens outside the vocabulary: total count and examples naming the formula list and line."""
        total, examples = 0, []
        for s in self.samples:
            missing = self.vocab.unknown_tokens(s.tokens)
            total += len(missing)
            if missing and len(examples) < max_examples:
                examples.append(f"{formulas_file} line {s.index + 1} ({s.name}): {sorted(set(missing))[:5]}")
        n_tokens = sum(len(t) - 2 for t in self.token_ids)
        return {"unknown_tokens": total, "tokens": n_tokens, "unknown_rate": total / max(n_tokens, 1),
                "examples": examples}


# ============================================================================ batches
def collate(batch: list[dict], pad_id: int = Vocab.pad_id) -> dict:
    """Stack samples: white-padded ``images`` (B,1,H,W) (H, W multiples of 16), PAD-padded ``tokens`` (B,T).

    Also ``sizes`` (B,2) the (H, W) of each image before padding, ``formulas`` and ``names``.
    """
    images, sizes = pad_images([b["image"] for b in batch])
    T = max(len(b["tokens"]) for b in batch)
    tokens = torch.stack([F.pad(b["tokens"], (0, T - len(b["tokens"])), value=pad_id) for b in batch])  # (B, T)
    return {
        "images": images,
        "tokens": tokens,
        "sizes": sizes,
        "formulas": [b["formula"] for b in batch],
        "names": [b["name"] for b in batch],
    }


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose images share a size key, so batches need little padding.

    With ``shuffle`` the groups and the batch order are shuffled anew each epoch, deterministically from
    ``seed`` and the epoch (``set_epoch``, called by Lightning; else incremented after each pass). Without
    it, batches come in key order (evaluation). ``indices`` restricts the batches to those samples (a curriculum). Under ``torch.distributed`` each rank takes every
    ``num_replicas``-th batch (use ``Trainer(use_distributed_sampler=False)``): when shuffling, the batches
    that do not divide evenly are left out so that all ranks step together; for evaluation none is left out.
    """

    def __init__(self, keys: Sequence, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, num_replicas: int | None = None, rank: int | None = None,
                 indices: Sequence[int] | None = None) -> None:
        if batch_size < 1:
            raise I2LError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(keys, Sampler):
            raise I2LError("BucketBatchSampler takes one size key per sample and shards itself across processes; "
                           "create the Trainer with use_distributed_sampler=False")
        self.keys = list(keys)
        self.indices = list(range(len(self.keys))) if indices is None else list(indices)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.num_replicas = num_replicas or (torch.distributed.get_world_size() if dist else 1)
        self.rank = rank if rank is not None else (torch.distributed.get_rank() if dist else 0)
        self.epoch = 0
        self._epoch_set = False

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle of ``epoch`` for the next pass."""
        self.epoch, self._epoch_set = epoch, True

    def _batches(self) -> list[list[int]]:
        groups: dict = defaultdict(list)
        for i in self.indices:
            groups[self.keys[i]].append(i)
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        batches = []
        for key in sorted(groups):
            idx = groups[key]
            if self.shuffle:
                rng.shuffle(idx)
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start: start + self.batch_size]
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append(chunk)
        if self.shuffle:
            rng.shuffle(batches)
        if self.num_replicas > 1 and self.shuffle:  # training: the same number of batches on every rank
            per_rank = len(batches) // self.num_replicas
            batches = batches[self.rank: per_rank * self.num_replicas: self.num_replicas]
        elif self.num_replicas > 1:  # evaluation: every batch, round robin (ranks may differ by one batch)
            batches = batches[self.rank:: self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        if not self._epoch_set:
            self.epoch += 1
        self._epoch_set = False
        return iter(batches)

    def __len__(self) -> int:
        return len(self._batches())


def padding_fraction(batches: Sequence[Sequence[int]], sizes: Sequence[tuple[int, int]]) -> float:
    """Share of padded (white filler) pixels in ``batches`` of images of ``sizes`` (H, W)."""
    used = total = 0
    for batch in batches:
        H = padded_side(max(sizes[i][0] for i in batch))
        W = padded_side(max(sizes[i][1] for i in batch))
        total += H * W * len(batch)
        used += sum(sizes[i][0] * sizes[i][1] for i in batch)
    return 1.0 - used / max(total, 1)


# ============================================================================ DataModule
def vocabulary(cfg: Config, formulas) -> Vocab:
    """The vocabulary of a run: ``cfg.vocab == "grammar"``: every token of :func:`i2l.data.grammar.grammar_tokens`
    (fixed, whatever data a resumed run sees); ``"data"``: the tokens of ``formulas`` seen ``cfg.min_freq`` times."""
    if cfg.vocab == "grammar":
        from i2l.data.grammar import grammar_tokens

        return Vocab(grammar_tokens(), min_freq=1)
    if cfg.vocab != "data":
        raise I2LError(f"unknown vocab {cfg.vocab!r} in the config: use 'data' or 'grammar'")
    return Vocab.build(formulas, min_freq=cfg.min_freq)


class Im2LatexDataModule(L.LightningDataModule):
    """Train/validate/test loaders of a dataset folder (processed layout, official or synthetic; raw works too).

    ``setup()`` reads the splits (skipping unusable lines with a logged reason), drops training and
    validation formulas longer than ``cfg.max_len`` tokens (the test split stays complete), applies
    ``cfg.limit_*``, and builds the vocabulary from the training formulas unless one is given.
    """

    def __init__(self, cfg: Config, vocab: Vocab | None = None, data_dir: str | Path | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab = vocab
        self.data_dir = cfg.resolve(data_dir) if data_dir is not None else cfg.data_path
        self.train_set: Im2LatexDataset | None = None
        self.val_set: Im2LatexDataset | None = None
        self.test_set: Im2LatexDataset | None = None
        self.reports: dict[str, LoadReport] = {}
        self.filtered: dict[str, int] = {}

    def prepare_data(self) -> None:
        """Generate the synthetic set when ``data_dir`` is the config's missing synthetic folder."""
        if self.data_dir == self.cfg.data_path and not self.data_dir.exists():
            try:
                from i2l.data.synth import ensure_dataset
            except ImportError:
                return
            ensure_dataset(self.cfg)

    def _load(self, folder: Path, split: str, formulas: list[str]) -> list[Sample]:
        samples, report = load_split_report(folder, split, formulas=formulas)
        if split in self.reports:
            self.reports[split].merge(report)
        else:
            self.reports[split] = report
        if report.skipped:
            log.warning(report.summary())
        return samples

    def _filter(self, split: str, samples: list[Sample], limit: int | None) -> list[Sample]:
        kept = [s for s in samples if len(s.tokens) <= self.cfg.max_len]
        self.filtered[split] = len(samples) - len(kept)
        if self.filtered[split]:
            log.info("%s: %d formulas longer than max_len=%d tokens left out", split, self.filtered[split],
                     self.cfg.max_len)
        return kept[:limit] if limit is not None else kept

    def setup(self, stage: str | None = None) -> None:
        """Read the splits (of every shard), filter, build the vocabulary and the datasets (once)."""
        if self.train_set is not None:
            return
        if self.trainer is None:  # used on its own; under a Trainer, Lightning calls prepare_data itself
            self.prepare_data()
        from i2l.data.synth import shard_dirs

        cfg = self.cfg
        found: dict[str, list[Sample]] = {"train": [], "validate": [], "test": []}
        names = None
        for folder in shard_dirs(self.data_dir) or [self.data_dir]:
            layout = find_layout(folder)
            names = names or layout.formulas.name
            formulas = read_formulas(layout.formulas)
            found["train"] += self._load(folder, "train", formulas)
            found["validate"] += self._load(folder, "validate", formulas)
            if layout.split_file("test").is_file():
                found["test"] += self._load(folder, "test", formulas)  # unfiltered: evaluation sees every test image
        train = self._filter("train", found["train"], cfg.limit_train)
        val = self._filter("validate", found["validate"], cfg.limit_val)
        if not train:
            raise I2LError(f"{self.data_dir}: no training samples left (see the warnings above)")
        test = found["test"][: cfg.limit_test] if cfg.limit_test is not None else found["test"]
        if self.vocab is None:
            self.vocab = vocabulary(cfg, (s.tokens for s in train))
        augment = train_transform() if cfg.augment else eval_transform()
        self.train_set = Im2LatexDataset(train, self.vocab, augment, split="train")
        self.val_set = Im2LatexDataset(val, self.vocab, eval_transform(), split="validate")
        self.test_set = Im2LatexDataset(test, self.vocab, eval_transform(), split="test") if test else None
        for ds in (self.val_set, self.test_set):
            if ds is not None and len(ds):
                rep = ds.unknown_report(formulas_file=names)
                if rep["unknown_tokens"]:
                    log.warning("%s: %d of %d tokens (%.2f%%) are outside the vocabulary, e.g. %s", ds.split,
                                rep["unknown_tokens"], rep["tokens"], 100 * rep["unknown_rate"],
                                "; ".join(rep["examples"][:3]))

    def _loader(self, ds: Im2LatexDataset | None, split: str, batch_size: int, shuffle: bool,
                indices: Sequence[int] | None = None) -> DataLoader:
        if ds is None:
            if self.train_set is None:
                raise I2LError("call setup() before asking for a dataloader")
            raise I2LError(f"{self.data_dir}: no {split} split in this dataset folder")
        sampler = BucketBatchSampler(ds.bucket_keys, batch_size, shuffle=shuffle, seed=self.cfg.seed,
                                     indices=indices)
        workers = self.cfg.num_workers
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                          pin_memory=self.cfg.pin_memory, persistent_workers=workers > 0,
                          generator=torch.Generator().manual_seed(self.cfg.seed))

    def curriculum_indices(self, epoch: int) -> list[int] | None:
        """The training samples of ``epoch`` under ``cfg.curriculum`` (formulas of at most
        :meth:`Config.max_len_at` tokens); None when every sample is used."""
        if self.train_set is None:
            raise I2LError("call setup() before asking for a dataloader")
        cap = self.cfg.max_len_at(epoch)
        if cap >= self.cfg.max_len:
            return None
        kept = [i for i, ids in enumerate(self.train_set.token_ids) if len(ids) - 2 <= cap]
        if not kept:
            raise I2LError(f"the curriculum's stage of epoch {epoch} (at most {cap} tokens) leaves no training "
                           "formula: start the curriculum at a longer length")
        return kept

    def train_dataloader(self) -> DataLoader:
        """Shuffled size-bucketed batches of ``cfg.batch_size`` with augmentation (when ``cfg.augment``); with a
        curriculum, only the formulas of the current epoch's length (the Trainer reloads it every epoch)."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        indices = self.curriculum_indices(epoch) if self.cfg.curriculum else None
        return self._loader(self.train_set, "train", self.cfg.batch_size, shuffle=True, indices=indices)

    def val_dataloader(self) -> DataLoader:
        """Deterministic size-bucketed batches of ``cfg.eval_batch_size``."""
        return self._loader(self.val_set, "validate", self.cfg.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Every test image (no length filter), deterministic batches of ``cfg.eval_batch_size``."""
        return self._loader(self.test_set, "test", self.cfg.eval_batch_size, shuffle=False)


__all__ = [
    "Im2LatexDataset", "Im2LatexDataModule", "BucketBatchSampler", "collate", "eval_transform",
    "train_transform", "RandomScale", "RandomStroke", "RandomPaper", "RandomJPEG", "padding_fraction", "vocabulary",
]
