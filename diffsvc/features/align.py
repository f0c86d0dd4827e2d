"""mel2ph: which content frame each mel frame reads (1-based; 0 = padding).

Reproduces the original's get_align exactly, quirks included: with d = T_mel / T_content, unit i
owns mel frames [start, int(i*d + d + 0.5)] inclusive, so unit 1 gets an extra frame, and when
T_content >= T_mel trailing units may be skipped. Trained checkpoints learned this spacing.
"""

from __future__ import annotations

import numpy as np


def align_content_to_mel(n_content: int, n_mel: int) -> np.ndarray:
    """int64 [n_mel] of 1-based content indices."""
    mel2ph = np.zeros(n_mel, dtype=np.int64)
    if n_content <= 0 or n_mel <= 0:
        return mel2ph
    frames_per_unit = n_mel / n_content
    # Vectorised form of the original loop: unit i (0-based) ends at int(i*d + d + 0.5) and the next
    # unit starts one frame later; slices past n_mel are empty, as in the loop.
    ends = (np.arange(n_content) * frames_per_unit + frames_per_unit + 0.5).astype(np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    for i in np.nonzero(starts < n_mel)[0]:
        mel2ph[starts[i]:ends[i] + 1] = i + 1
    return mel2ph
