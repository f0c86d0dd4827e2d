"""Praat autocorrelation f0 through parselmouth, with the original's settings and padding.

Original (data_gen_utils.py get_pitch_parselmouth): Sound(wav, sr).to_pitch_ac(time_step=hop/sr,
voicing_threshold=0.6, pitch_floor=f0_min, pitch_ceiling=f0_max); then
pad_size = (len(wav)//hop - len(f0) + 1)//2 zeros on the left and zeros on the right up to the mel
length. Praat's first frame sits about 3.7 hops in, so after that padding each value lands within
a hop of its mel frame; we keep it as is (checkpoints trained with `use_crepe: false` saw it).
The original crashed when the right pad came out negative; here the array is cut to length.
(The module is called praat.py so it cannot shadow the `parselmouth` package.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from diffsvc.features.f0 import F0Extractor

VOICING_THRESHOLD = 0.6  # the original's value (Praat's default is 0.45)


class PraatF0(F0Extractor):
    name = "parselmouth"

    def __init__(self, voicing_threshold: float = VOICING_THRESHOLD, **kwargs):
        super().__init__(**kwargs)
        self.voicing_threshold = float(voicing_threshold)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "voicing_threshold": self.voicing_threshold, "method": "to_pitch_ac"}

    def _extract(self, wav: np.ndarray, n_frames: int) -> np.ndarray:
        import parselmouth

        # Praat needs 3 periods of the pitch floor in one window; shorter audio has no measurable
        # pitch at this floor, which is "unvoiced", not an error.
        if len(wav) < math.ceil(3 * self.sample_rate / self.f0_min) + 1:
            return np.zeros(n_frames, dtype=np.float32)
        try:
            pitch = parselmouth.Sound(wav.astype(np.float64), self.sample_rate).to_pitch_ac(
                time_step=self.hop_size / self.sample_rate, voicing_threshold=self.voicing_threshold,
                pitch_floor=self.f0_min, pitch_ceiling=self.f0_max)
        except parselmouth.PraatError as e:
            if "minimum pitch" in str(e):  # the same too-short case, if Praat's bound differs from ours
                return np.zeros(n_frames, dtype=np.float32)
            raise
        f0 = pitch.selected_array["frequency"]
        return place_like_original(f0, len(wav) // self.hop_size, n_frames)


def place_like_original(f0: np.ndarray, samples_over_hop: int, n_frames: int) -> np.ndarray:
    """The original's padding, made total: a negative left pad drops leading values and the
    right side is cut or zero-padded to `n_frames`."""
    pad_left = (samples_over_hop - len(f0) + 1) // 2
    out = np.zeros(n_frames, dtype=np.float32)
    src_start = max(0, -pad_left)
    dst_start = max(0, pad_left)
    count = max(0, min(len(f0) - src_start, n_frames - dst_start))
    out[dst_start:dst_start + count] = f0[src_start:src_start + count]
    return out
