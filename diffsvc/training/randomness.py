"""Randomness as a function of the data, not of a stream.

Each item's diffusion step and noise come from a generator seeded with (seed, epoch, item index),
and the batch order from (seed, epoch). So a resumed run needs only the epoch and the position
within it to continue exactly, a batch split in two after running out of memory gives the same
gradients, and two processes sharing the batches of one step agree with one process accumulating
them. The global generators are saved with each checkpoint too (code we call may draw from them).
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from diffsvc.data.batch import TrainingBatch

TRAIN_STREAM, VALID_STREAM, PLOT_STREAM = 0, 1, 2


def item_seed(seed: int, epoch: int, index: int, stream: int = TRAIN_STREAM) -> int:
    """A well-mixed 63-bit seed for one item in one epoch (stream 1: validation loss, 2: validation samples)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index, stream]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def item_randomness(batch: TrainingBatch, *, seed: int, k_step: int, n_mels: int, masked: bool,
                    device: torch.device, stream: int = TRAIN_STREAM,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(t [B] long in 0..k_step-1, noise [B,1,M,T]) where item i's values depend only on
    (seed, epoch, its index, stream).

    An item's real frames get the same noise however long the batch is padded; padded frames get
    noise only for the original's unmasked loss (where the model is asked to predict it too)."""
    lengths = batch.lengths.tolist()
    b, t_frames = batch.mel2ph.shape
    g = generator or torch.Generator(device=device)
    t = torch.empty(b, dtype=torch.long, device=device)
    noise = torch.zeros(b, 1, n_mels, t_frames, device=device)
    for i, (epoch, index, length) in enumerate(zip(batch.epoch.tolist(), batch.index.tolist(), lengths)):
        g.manual_seed(item_seed(seed, epoch, index, stream))
        t[i] = torch.randint(0, k_step, (1,), device=device, generator=g)[0]
        # [T, M] then transposed, so frames are drawn in order
        noise[i, 0, :, :length] = torch.randn(length, n_mels, device=device, generator=g).T
        if not masked and length < t_frames:
            noise[i, 0, :, length:] = torch.randn(t_frames - length, n_mels, device=device, generator=g).T
    return t, noise


def seed_everything(seed: int) -> None:
    """Seed torch, Python and NumPy's global generators (weights are initialised from torch's)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def rng_states() -> dict:
    """The global generators' states, in a form torch.load(weights_only=True) reads back."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    np_state = np.random.get_state()
    state["numpy"] = [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                      int(np_state[3]), float(np_state[4])]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict | None) -> None:
    """Restore the global generators saved by rng_states() (a checkpoint from another machine may
    lack some of them: those are left as they are)."""
    if not state:
        return
    with contextlib.suppress(Exception):
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if torch.cuda.is_available() and state.get("cuda"):
            torch.cuda.set_rng_state_all(state["cuda"])
