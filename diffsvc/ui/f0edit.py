"""Editing an f0 curve on the mel frame grid: move a time range by semitones, or mark it unvoiced.

Octave errors of f0 trackers (a note tracked an octave too high or low) are a main cause of
hoarse or "electric" converted singing; moving the range by 12 semitones fixes them. The curve
is read from and written to the CLI's CSV (diffsvc.inference.f0_io), so an edit here is the
same file as `diffsvc infer --f0-in`.
"""

from __future__ import annotations

import numpy as np

from diffsvc.errors import DiffSvcError


def _range_mask(n_frames: int, times: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    if not (np.isfinite(start_s) and np.isfinite(end_s)) or end_s <= start_s:
        raise DiffSvcError(f"time range {start_s:g}..{end_s:g} s: the end must come after the start")
    mask = (times >= start_s) & (times < end_s)
    if not mask.any():
        raise DiffSvcError(f"time range {start_s:g}..{end_s:g} s holds no frame of this song "
                           f"(it lasts {times[-1] if len(times) else 0:.2f} s)")
    return mask


def shift_range(f0_hz: np.ndarray, times: np.ndarray, start_s: float, end_s: float, semitones: float) -> np.ndarray:
    """f0 [T] Hz with the voiced frames in [start_s, end_s) multiplied by 2^(semitones/12);
    unvoiced frames (0 Hz) stay unvoiced."""
    out = np.array(f0_hz, dtype=np.float32, copy=True)
    mask = _range_mask(len(out), times, start_s, end_s) & (out > 0)
    out[mask] *= np.float32(2.0 ** (semitones / 12.0))
    return out


def unvoice_range(f0_hz: np.ndarray, times: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    """f0 [T] Hz with every frame in [start_s, end_s) set to 0 (unvoiced)."""
    out = np.array(f0_hz, dtype=np.float32, copy=True)
    out[_range_mask(len(out), times, start_s, end_s)] = 0.0
    return out
