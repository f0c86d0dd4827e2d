"""Training items from prepared data: random crops, length buckets, padded batches.

The records themselves (TrainingItem, TrainingBatch) and `collate` live in diffsvc.data.batch."""

from __future__ import annotations

import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from diffsvc.data.batch import TrainingBatch, TrainingItem, collate
from diffsvc.data.prepared import Piece, PreparedData
from diffsvc.features.align import align_content_to_mel
from diffsvc.features.pitch import norm_interp_f0


def make_item(mel: np.ndarray, f0_hz: np.ndarray, units: np.ndarray, *, crop_frames: int = 0,
              rng: random.Random | None = None, max_frames: int = 42000,
              max_input_tokens: int = 60000) -> TrainingItem:
    """One training item: mel [T,M], log2 f0 with gaps interpolated [T], units [Th,256] and
    mel2ph [T] (1-based into units); the unvoiced flags are not kept (nothing reads them). Long items are cropped at random to crop_frames (ours),
    keeping just the content frames the crop reads.

    The original's limits: mel[:max_frames] and units[:max_input_tokens]. It cut the units
    without cutting the mel frames that read them (an index error for such an item); here the
    mel frames past the last kept unit go too, so the item stays consistent."""
    t = min(len(mel), len(f0_hz), max_frames)
    mel2ph = align_content_to_mel(len(units), t)
    if len(units) > max_input_tokens:
        units = units[:max_input_tokens]
        t = int(np.searchsorted(mel2ph, max_input_tokens, side="right"))  # mel2ph never decreases
        mel2ph = mel2ph[:t]
    mel, f0_hz = mel[:t], f0_hz[:t]
    if crop_frames and t > crop_frames:
        start = (rng or random).randrange(0, t - crop_frames + 1)
        mel = mel[start:start + crop_frames]
        f0_hz = f0_hz[start:start + crop_frames]
        mel2ph = mel2ph[start:start + crop_frames]
        first = int(mel2ph[mel2ph > 0].min()) if (mel2ph > 0).any() else 1
        last = int(mel2ph.max())
        units = units[first - 1:last]
        mel2ph = np.where(mel2ph > 0, mel2ph - first + 1, 0)
    f0_log2, _uv = norm_interp_f0(f0_hz)
    return TrainingItem(mel=torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)), f0=f0_log2,
                        units=torch.from_numpy(np.ascontiguousarray(units, dtype=np.float32)),
                        mel2ph=torch.from_numpy(mel2ph.astype(np.int64)))


class PieceDataset(Dataset):
    """Items of one split. crop_frames > 0 crops long pieces at random (seeded per epoch).
    speakers: the model's singer table; each item's `speaker` is its singer's row ([]: None)."""

    def __init__(self, data: PreparedData, split: str = "train", crop_frames: int = 0, seed: int = 1234,
                 max_frames: int = 42000, max_input_tokens: int = 60000, speakers: list[str] | None = None):
        self.data = data
        self.speakers = list(speakers or [])
        self.max_input_tokens = max_input_tokens
        self.pieces: list[Piece] = data.pieces(split)
        self.crop_frames = crop_frames
        self.seed = seed
        self.epoch = 0
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.pieces)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frames(self, index: int) -> int:
        n = min(self.pieces[index].frames, self.max_frames)
        return min(n, self.crop_frames) if self.crop_frames else n

    def __getitem__(self, index: int) -> TrainingItem:
        """The item at `index` for the current epoch (its crop depends on seed, epoch and index)."""
        arrays = self.data.load(self.pieces[index])
        rng = random.Random(hash((self.seed, self.epoch, index)) & 0xFFFFFFFF)
        item = make_item(arrays["mel"], arrays["f0"], arrays["units"], crop_frames=self.crop_frames, rng=rng,
                         max_frames=self.max_frames, max_input_tokens=self.max_input_tokens)
        item.index, item.epoch = index, self.epoch
        item.speaker = self.speaker(index)
        return item

    def singer(self, index: int) -> str | None:
        """The singer's name of item `index` (None for a one-singer dataset)."""
        return self.data.manifest.speaker_of(self.pieces[index]) if self.speakers else None

    def speaker(self, index: int) -> int | None:
        """The singer table row of item `index` (None for a one-singer model)."""
        from diffsvc.model.speakers import row_of

        return row_of(self.singer(index), self.speakers) if self.speakers else None


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of items of similar length, so little of each batch is padding.

    Items are sorted by length (with a random tie-break per epoch), cut into batches that hold at
    most `max_sentences` items and `max_tokens` padded frames, and the batches are shuffled per
    epoch (the original shuffled once and repeated the same order every epoch). With several
    processes each takes every world_size-th batch.
    """

    def __init__(self, lengths: list[int], max_tokens: int, max_sentences: int, *, shuffle: bool = True,
                 seed: int = 1234, rank: int = 0, world_size: int = 1):
        self.lengths = list(lengths)
        self.max_tokens = max_tokens
        self.max_sentences = max_sentences
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        order.sort(key=lambda i: self.lengths[i])  # stable: the shuffle breaks ties
        batches, current, longest = [], [], 0
        for i in order:
            n = self.lengths[i]
            if current and (len(current) + 1 > self.max_sentences or (len(current) + 1) * max(longest, n) > self.max_tokens):
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, n)
        if current:
            batches.append(current)
        if self.shuffle:
            rng.shuffle(batches)
        if self.world_size > 1:
            # Every rank gets the same number of batches (DDP steps in lockstep).
            usable = len(batches) - len(batches) % self.world_size or len(batches)
            batches = batches[:usable]
            batches = [batches[i] for i in range(self.rank, len(batches), self.world_size)] or batches[:1]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def padding_fraction(lengths: list[int], batches: list[list[int]]) -> float:
    """Share of padded frames in a set of batches (what bucketing minimises)."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / padded if padded else 0.0


__all__ = ["TrainingBatch", "TrainingItem", "collate", "make_item", "PieceDataset", "LengthBucketSampler",
           "padding_fraction"]
