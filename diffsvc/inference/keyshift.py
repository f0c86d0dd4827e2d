"""Transposition: `--key N` semitones, or `--key auto`, which moves the song's median f0 onto the
median f0 of the singer the project was trained on, in whole semitones.

The singer's statistics come from training: `models/NAME/data_stats.json` (a copy of the prepared
data's `Manifest.stats`: f0_median_hz, f0_log2_mean, ...).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from diffsvc.errors import DiffSvcError

DATA_STATS = "data_stats.json"


def parse_key(text: str) -> float | str:
    """'auto' or a number of semitones (may be fractional or negative)."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise DiffSvcError(f"--key {text!r}: expected a number of semitones (e.g. -12, 3, 0.5) or 'auto'") from None
    if not math.isfinite(value) or abs(value) > 48:
        raise DiffSvcError(f"--key {text!r}: expected semitones within -48..48")
    return value


def read_singer_median_hz(project_dir: str | Path) -> float:
    """f0_median_hz of the training data, from the project folder's data_stats.json."""
    path = Path(project_dir) / DATA_STATS
    hint = (f"--key auto needs the training data's f0 statistics in {path} (written by `diffsvc train`); "
            "retrain with a current diffsvc or give --key in semitones")
    if not path.is_file():
        raise DiffSvcError(hint)
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
        median = float(stats["f0_median_hz"])
    except (OSError, ValueError, KeyError, TypeError):
        raise DiffSvcError(f"{path}: damaged or without f0_median_hz; " + hint) from None
    if not median > 0:
        raise DiffSvcError(f"{path}: f0_median_hz is {median}; " + hint)
    return median


def auto_key(song_f0_hz: np.ndarray, singer_median_hz: float) -> int:
    """Whole semitones that move the song's median voiced f0 onto the singer's (0 for no voiced frame)."""
    voiced = np.asarray(song_f0_hz, dtype=np.float64)
    voiced = voiced[voiced > 0]
    if voiced.size == 0:
        return 0
    return int(round(12 * math.log2(singer_median_hz / float(np.median(voiced)))))
