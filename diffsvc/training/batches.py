"""The training data as a resumable stream of batches, and how big those batches are.

Batches come from length buckets (LengthBucketSampler), ordered per epoch, so the stream can be
restarted at any (epoch, position): a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from diffsvc.config import Config
from diffsvc.data.batch import TrainingBatch, TrainingItem, collate
from diffsvc.data.dataset import LengthBucketSampler, PieceDataset
from diffsvc.data.prepared import PreparedData
from diffsvc.errors import DiffSvcError
from diffsvc.features.align import align_content_to_mel
from diffsvc.training import batch_size as bs
from diffsvc.training.distributed import DistInfo


class EpochItems(Dataset):
    """PieceDataset items addressed by (epoch, index), so random crops follow the epoch even in
    persistent worker processes (which never see the main process's set_epoch)."""

    def __init__(self, dataset: PieceDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> TrainingItem:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


class ResumableBatches:
    """The length-bucket batches of one epoch from a given position, as (epoch, index) keys."""

    def __init__(self, sampler: LengthBucketSampler):
        self.sampler = sampler
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.sampler.batches()[self.start:]:
            yield [(self.epoch, i) for i in batch]

    def __len__(self) -> int:
        return max(0, len(self.sampler.batches()) - self.start)


@dataclass
class TrainingData:
    """The prepared data's training and validation pieces (crops and limits from the config) and
    the training pieces' lengths in frames after cropping."""

    prepared: PreparedData
    train_set: PieceDataset
    valid_set: PieceDataset
    lengths: list[int]

    @classmethod
    def load(cls, prepared: PreparedData, config: Config) -> "TrainingData":
        """Raises DiffSvcError when there is nothing to train on."""
        train_set = PieceDataset(prepared, "train", crop_frames=config.crop_frames, seed=config.seed,
                                 max_frames=config.max_frames, max_input_tokens=config.max_input_tokens,
                                 speakers=config.speakers)
        if len(train_set) == 0:
            raise DiffSvcError(f"{prepared.root}: no training pieces in the prepared data; "
                               "run `diffsvc preprocess` on a folder of recordings")
        valid_set = PieceDataset(prepared, "valid", crop_frames=0, seed=config.seed, max_frames=config.max_frames,
                                 max_input_tokens=config.max_input_tokens, speakers=config.speakers)
        return cls(prepared, train_set, valid_set, [train_set.frames(i) for i in range(len(train_set))])


class BatchStream:
    """Training batches forever from (epoch, position): `for batch, epoch, position in stream`,
    where position counts the batches of that epoch done after this one. With several processes
    each takes every world_size-th batch of the epoch."""

    def __init__(self, data: TrainingData, plan: bs.BatchPlan, *, seed: int, dist: DistInfo, workers: int,
                 pin_memory: bool):
        self.sampler = LengthBucketSampler(data.lengths, plan.max_tokens, plan.max_sentences, shuffle=True,
                                           seed=seed, rank=dist.rank, world_size=dist.world_size)
        self.batches = ResumableBatches(self.sampler)
        self.loader = DataLoader(EpochItems(data.train_set), batch_sampler=self.batches, num_workers=workers,
                                 collate_fn=collate, pin_memory=pin_memory, persistent_workers=workers > 0)

    def epoch_batches(self) -> list[list[int]]:
        """This process's batches of the current epoch (item indices)."""
        return self.sampler.batches()

    def from_position(self, epoch: int, position: int) -> Iterator[tuple[TrainingBatch, int, int]]:
        while True:
            self.batches.set_position(epoch, position)
            for batch in self.loader:
                position += 1
                yield batch, epoch, position
            epoch, position = epoch + 1, 0


def synthetic_batch(items: int, frames: int, config: Config, device: torch.device) -> TrainingBatch:
    """A batch of the given size with plausible values (for measuring a step's memory)."""
    n_units = max(1, frames * config.hop_size * 16000 // config.audio_sample_rate // 320)
    mel2ph = torch.from_numpy(align_content_to_mel(n_units, frames)).long()
    return TrainingBatch(
        mel=torch.full((items, frames, config.audio_num_mel_bins), -3.0, device=device),
        units=torch.randn(items, n_units, config.hidden_size, device=device),
        mel2ph=mel2ph[None].expand(items, -1).contiguous().to(device),
        f0=torch.full((items, frames), math.log2(220.0), device=device),
        lengths=torch.full((items,), frames, device=device),
        index=torch.arange(items),
        epoch=torch.zeros(items, dtype=torch.long),
        speaker=torch.arange(items, device=device) % len(config.speakers) if config.speakers else None,
    )


def choose_plan(*, longest: int, config: Config, device: torch.device, batch_size: int | None, saved: dict | None,
                items_from_memory: Callable[[int], int]) -> bs.BatchPlan:
    """The batch plan: --batch-size when given, else the one kept in the checkpoint, else a CPU
    default, else the most items of the longest piece that fit in free GPU memory
    (`items_from_memory(frames)`, which every process must agree on)."""
    if batch_size is not None:
        if batch_size < 1:
            raise DiffSvcError("--batch-size must be at least 1")
        return bs.plan_for_items(batch_size, longest, batch_size * longest, "--batch-size")
    if saved:
        return bs.BatchPlan(int(saved["max_sentences"]), int(saved["max_tokens"]), "kept from the checkpoint")
    if device.type != "cuda":
        items = min(bs.CPU_DEFAULT_BATCH, config.max_sentences)
        return bs.plan_for_items(items, longest, config.max_tokens, f"{device.type} default")
    items = items_from_memory(longest)
    return bs.plan_for_items(items, longest, items * longest, "from free GPU memory")
