"""Pitch maths shared by training and inference: log2 f0 with unvoiced gaps interpolated, coarse
f0 bins for the pitch embedding, and key shifting, all as the original computes them.

f0 travels through the model as log2(Hz). Coarse bins come from the mel scale
1127 ln(1 + f/700), mapped linearly from [mel(f0_min), mel(f0_max)] onto [1, f0_bin - 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _mel(f):
    return 1127 * (np.log(1 + f / 700) if isinstance(f, np.ndarray) else torch.log(1 + f / 700))


def f0_to_coarse(f0: torch.Tensor, f0_bin: int = 256, f0_min: float = 40.0, f0_max: float = 1100.0) -> torch.Tensor:
    """Coarse bins [1, f0_bin-1] (long) of f0 in Hz, as the model computes them (float32 torch,
    rounding floor(x + 0.5)). Unvoiced (0 Hz) and anything below f0_min give 1."""
    mel_min = 1127 * math.log(1 + f0_min / 700)
    mel_max = 1127 * math.log(1 + f0_max / 700)
    mel = 1127 * torch.log(1 + f0 / 700)
    mel = torch.where(mel > 0, (mel - mel_min) * (f0_bin - 2) / (mel_max - mel_min) + 1, mel)
    mel = torch.where(mel <= 1, torch.ones_like(mel), mel)
    mel = torch.where(mel > f0_bin - 1, torch.full_like(mel, f0_bin - 1), mel)
    return (mel + 0.5).long()


def f0_to_coarse_numpy(f0: np.ndarray, f0_bin: int = 256, f0_min: float = 40.0, f0_max: float = 1100.0) -> np.ndarray:
    """The preprocessing twin of f0_to_coarse (float64, np.rint: banker's rounding). The model
    never reads it; kept so that binarized-data fields can be reproduced."""
    mel_min = 1127 * np.log(1 + f0_min / 700)
    mel_max = 1127 * np.log(1 + f0_max / 700)
    mel = 1127 * np.log(1 + np.asarray(f0, dtype=np.float64) / 700)
    mel[mel > 0] = (mel[mel > 0] - mel_min) * (f0_bin - 2) / (mel_max - mel_min) + 1
    mel[mel <= 1] = 1
    mel[mel > f0_bin - 1] = f0_bin - 1
    return np.rint(mel).astype(np.int64)


def norm_interp_f0(f0_hz) -> tuple[torch.Tensor, torch.Tensor]:
    """(log2 f0 with unvoiced frames linearly interpolated in log2, ends held; uv mask).

    All-unvoiced input gives zeros. Returns float32 tensors like the original's FloatTensors.
    """
    f0 = f0_hz.detach().cpu().numpy() if isinstance(f0_hz, torch.Tensor) else np.asarray(f0_hz)
    f0 = f0.astype(np.float64, copy=True)
    uv = f0 == 0
    f0[~uv] = np.log2(f0[~uv])
    if uv.all():
        f0[:] = 0
    elif uv.any():
        idx = np.arange(len(f0))
        f0[uv] = np.interp(idx[uv], idx[~uv], f0[~uv])
    return torch.from_numpy(f0.astype(np.float32)), torch.from_numpy(uv.astype(np.float32))


def denorm_f0(f0_log2: torch.Tensor, pitch_padding: torch.Tensor | None = None) -> torch.Tensor:
    """log2 f0 -> Hz; padded frames (pitch_padding True) become 0."""
    f0 = torch.pow(2.0, f0_log2)
    if pitch_padding is not None:
        f0 = f0.masked_fill(pitch_padding, 0.0)
    return f0


def shift_key(f0_log2: torch.Tensor, semitones: float, f0_max: float = 1100.0) -> torch.Tensor:
    """Transpose by `semitones` in the log2 domain, with the original's clamp: frames pushed
    above f0_max are set to 0 in log2 (1 Hz after denorm, coarse bin 1), not to unvoiced."""
    shifted = f0_log2 + semitones / 12
    return shifted.masked_fill(shifted > math.log2(f0_max), 0.0)
