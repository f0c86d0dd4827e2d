"""The training objective: the noise-prediction loss of one batch, with its per-item randomness.

`DiffusionLoss` is the loss function the step and validation call: `loss(batch) -> scalar`. Other
objectives (a distillation loss against a teacher, a loss weighted over timesteps, a multi-singer
model reading `batch.speaker`) are other callables with the same signature; the step, validation
and the loop do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

from diffsvc.data.batch import TrainingBatch
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.training.distributed import DistInfo
from diffsvc.training.randomness import TRAIN_STREAM, item_randomness


class LossFunction(Protocol):
    """What the training step takes: the scalar loss of a device-resident batch. `stream` picks the
    per-item randomness (0 training, 1 validation) so validation values compare across steps."""

    def __call__(self, batch: TrainingBatch, stream: int = TRAIN_STREAM) -> torch.Tensor: ...


class LossModule(nn.Module):
    """GaussianDiffusion.loss as a forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: GaussianDiffusion):
        super().__init__()
        self.model = model

    def forward(self, mel, units, mel2ph, f0, lengths, t, noise, weights=None, speaker=None):
        return self.model.loss(mel, units, mel2ph, f0, lengths, t=t, noise=noise, weights=weights, speaker=speaker)


def batch_loss(loss_fn: Callable, batch: TrainingBatch, *, seed: int, k_step: int, n_mels: int, masked: bool,
               device: torch.device, stream: int = TRAIN_STREAM,
               generator: torch.Generator | None = None,
               weighting: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The loss of one (device-resident) batch with its per-item randomness. `loss_fn` takes
    (mel, units, mel2ph, f0, lengths or None, t, noise[, weights]) as LossModule.forward does, plus
    speaker=batch.speaker (singer indices [B]) when the batch has singers; `weighting(t)` gives each
    item's weight (weighting.py; None: the original's equal weights)."""
    t, noise = item_randomness(batch, seed=seed, k_step=k_step, n_mels=n_mels, masked=masked, device=device,
                               stream=stream, generator=generator)
    lengths = batch.lengths if masked else None
    args = (batch.mel, batch.units, batch.mel2ph, batch.f0, lengths, t, noise)
    if weighting is not None:
        args += (weighting(t),)
    if batch.speaker is not None:
        return loss_fn(*args, speaker=batch.speaker)
    return loss_fn(*args)


@dataclass
class DiffusionLoss:
    """The original's objective (L2 or L1 on the predicted noise; masked to real frames when
    `masked`), bound to the run's seed and sizes: `loss(batch, stream=0)` is one scalar.
    `weighting` (weighting.TimestepWeighting, or None for the original) weights items by their t.

    `module` is a LossModule, or that module wrapped by DistributedDataParallel."""

    module: nn.Module
    seed: int
    k_step: int
    n_mels: int
    masked: bool
    device: torch.device
    generator: torch.Generator
    weighting: Callable[[torch.Tensor], torch.Tensor] | None = None

    @classmethod
    def for_model(cls, model: GaussianDiffusion, *, seed: int, masked: bool, device: torch.device,
                  generator: torch.Generator, dist: DistInfo | None = None,
                  weighting: Callable[[torch.Tensor], torch.Tensor] | None = None) -> "DiffusionLoss":
        """The loss of `model`; with several processes its LossModule is wrapped by DDP, which
        broadcasts rank 0's weights and checks every rank built the same model."""
        return cls(distributed(LossModule(model), dist, device), seed=seed, k_step=model.K_step,
                   n_mels=model.n_mels, masked=masked, device=device, generator=generator, weighting=weighting)

    def __call__(self, batch: TrainingBatch, stream: int = TRAIN_STREAM) -> torch.Tensor:
        return batch_loss(self.module, batch, seed=self.seed, k_step=self.k_step, n_mels=self.n_mels,
                          masked=self.masked, device=self.device, stream=stream, generator=self.generator,
                          weighting=self.weighting)

    def local(self) -> "DiffusionLoss":
        """The same loss on this process's module alone (no DDP wrapper)."""
        from dataclasses import replace

        from torch.nn.parallel import DistributedDataParallel

        return replace(self, module=self.module.module) if isinstance(self.module, DistributedDataParallel) else self

    def no_sync(self):
        """DDP's no_sync() (gradients are averaged once per step by average_gradients), or nothing."""
        import contextlib

        return self.module.no_sync() if hasattr(self.module, "no_sync") else contextlib.nullcontext()


def distributed(module: nn.Module, dist: DistInfo | None, device: torch.device) -> nn.Module:
    """`module` wrapped by DistributedDataParallel when several processes train, else itself.

    Gradients are averaged by average_gradients() (see its docstring for why not DDP's backward
    hooks); every forward runs under no_sync()."""
    if dist is None or not dist.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=False)
