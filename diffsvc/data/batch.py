"""Typed records for training: one item, and a padded batch of items.

Shapes (T mel frames, Th content frames, M mel bins, H content channels, B items):

    TrainingItem    mel [T,M] log10 | f0 [T] log2 Hz, gaps interpolated | units [Th,H] |
                    mel2ph [T] long, 1-based into units (0 = padding) | index, epoch (where it came from)
    TrainingBatch   the same fields padded to the longest item, plus lengths [B] (real frames) and
                    index, epoch [B] (kept on the CPU: they seed each item's randomness)

`speaker` is optional and None for a one-singer project: a multi-singer model puts each item's
speaker id there and collate stacks them into [B].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass
class TrainingItem:
    """One training piece, maybe cropped: mel [T,M] (log10), f0 [T] (log2 Hz, unvoiced gaps
    interpolated), units [Th,H], mel2ph [T] (long, 1-based into units). `index` is the piece's
    position in its split and `epoch` the epoch it was drawn for (-1/0 when not yet known)."""

    mel: torch.Tensor
    f0: torch.Tensor
    units: torch.Tensor
    mel2ph: torch.Tensor
    index: int = -1
    epoch: int = 0
    speaker: int | None = None

    @property
    def frames(self) -> int:
        return int(self.mel.shape[0])


# Fields read only as Python numbers (seeds): they stay on the CPU when a batch moves.
HOST_FIELDS = ("index", "epoch")


@dataclass
class TrainingBatch:
    """Items padded to the longest: mel [B,T,M], f0 [B,T], units [B,Th,H], mel2ph [B,T] (padding 0),
    lengths [B] (real frames per item), index and epoch [B] (CPU, long), speaker [B] or None."""

    mel: torch.Tensor
    f0: torch.Tensor
    units: torch.Tensor
    mel2ph: torch.Tensor
    lengths: torch.Tensor
    index: torch.Tensor
    epoch: torch.Tensor
    speaker: torch.Tensor | None = None

    @property
    def items(self) -> int:
        return int(self.mel.shape[0])

    @property
    def frames(self) -> int:
        """Padded frames per item (T)."""
        return int(self.mel2ph.shape[1])

    def to(self, device: torch.device) -> "TrainingBatch":
        """The batch on `device` (index and epoch stay on the CPU)."""
        non_blocking = torch.device(device).type == "cuda"
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in moved.items():
            if value is not None and name not in HOST_FIELDS:
                moved[name] = value.to(device, non_blocking=non_blocking)
        return TrainingBatch(**moved)

    def pin_memory(self) -> "TrainingBatch":
        """The batch in page-locked memory (DataLoader(pin_memory=True) calls this)."""
        return TrainingBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).pin_memory()
                                for f in dataclasses.fields(self)})

    def select(self, lo: int, hi: int) -> "TrainingBatch":
        """Items lo..hi-1 (padding kept as it is)."""
        return TrainingBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[lo:hi]
                                for f in dataclasses.fields(self)})


def collate(items: list[TrainingItem]) -> TrainingBatch:
    """Pad to the longest item: mel and f0 with 0, mel2ph with 0 (padding), units with 0."""
    lengths = torch.tensor([it.frames for it in items])
    t = int(lengths.max())
    th = max(len(it.units) for it in items)
    b = len(items)
    m = items[0].mel.shape[1]
    mel = torch.zeros(b, t, m)
    f0 = torch.zeros(b, t)
    units = torch.zeros(b, th, items[0].units.shape[1])
    mel2ph = torch.zeros(b, t, dtype=torch.long)
    for i, it in enumerate(items):
        n = it.frames
        mel[i, :n] = it.mel
        f0[i, :n] = it.f0
        mel2ph[i, :n] = it.mel2ph
        units[i, :len(it.units)] = it.units
    speakers = [it.speaker for it in items]
    speaker = None if all(s is None for s in speakers) else torch.tensor(speakers, dtype=torch.long)
    return TrainingBatch(mel=mel, f0=f0, units=units, mel2ph=mel2ph, lengths=lengths,
                         index=torch.tensor([it.index for it in items]), epoch=torch.tensor([it.epoch for it in items]),
                         speaker=speaker)
