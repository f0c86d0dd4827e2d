"""Transposition: `--key N` semitones, or `--key auto`, which moves the song's median f0 onto the
median f0 of the singer the project was trained on, in whole semitones, never past the model's
f0 range.

After the shift, voiced frames outside the model's f0 range [f0_min, f0_max] (the range its pitch
embedding was built for) are handled by `--out-of-range`:
- fold (default): each voiced run (a note or a phrase between unvoiced frames) is moved by whole
  octaves until it fits; a run wider than the range has its remaining frames folded one by one.
  Why fold: an octave keeps the note's name, so the melody stays the melody, as a singer takes a
  line an octave down when it is out of reach; moving a whole run keeps its intervals and adds
  no octave jump inside a note. Clamping instead would flatten every note past the limit onto
  one pitch.
- clamp: voiced frames are held at f0_min / f0_max.
- original: the original Diff-SVC's behaviour, for exact reproduction: frames above f0_max reach
  the model and the vocoder as 1 Hz (log2 f0 = 0), frames below f0_min pass unchanged.

The singer's statistics come from training: `models/NAME/data_stats.json` (a copy of the prepared
data's `Manifest.stats`: f0_median_hz, f0_log2_mean, ...).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
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


def auto_key(song_f0_hz: np.ndarray, singer_median_hz: float, f0_min: float | None = None,
             f0_max: float | None = None) -> int:
    """Whole semitones that move the song's median voiced f0 onto the singer's (0 for no voiced
    frame), limited so that no voiced frame inside [f0_min, f0_max] is pushed out of it."""
    return auto_key_choice(song_f0_hz, singer_median_hz, f0_min, f0_max)[0]


def auto_key_choice(song_f0_hz: np.ndarray, singer_median_hz: float, f0_min: float | None = None,
                    f0_max: float | None = None) -> tuple[int, int]:
    """(the shift used, the median-matching shift before the range limit), whole semitones."""
    voiced = np.asarray(song_f0_hz, dtype=np.float64)
    voiced = voiced[voiced > 0]
    if voiced.size == 0:
        return 0, 0
    wanted = int(round(12 * math.log2(singer_median_hz / float(np.median(voiced)))))
    lo, hi = f0_min or 0.0, f0_max or math.inf
    inside = voiced[(voiced >= lo) & (voiced <= hi)]
    if inside.size == 0:
        return wanted, wanted
    up = math.floor(12 * math.log2(hi / inside.max()) + 1e-9) if math.isfinite(hi) else wanted
    down = math.ceil(12 * math.log2(lo / inside.min()) - 1e-9) if lo > 0 else wanted
    return int(min(max(wanted, down), up)), wanted


OUT_OF_RANGE_MODES = ("fold", "clamp", "original")


@dataclass(frozen=True)
class RangeReport:
    """How many voiced frames the key shift put outside the model's f0 range [f0_min, f0_max] Hz."""

    voiced: int
    above: int
    below: int
    f0_min: float
    f0_max: float
    mode: str

    def line(self, name: str = "") -> str | None:
        """One line for the user, or None when every voiced frame is in range."""
        outside = self.above + self.below
        if not outside:
            return None
        where = " and ".join(part for part in (f"{self.above} above" if self.above else "",
                                                 f"{self.below} below" if self.below else "") if part)
        done = {"fold": "moved by octaves into range",
                "clamp": "held at the range's limits",
                "original": "sent as the original did (above: 1 Hz; below: unchanged)"}[self.mode]
        return (f"{name + ': ' if name else ''}{outside} of {self.voiced} voiced frames "
                f"({100 * outside / max(self.voiced, 1):.0f} %) fall outside the model's f0 range "
                f"{self.f0_min:g}-{self.f0_max:g} Hz after the key shift ({where}); {done} "
                f"(--out-of-range fold, clamp or original)")


def shift_hz(f0_hz: np.ndarray, semitones: float) -> np.ndarray:
    """f0 [N] in Hz times 2^(semitones/12); 0 (unvoiced) stays 0. float64."""
    return np.asarray(f0_hz, dtype=np.float64) * 2.0 ** (float(semitones) / 12)


def range_report(f0_hz: np.ndarray, semitones: float, f0_min: float, f0_max: float, mode: str) -> RangeReport:
    """Count the voiced frames of `f0_hz` (Hz, 0 = unvoiced) outside [f0_min, f0_max] once shifted."""
    shifted = shift_hz(f0_hz, semitones)
    voiced = shifted[shifted > 0]
    # as the original's clamp compares: log2 f0 + shift > log2 f0_max
    log2 = np.log2(voiced) if voiced.size else voiced
    above = int(np.sum(log2 > math.log2(f0_max)))
    below = int(np.sum(log2 < math.log2(f0_min)))
    return RangeReport(int(voiced.size), above, below, float(f0_min), float(f0_max), mode)


def fit_f0_range(f0_hz: np.ndarray, f0_min: float, f0_max: float, mode: str = "fold") -> np.ndarray:
    """f0 [N] in Hz (0 = unvoiced) with every voiced frame inside [f0_min, f0_max], float32.

    mode fold: each run of voiced frames moves by the fewest whole octaves that bring its highest
    (or lowest) frame into range; frames still outside (a run wider than the range) fold one by
    one; clamp: voiced frames are clipped to the range. See the module docstring for why."""
    if mode not in ("fold", "clamp"):
        raise ValueError(f"fit_f0_range: mode {mode!r} is not fold or clamp")
    f0 = np.asarray(f0_hz, dtype=np.float64).copy()
    voiced = f0 > 0
    if mode == "fold":
        edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):
            run = f0[a:b]
            if run.max() > f0_max:
                run *= 2.0 ** -math.ceil(math.log2(run.max() / f0_max))
            elif run.min() < f0_min:
                run *= 2.0 ** math.ceil(math.log2(f0_min / run.min()))
        high = voiced & (f0 > f0_max)
        f0[high] *= 2.0 ** -np.ceil(np.log2(f0[high] / f0_max))
        low = voiced & (f0 < f0_min)
        f0[low] *= 2.0 ** np.ceil(np.log2(f0_min / f0[low]))
    f0[voiced] = np.clip(f0[voiced], f0_min, f0_max)  # a range narrower than an octave
    return f0.astype(np.float32)
